"""The contract as a Fabric chaincode-as-a-service: a gRPC ``protos.Chaincode`` server.

A Fabric peer dials this server and opens one ``Connect`` stream per connection;
the shim protocol then runs on it exactly as fabric-chaincode-go's ``shim`` runs it:

- the chaincode speaks first, REGISTER with ``ChaincodeID{name=<package id>}``; the
  peer answers REGISTERED, then READY, whose ``ChaincodeAdditionalParams`` say
  whether it accepts WRITE_BATCH_STATE and GET_STATE_MULTIPLE (and batch sizes);
- KEEPALIVE is echoed in any state;
- each TRANSACTION / INIT runs ``contract.invoke`` on a :class:`ShimStub`, so
  transactions interleave on one stream; every state call is a request carrying
  the transaction's ``txid`` and ``channel_id`` whose RESPONSE / ERROR is routed
  back by ``channel_id + txid``;
- the answer is COMPLETED with ``peer.Response`` and the last chaincode event. A
  contract rejection is ``Response{status=<error's status, ≥ 400>, message=<typed
  JSON error>}`` (the endorser then refuses to endorse and returns the message), an
  unexpected failure is an ERROR message, as a failing handler is in the Go shim;
- a message the state machine does not expect is answered with ERROR and ends the
  stream, as in the Go shim.

Execution model: one thread runs an asyncio event loop that serves every
connection, and each transaction is a greenlet on that thread. A state call sends
its request and switches back to the loop; the peer's answer switches into the
transaction again. The contract's ``Stub`` stays synchronous; the price is that a
transaction's CPU-bound stretch holds the others up (as the GIL did among threads).

The gRPC transport is this module's own: HTTP/2 frames (RFC 9113) parsed and built
by an asyncio protocol, header blocks by ``hpack``, one ``write`` for all that a
read from the socket causes. grpcio costs more than the contract does: its server
hands every message between its threads and ours (sync) or through its completion
queue and asyncio futures (``grpc.aio``), about 70-100 µs of CPU per message, and
an endorsement is 8 messages (TRANSACTION; GET_STATE, PUT_STATE, PUT_STATE and
their answers; COMPLETED).

Run it with ``python -m chaincode.server`` (``CHAINCODE_SERVER_ADDRESS``, default
``0.0.0.0:9999``; ``CHAINCODE_ID``, the installed package id ``label:hash``).
TLS between peer and chaincode is not offered (connection.json ``tls_required:
false``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextvars import Context
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias, TypeVar, cast
from urllib.parse import quote

import hpack
from fabric_protos.common import common_pb2
from fabric_protos.ledger.queryresult import kv_query_result_pb2 as kvq
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    chaincode_shim_pb2,
    proposal_pb2,
    proposal_response_pb2,
)
from google.protobuf.message import DecodeError, Message
from greenlet import getcurrent, greenlet

from chaincode.errors import ContractError
from chaincode.stub import Creator, Invoke, KeyModification, Stub

log = logging.getLogger("cityunion.chaincode")

Msg = chaincode_shim_pb2.ChaincodeMessage
Pb: TypeAlias = Any  # a protobuf message (the generated modules have no stubs)
T = Msg.Type  # names only: ``Msg.X`` is a class attribute, ``T.X`` a __getattr__ call
R = TypeVar("R")

OK, ERROR_THRESHOLD, ERROR = 200, 400, 500  # shim.OK / ERRORTHRESHOLD / ERROR
EMPTY_KEY_SUBSTITUTE = "\x01"  # the Go shim's substitute for an empty start key
COMPOSITE_KEY_NAMESPACE = "\x00"
MIN_BATCH = 100  # the Go shim raises smaller batch sizes offered by the peer to 100
MAX_MESSAGE = 100 * 1024 * 1024  # as the Go shim's server and the peer's client
MAX_IDLE_WORKERS = 256  # transaction greenlets kept for reuse, per stream
_VALID_HEADER_TYPES = (common_pb2.ENDORSER_TRANSACTION, common_pb2.CONFIG)


class ShimError(Exception):
    """The peer refused a state call, or the stream to the peer has ended."""


def _default_invoke(stub: Stub) -> bytes:
    from chaincode import contract  # imported late: tests may run another invoke

    return contract.invoke(stub)


# ----------------------------------------------------------------- one stream
class Outbox(Protocol):
    """Where a stream's messages to the peer go, in order (the transport's side)."""

    def push(self, msg: Pb) -> None:
        """Queue one message for the peer; never blocks."""

    def end(self) -> None:
        """No message follows: end the stream once the queued ones are sent."""


class _Stream:
    """The shim side of one ``Connect`` stream: handler state, waiting transactions.

    Everything here runs on the event loop's thread: :meth:`handle` in the loop's
    greenlet (the hub), each transaction in a worker greenlet whose parent is the
    hub. Workers are reused: a new greenlet maps and unmaps its own Python frame
    stack, two system calls per transaction.
    """

    def __init__(self, package_id: str, invoke: Invoke, outbox: Outbox) -> None:
        self.invoke, self.outbox = invoke, outbox
        self.hub = getcurrent()
        self.state = "created"
        self.closed = False
        self.error: str | None = None
        self.pending: dict[str, greenlet] = {}  # channel_id + txid: its worker
        self.idle: list[greenlet] = []  # workers parked between transactions
        self.write_batch = 0  # max records per WRITE_BATCH_STATE; 0: not offered
        self.multi_get = 0  # max keys per GET_STATE_MULTIPLE; 0: not offered
        register = chaincode_pb2.ChaincodeID(name=package_id)
        outbox.push(Msg(type=Msg.REGISTER, payload=register.SerializeToString()))

    def send(self, msg: Pb) -> None:
        if not self.closed:
            self.outbox.push(msg)

    def close(self, error: str | None = None) -> None:
        """End the stream: every waiting transaction's state call fails."""
        if self.closed:
            return
        self.closed, self.error = True, error
        waiting, self.pending = list(self.pending.values()), {}
        for worker in waiting:
            worker.switch(None)  # its transaction ends with ERROR, which is not sent
        idle, self.idle = self.idle, []
        for worker in idle:
            worker.switch(None)
        self.outbox.end()

    # --- the state machine (Go shim: handleMessage)
    def handle(self, msg: Pb) -> str | None:
        """Handle one message from the peer; a returned error ends the stream."""
        kind = msg.type
        if kind == Msg.KEEPALIVE:
            self.send(msg)
            return None
        if self.state == "ready":
            if kind == Msg.RESPONSE or kind == Msg.ERROR:
                waiting = self.pending.pop(msg.channel_id + msg.txid, None)
                if waiting is None:
                    return f"[{msg.txid[:8]}] no request awaits this {T.Name(kind)}"
                waiting.switch(msg)  # runs the transaction to its next call or end
                return None
            if kind == Msg.TRANSACTION or kind == Msg.INIT:
                worker = self.idle.pop() if self.idle else greenlet(self._work,
                                                                    self.hub)
                worker.switch(msg)  # runs the transaction to its first call or end
                return None
        elif self.state == "created" and kind == Msg.REGISTERED:
            self.state = "established"
            return None
        elif self.state == "established" and kind == Msg.READY:
            self._ready(msg.payload)
            return None
        return (f"[{msg.txid[:8]}] chaincode cannot handle message ({T.Name(kind)}) "
                f"while in state: {self.state}")

    def _ready(self, payload: bytes) -> None:
        self.state = "ready"
        params = chaincode_pb2.ChaincodeAdditionalParams()
        try:
            params.ParseFromString(payload)
        except DecodeError:
            return  # as the Go shim: an unreadable payload offers nothing
        if params.use_write_batch:
            self.write_batch = max(params.max_size_write_batch, MIN_BATCH)
        if params.use_get_multiple_keys:
            self.multi_get = max(params.max_size_get_multiple_keys, MIN_BATCH)

    def call(self, channel_id: str, txid: str, kind: int, payload: Message) -> bytes:
        """Send one state request of a transaction and await the peer's answer.

        Called in the transaction's greenlet: it waits by switching to the hub,
        which switches back with the answer (or ``None`` when the stream ends).
        """
        key = channel_id + txid
        if self.closed:
            raise ShimError("the stream to the peer has ended")
        if key in self.pending:  # one outstanding request per transaction
            raise ShimError(f"[{txid[:8]}] a request of this transaction is "
                            "still pending")
        current = getcurrent()
        if current is self.hub:
            raise ShimError("a state call outside a transaction")
        self.pending[key] = current
        try:
            self.outbox.push(Msg(type=kind, payload=payload.SerializeToString(),
                                 txid=txid, channel_id=channel_id))
            reply = self.hub.switch()
        finally:
            self.pending.pop(key, None)
        if reply is None:
            raise ShimError("the stream to the peer has ended")
        if reply.type == Msg.RESPONSE:
            return bytes(reply.payload)
        if reply.type == Msg.ERROR:
            raise ShimError(reply.payload.decode("utf-8", "replace"))
        raise ShimError(f"[{txid[:8]}] incorrect chaincode message "
                        f"{T.Name(reply.type)} received; expecting RESPONSE or ERROR")

    # --- transactions (Go shim: handleTransaction / handleInit)
    def _work(self, msg: Pb | None) -> None:
        """A worker greenlet: run transactions, parked in between."""
        while msg is not None:
            Context().run(self._execute, msg)  # fresh context vars, as a new greenlet
            if self.closed or len(self.idle) >= MAX_IDLE_WORKERS:
                return
            self.idle.append(getcurrent())
            msg = self.hub.switch()

    def _execute(self, msg: Pb) -> None:
        reply = Msg(txid=msg.txid, channel_id=msg.channel_id)
        stub: ShimStub | None = None
        try:
            stub = ShimStub(self, msg)
            try:
                response = proposal_response_pb2.Response(status=OK,
                                                          payload=self.invoke(stub))
                stub.finish_write_batch()
            except ContractError as e:  # a rejection: the peer will not endorse
                status = e.status if e.status >= ERROR_THRESHOLD else ERROR
                response = proposal_response_pb2.Response(status=status,
                                                          message=e.to_payload())
            if stub.event is not None:
                reply.chaincode_event.CopyFrom(stub.event)
            if msg.type == Msg.INIT and response.status >= ERROR:
                reply.type, reply.payload = Msg.ERROR, response.message.encode()
            else:
                reply.type = Msg.COMPLETED
                reply.payload = response.SerializeToString()
        except Exception as e:
            log.exception("[%s] transaction failed", msg.txid[:8])
            reply = Msg(type=Msg.ERROR, payload=f"{type(e).__name__}: {e}".encode(),
                        txid=msg.txid, channel_id=msg.channel_id)
        finally:
            if stub is not None:
                stub.active = False
        self.send(reply)


# ------------------------------------------------------------------- the stub
def _parse(cls: type[R], data: bytes, what: str) -> R:
    message: Any = cls()
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise ShimError(f"failed to extract {what}: {e}") from e
    return message  # type: ignore[no-any-return]


def _utc(ts: Any) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


class ShimStub:
    """The ``Stub`` of one transaction, each call a request to the peer.

    As the Go shim's ``ChaincodeStub``: reads see committed state only; writes go
    to the peer at once, or, when the peer offers WRITE_BATCH_STATE, are batched
    until the transaction ends (the same write set, fewer round trips).
    """

    def __init__(self, stream: _Stream, msg: Pb) -> None:
        self.stream, self.txid, self.channel_id = stream, msg.txid, msg.channel_id
        self.args = list(_parse(chaincode_pb2.ChaincodeInput, msg.payload,
                                "chaincode input").args)
        self.event: Pb | None = None
        self.active, self.greenlet = True, getcurrent()
        self.writes: dict[str, bytes | None] | None = (
            {} if stream.write_batch else None)
        self.creator = Creator("", b"")
        self.timestamp: datetime | None = None
        self.transient: dict[str, bytes] = {}
        if msg.HasField("proposal"):
            self._read_proposal(msg.proposal)

    def _read_proposal(self, signed: Pb) -> None:
        proposal = _parse(proposal_pb2.Proposal, signed.proposal_bytes, "proposal")
        if not proposal.header:
            raise ShimError("failed to extract proposal fields: proposal header is "
                            "nil")
        header = _parse(common_pb2.Header, proposal.header, "proposal header")
        channel = _parse(common_pb2.ChannelHeader, header.channel_header,
                         "channel header")
        if channel.type not in _VALID_HEADER_TYPES:
            raise ShimError("invalid channel header type: "
                            f"{common_pb2.HeaderType.Name(channel.type)}")
        signature = _parse(common_pb2.SignatureHeader, header.signature_header,
                           "signature header")
        identity = _parse(identities_pb2.SerializedIdentity, signature.creator,
                          "creator")
        self.creator = Creator(identity.mspid, bytes(identity.id_bytes))
        if channel.HasField("timestamp"):
            self.timestamp = _utc(channel.timestamp)
        payload = _parse(proposal_pb2.ChaincodeProposalPayload, proposal.payload,
                         "proposal payload")
        self.transient = {k: bytes(v) for k, v in payload.TransientMap.items()}

    def _call(self, kind: int, payload: Message) -> bytes:
        return self.stream.call(self.channel_id, self.txid, kind, payload)

    # --- Stub
    def get_args(self) -> list[bytes]:
        return list(self.args)

    def get_state(self, key: str) -> bytes | None:
        return self._call(Msg.GET_STATE, chaincode_shim_pb2.GetState(key=key)) or None

    def get_multiple_states(self, keys: list[str]) -> list[bytes | None]:
        if not self.stream.multi_get:
            return [self.get_state(k) for k in keys]
        out: list[bytes | None] = []
        size = self.stream.multi_get
        for i in range(0, len(keys), size):
            chunk = keys[i:i + size]
            answer = self._call(Msg.GET_STATE_MULTIPLE,
                                chaincode_shim_pb2.GetStateMultiple(keys=chunk))
            result = chaincode_shim_pb2.GetStateMultipleResult.FromString(answer)
            if len(result.values) != len(chunk):
                raise ShimError(f"GET_STATE_MULTIPLE answered {len(result.values)} "
                                f"values for {len(chunk)} keys")
            out.extend(bytes(v) or None for v in result.values)
        return out

    def put_state(self, key: str, value: bytes) -> None:
        if not key:
            raise ContractError("key must not be an empty string")
        if self.writes is not None:
            self.writes[key] = bytes(value)
        else:
            self._call(Msg.PUT_STATE, chaincode_shim_pb2.PutState(key=key, value=value))

    def del_state(self, key: str) -> None:
        if self.writes is not None:
            self.writes[key] = None
        else:
            self._call(Msg.DEL_STATE, chaincode_shim_pb2.DelState(key=key))

    def finish_write_batch(self) -> None:
        """Send the batched writes (Go shim: FinishWriteBatch), in peer-sized parts."""
        if not self.writes:
            return
        WR = chaincode_shim_pb2.WriteRecord
        records = [WR(key=k, value=v, type=WR.PUT_STATE) if v is not None
                   else WR(key=k, type=WR.DEL_STATE) for k, v in self.writes.items()]
        self.writes = {}
        size = self.stream.write_batch
        for i in range(0, len(records), size):
            self._call(Msg.WRITE_BATCH_STATE,
                       chaincode_shim_pb2.WriteBatchState(rec=records[i:i + size]))

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        start = start or EMPTY_KEY_SUBSTITUTE
        for key in (start, end):
            if key.startswith(COMPOSITE_KEY_NAMESPACE):
                raise ContractError(f"first character of the key {key!r} is a null "
                                    "character, which is not allowed")
        first = self._call(Msg.GET_STATE_BY_RANGE,
                           chaincode_shim_pb2.GetStateByRange(startKey=start,
                                                              endKey=end))
        return (
            (kv.key, bytes(kv.value))
            for kv in self._results(first, kvq.KV)
        )

    def get_history_for_key(self, key: str) -> Iterator[KeyModification]:
        first = self._call(Msg.GET_HISTORY_FOR_KEY,
                           chaincode_shim_pb2.GetHistoryForKey(key=key))
        return (
            KeyModification(m.tx_id, bytes(m.value), _utc(m.timestamp), m.is_delete)
            for m in self._results(first, kvq.KeyModification)
        )

    def _results(self, first: bytes, cls: type[R]) -> Iterator[R]:
        """Iterate a peer-side query, following QUERY_STATE_NEXT pages.

        The peer frees the iterator itself once it answers ``has_more=false`` (and
        all of a transaction's iterators when it completes); one abandoned early is
        closed with QUERY_STATE_CLOSE while the transaction still runs.
        """
        page = chaincode_shim_pb2.QueryResponse.FromString(first)
        try:
            while True:
                for result in page.results:
                    yield _parse(cls, result.resultBytes, "query result")
                if not page.has_more:
                    return
                page = chaincode_shim_pb2.QueryResponse.FromString(self._call(
                    Msg.QUERY_STATE_NEXT,
                    chaincode_shim_pb2.QueryStateNext(id=page.id)))
        finally:
            if page.has_more and self.active and getcurrent() is self.greenlet:
                try:
                    self._call(Msg.QUERY_STATE_CLOSE,
                               chaincode_shim_pb2.QueryStateClose(id=page.id))
                except ShimError as e:  # the peer frees it at completion anyway
                    log.warning("[%s] QUERY_STATE_CLOSE failed: %s", self.txid[:8], e)

    def get_creator(self) -> Creator:
        return self.creator

    def get_tx_id(self) -> str:
        return self.txid

    def get_tx_timestamp(self) -> datetime:
        if self.timestamp is None:
            raise ShimError("the proposal carries no timestamp")
        return self.timestamp

    def get_transient(self) -> dict[str, bytes]:
        return dict(self.transient)

    def set_event(self, name: str, payload: bytes) -> None:
        if not name:
            raise ContractError("event name can not be empty string")
        # The peer fills in chaincode_id (and tx_id again) when it takes the event.
        self.event = chaincode_event_pb2.ChaincodeEvent(tx_id=self.txid,
                                                        event_name=name,
                                                        payload=payload)


# ---------------------------------------------------------- gRPC on HTTP/2
# The peer's gRPC client speaks HTTP/2 without TLS (prior knowledge, RFC 9113 §3.3)
# and opens one stream per Connect. What a gRPC server must do for that stream is
# small: the HTTP/2 frames of RFC 9113, HPACK header blocks (the ``hpack`` package),
# length-prefixed messages, and status trailers (gRPC's PROTOCOL-HTTP2.md).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CONNECT_PATH = "/protos.Chaincode/Connect"
(DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY,
 WINDOW_UPDATE, CONTINUATION) = range(10)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR = 0x0, 0x1, 0x3, 0x6
REFUSED_STREAM, COMPRESSION_ERROR = 0x7, 0x9
HEADER_TABLE_SIZE, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = 0x1, 0x4, 0x5
DEFAULT_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1
FRAME_LIMIT = 16_384  # the largest frame we accept: we keep the default
READ_BUFFER = 256 * 1024  # fixed: a partial frame left over always fits, 16 KiB
RECEIVE_WINDOW = 1 << 24  # what we grant the peer, per stream and per connection
GRPC_OK, GRPC_UNKNOWN, GRPC_RESOURCE_EXHAUSTED = 0, 2, 8
GRPC_UNIMPLEMENTED, GRPC_INTERNAL = 12, 13
KEEPALIVE_S, KEEPALIVE_TIMEOUT_S = 60.0, 20.0  # as the peer's own keepalive

_FRAME = struct.Struct(">HBBBL")  # length (24 bits as 16 + 8), type, flags, stream
_DATA_MESSAGE = struct.Struct(">HBBBLBL")  # a DATA frame holding one whole message
_MESSAGE_PREFIX = struct.Struct(">BL")  # gRPC: compressed flag, length
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
# grpc-message is percent-encoded outside printable ASCII (and "%" itself).
_MESSAGE_SAFE = " !\"#$&'()*+,/:;<=>?@[\\]^`{|}"


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _FRAME.pack(n >> 8, n & 0xFF, kind, flags, stream) + payload


class _ConnectionError(Exception):
    """A violation of HTTP/2 that ends the connection with GOAWAY."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class _Call:
    """One ``Connect`` call: an HTTP/2 stream carrying a shim stream.

    It is the shim stream's :class:`Outbox`: a message becomes a DATA frame at
    once, or waits here while the peer's flow-control windows are exhausted.
    """

    def __init__(self, conn: _Connection, stream_id: int) -> None:
        self.conn, self.id = conn, stream_id
        self.shim: _Stream | None = None
        self.recv = bytearray()  # a message still arriving
        self.recv_unacked = 0  # bytes received since our last WINDOW_UPDATE
        self.send_window = conn.peer_window
        self.unsent = bytearray()  # prefixed messages held by flow control
        self.ending = False  # trailers follow once ``unsent`` is sent
        self.reset = False  # nothing more may be sent (RST_STREAM, connection lost)
        self.remote_closed = False  # the peer has ended its side (END_STREAM)

    def push(self, msg: Pb) -> None:
        if not (self.reset or self.ending):
            self.conn.send_message(self, msg.SerializeToString())

    def end(self) -> None:
        if not (self.reset or self.ending):
            self.ending = True
            self.conn.flush(self)


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection from a peer: HTTP/2 frames in and out, on the loop.

    The socket is read into one fixed buffer (a plain ``Protocol`` gets a fresh
    256 KiB bytes object per read, an mmap and munmap each time). Everything a
    read causes (transactions run to their next state call, replies) is written
    in one ``write`` once it is handled.
    """

    def __init__(self, server: ChaincodeServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray(READ_BUFFER)  # never resized: views of it abound
        self.view = memoryview(self.buffer)
        self.filled = 0
        self.preface = False
        self.calls: dict[int, _Call] = {}
        self.last_stream = 0
        self.goaway_sent = False
        self.send_window = DEFAULT_WINDOW  # the peer's connection window for us
        self.peer_window = DEFAULT_WINDOW  # its SETTINGS_INITIAL_WINDOW_SIZE
        self.max_frame = 16_384  # its SETTINGS_MAX_FRAME_SIZE
        self.recv_unacked = 0
        self.decoder, self.encoder = hpack.Decoder(), hpack.Encoder()
        self.header_block: tuple[int, int, bytearray] | None = None  # CONTINUATION
        self.pending: list[bytes] | None = None  # frames held until the batch ends
        self.ping_acked = True
        self.keepalive: asyncio.TimerHandle | None = None

    # --- the connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.server.connections.add(self)
        self.write(_frame(SETTINGS, 0, 0, _SETTING.pack(INITIAL_WINDOW_SIZE,
                                                         RECEIVE_WINDOW))
                   + _frame(WINDOW_UPDATE, 0, 0,
                            _U32.pack(RECEIVE_WINDOW - DEFAULT_WINDOW)))
        self._schedule_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        log.info("peer connection ended%s", f": {exc}" if exc else "")
        self.server.connections.discard(self)
        if self.keepalive is not None:
            self.keepalive.cancel()
        calls, self.calls = list(self.calls.values()), {}
        for call in calls:
            self._drop(call)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self.filled += nbytes
        self.pending = []
        failed = False
        try:
            self._frames()
        except _ConnectionError as e:
            log.warning("HTTP/2 error from the peer: %s", e)
            self.goaway(e.code, str(e))
            failed = True
        finally:
            pending, self.pending = self.pending, None
            if pending and self.transport is not None:
                self.transport.write(b"".join(pending))
        if failed:
            self.close()

    def write(self, frames: bytes) -> None:
        if self.pending is not None:
            self.pending.append(frames)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(frames)

    def goaway(self, code: int = NO_ERROR, reason: str = "") -> None:
        """Take no new calls; those open go on."""
        if not self.goaway_sent:
            self.goaway_sent = True
            self.write(_frame(GOAWAY, 0, 0, _U32.pack(self.last_stream)
                              + _U32.pack(code) + reason.encode()[:256]))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def busy(self) -> bool:
        """Whether a transaction of this connection awaits the peer."""
        return any(c.shim is not None and c.shim.pending for c in self.calls.values())

    def _schedule_keepalive(self) -> None:
        self.keepalive = asyncio.get_running_loop().call_later(KEEPALIVE_S,
                                                               self._ping)

    def _ping(self) -> None:
        """Ping the peer now and then; one silent for KEEPALIVE_TIMEOUT_S is gone."""
        self.ping_acked = False
        self.write(_frame(PING, 0, 0, b"cckalive"))
        self.keepalive = asyncio.get_running_loop().call_later(
            KEEPALIVE_TIMEOUT_S, self._ping_answered)

    def _ping_answered(self) -> None:
        if self.ping_acked:
            self._schedule_keepalive()
        else:
            log.warning("peer unanswered for %.0f s: closing", KEEPALIVE_TIMEOUT_S)
            self.close()

    # --- frames from the peer
    def _frames(self) -> None:
        """Handle the complete frames received; keep a partial one for later."""
        buf, view, size = self.buffer, self.view, self.filled
        at = 0
        if not self.preface:
            n = min(size, len(PREFACE))
            if view[:n] != PREFACE[:n]:
                raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 preface")
            if size < len(PREFACE):
                return
            self.preface, at = True, len(PREFACE)
        try:
            while size - at >= 9:
                high, low, kind, flags, stream = _FRAME.unpack_from(buf, at)
                length = high << 8 | low
                if length > FRAME_LIMIT:
                    raise _ConnectionError(FRAME_SIZE_ERROR,
                                           f"a frame of {length} bytes")
                if size - at - 9 < length:
                    break
                payload = view[at + 9:at + 9 + length]  # valid until we return
                at += 9 + length
                self._frame(kind, flags, stream & 0x7FFF_FFFF, payload)
        finally:
            rest = bytes(view[at:size])
            buf[:len(rest)] = rest
            self.filled = len(rest)

    def _frame(self, kind: int, flags: int, stream: int,
               payload: memoryview) -> None:
        if self.header_block is not None and kind != CONTINUATION:
            raise _ConnectionError(PROTOCOL_ERROR, "header block interrupted")
        if kind == DATA:
            self._data(flags, stream, payload)
        elif kind == HEADERS:
            if flags & PADDED:
                payload = _unpad(payload)
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            if flags & END_HEADERS:
                self._headers(flags, stream, payload)
            else:
                self.header_block = (stream, flags, bytearray(payload))
        elif kind == CONTINUATION:
            if self.header_block is None or self.header_block[0] != stream:
                raise _ConnectionError(PROTOCOL_ERROR, "unexpected CONTINUATION")
            self.header_block[2].extend(payload)
            if flags & END_HEADERS:
                stream, first, block = self.header_block
                self.header_block = None
                self._headers(first, stream, block)
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
        elif kind == WINDOW_UPDATE:
            self._window_update(stream, payload)
        elif kind == PING:
            if flags & ACK:
                self.ping_acked = True
            else:
                self.write(_frame(PING, ACK, 0, bytes(payload)))
        elif kind == RST_STREAM:
            call = self.calls.pop(stream, None)
            if call is not None:
                self._drop(call)
        elif kind == PUSH_PROMISE:
            raise _ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # PRIORITY, GOAWAY (the peer closes the connection next), unknown: ignored

    def _data(self, flags: int, stream: int, payload: memoryview) -> None:
        size = len(payload)  # flow control counts the padding too
        self.recv_unacked += size
        if self.recv_unacked >= RECEIVE_WINDOW // 2:
            self.write(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(self.recv_unacked)))
            self.recv_unacked = 0
        call = self.calls.get(stream)
        if call is None:
            if stream == 0 or stream > self.last_stream:
                raise _ConnectionError(PROTOCOL_ERROR, f"DATA on idle stream {stream}")
            return  # a stream we have ended: the peer's data in flight
        if flags & PADDED:
            payload = _unpad(payload)
        call.recv_unacked += size
        if call.recv_unacked >= RECEIVE_WINDOW // 2 and not flags & END_STREAM:
            self.write(_frame(WINDOW_UPDATE, 0, stream, _U32.pack(call.recv_unacked)))
            call.recv_unacked = 0
        if call.recv:
            call.recv += payload
            data: memoryview | bytearray = call.recv
        else:
            data = payload
        at, size = 0, len(data)
        while size - at >= 5 and not (call.reset or call.ending):
            compressed, length = _MESSAGE_PREFIX.unpack_from(data, at)
            if compressed or length > MAX_MESSAGE:
                self._refuse(call, *((GRPC_UNIMPLEMENTED, "compressed message")
                                     if compressed else
                                     (GRPC_RESOURCE_EXHAUSTED,
                                      f"message of {length} bytes")))
                return
            if size - at - 5 < length:
                break
            view = memoryview(data)[at + 5:at + 5 + length]
            at += 5 + length
            try:
                msg = Msg.FromString(view)  # a copy: the buffer is reused
            except DecodeError as e:
                self._refuse(call, GRPC_INTERNAL, f"unreadable ChaincodeMessage: {e}")
                return
            finally:
                view.release()  # ``call.recv`` may grow again
            self._deliver(call, msg)
        if call.recv:
            del call.recv[:at]
        elif at < size:
            call.recv = bytearray(data[at:])
        if flags & END_STREAM:
            self._remote_end(call)

    def _deliver(self, call: _Call, msg: Pb) -> None:
        shim = call.shim
        assert shim is not None
        try:
            error = shim.handle(msg)
            if error is not None:
                shim.send(Msg(type=Msg.ERROR, payload=error.encode(), txid=msg.txid))
        except Exception as e:  # never leave waiting transactions behind
            log.exception("shim stream failed")
            error = f"{type(e).__name__}: {e}"
        if error is not None:
            shim.close(error)

    def _headers(self, flags: int, stream: int,
                 block: memoryview | bytearray) -> None:
        try:
            headers = dict(self.decoder.decode(bytes(block), raw=True))
        except hpack.HPACKError as e:
            raise _ConnectionError(COMPRESSION_ERROR, f"header block: {e}") from e
        call = self.calls.get(stream)
        if call is not None:  # trailers: gRPC clients send none, but they end it
            if flags & END_STREAM:
                self._remote_end(call)
            return
        if stream % 2 == 0 or stream <= self.last_stream:
            raise _ConnectionError(PROTOCOL_ERROR, f"HEADERS opening stream {stream}")
        self.last_stream = stream
        if self.goaway_sent:
            self.write(_frame(RST_STREAM, 0, stream, _U32.pack(REFUSED_STREAM)))
            return
        call = _Call(self, stream)
        self.calls[stream] = call
        path = headers.get(b":path", b"").decode("utf-8", "replace")
        if headers.get(b":method") != b"POST" or path != CONNECT_PATH:
            self._refuse(call, GRPC_UNIMPLEMENTED, f"unknown method {path!r}",
                         opening=True)
            return
        self.write(_frame(HEADERS, END_HEADERS, stream, self.encoder.encode(
            [(":status", "200"), ("content-type", "application/grpc")])))
        call.shim = _Stream(self.server.package_id, self.server.invoke, call)
        if flags & END_STREAM:
            self._remote_end(call)

    def _settings(self, payload: memoryview) -> None:
        if len(payload) % 6:
            raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS length")
        for at in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, at)
            if key == INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "window too large")
                delta, self.peer_window = value - self.peer_window, value
                for call in self.calls.values():
                    call.send_window += delta
            elif key == MAX_FRAME_SIZE:
                if not 16_384 <= value < 1 << 24:
                    raise _ConnectionError(PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE")
                self.max_frame = value
            elif key == HEADER_TABLE_SIZE:
                self.encoder.header_table_size = value
        self.write(_frame(SETTINGS, ACK, 0))
        for call in list(self.calls.values()):
            self.flush(call)

    def _window_update(self, stream: int, payload: memoryview) -> None:
        if len(payload) != 4:
            raise _ConnectionError(FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        increment = _U32.unpack(payload)[0] & 0x7FFF_FFFF
        if stream == 0:
            self.send_window += increment
            for call in list(self.calls.values()):
                self.flush(call)
        elif (target := self.calls.get(stream)) is not None:
            target.send_window += increment
            self.flush(target)

    # --- calls
    def send_message(self, call: _Call, message: bytes) -> None:
        """One gRPC message on the call's stream, in DATA frames the windows allow."""
        n = len(message) + 5
        if (not call.unsent and n <= self.max_frame and n <= self.send_window
                and n <= call.send_window):
            self.send_window -= n
            call.send_window -= n
            self.write(_DATA_MESSAGE.pack(n >> 8, n & 0xFF, DATA, 0, call.id, 0,
                                          n - 5) + message)
            return
        call.unsent += _MESSAGE_PREFIX.pack(0, n - 5)
        call.unsent += message
        self.flush(call)

    def flush(self, call: _Call) -> None:
        """Send what flow control held back; then the trailers if the call ends."""
        unsent = call.unsent
        while unsent and self.send_window > 0 and call.send_window > 0:
            n = min(len(unsent), self.send_window, call.send_window, self.max_frame)
            self.write(_frame(DATA, 0, call.id, bytes(unsent[:n])))
            del unsent[:n]
            self.send_window -= n
            call.send_window -= n
        if call.ending and not unsent and not call.reset:
            error = call.shim.error if call.shim is not None else None
            self._trailers(call, GRPC_OK if error is None else GRPC_UNKNOWN, error)

    def _trailers(self, call: _Call, status: int, message: str | None,
                  opening: bool = False) -> None:
        headers = [(":status", "200"), ("content-type", "application/grpc")
                   ] if opening else []
        headers.append(("grpc-status", str(status)))
        if message:
            headers.append(("grpc-message", quote(message[:1024], _MESSAGE_SAFE)))
        self.write(_frame(HEADERS, END_HEADERS | END_STREAM, call.id,
                          self.encoder.encode(headers)))
        if not call.remote_closed:  # tell the peer to stop sending (as grpc-go)
            self.write(_frame(RST_STREAM, 0, call.id, _U32.pack(NO_ERROR)))
        call.reset = True
        self.calls.pop(call.id, None)

    def _refuse(self, call: _Call, status: int, message: str,
                opening: bool = False) -> None:
        """End a call with a gRPC error status and no more messages."""
        log.warning("peer call refused: %s", message)
        call.unsent.clear()
        self._trailers(call, status, message, opening)
        if call.shim is not None:
            call.shim.close(message)

    def _remote_end(self, call: _Call) -> None:
        """The peer ended its side of the call: the shim stream ends too."""
        call.remote_closed = True
        if call.shim is not None:
            call.shim.close()

    def _drop(self, call: _Call) -> None:
        """The call is gone (RST_STREAM, connection lost): send nothing more."""
        call.reset = True
        if call.shim is not None:
            call.shim.close()


def _unpad(payload: memoryview) -> memoryview:
    if not payload or payload[0] >= len(payload):
        raise _ConnectionError(PROTOCOL_ERROR, "bad padding")
    return payload[1:len(payload) - payload[0]]


# ----------------------------------------------------------------- the server
class ChaincodeServer:
    """A running chaincode server: its event loop on a thread of its own."""

    def __init__(self, address: str, package_id: str,
                 invoke: Invoke | None = None) -> None:
        if not package_id:
            raise ValueError("the chaincode package id (CHAINCODE_ID) is required")
        self.package_id = package_id
        self.invoke = invoke or _default_invoke
        self.connections: set[_Connection] = set()
        self.stopped = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Future[float | None] | None = None
        started: Future[int] = Future()
        threading.Thread(target=self._run, args=(address, started),
                         name="chaincode-loop", daemon=True).start()
        self.port = started.result()

    def _run(self, address: str, started: Future[int]) -> None:
        try:
            self._loop.run_until_complete(self._serve(address, started))
        except BaseException as e:
            if not started.done():
                started.set_exception(e)
            else:
                log.exception("chaincode server failed")
        finally:
            self._loop.close()
            self.stopped.set()

    async def _serve(self, address: str, started: Future[int]) -> None:
        host, _, port = address.rpartition(":")
        server = await self._loop.create_server(
            lambda: _Connection(self), host.strip("[]") or None, int(port),
            reuse_address=True)
        self._stop = self._loop.create_future()
        started.set_result(server.sockets[0].getsockname()[1])
        grace = await self._stop
        server.close()
        for conn in list(self.connections):
            conn.goaway()
        deadline = self._loop.time() + (grace or 0)
        while self._loop.time() < deadline and any(
                c.busy() for c in self.connections):
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        await asyncio.sleep(0)  # let the transports report their end

    def stop(self, grace: float | None = None) -> threading.Event:
        """Stop serving: no new calls; transactions awaiting the peer get up to
        ``grace`` seconds, then every connection is closed. The event is set once
        the server has stopped."""
        def request() -> None:
            if self._stop is not None and not self._stop.done():
                self._stop.set_result(grace)

        if not self.stopped.is_set():
            self._loop.call_soon_threadsafe(request)
        return self.stopped


def serve(address: str, package_id: str,
          invoke: Invoke | None = None) -> tuple[ChaincodeServer, int]:
    """Start the chaincode server; returns it and the port bound (``:0`` picks one)."""
    server = ChaincodeServer(address, package_id, invoke)
    return server, server.port


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m chaincode.server",
                                description="cityunion chaincode as a service")
    p.add_argument("--address", default=os.environ.get("CHAINCODE_SERVER_ADDRESS",
                                                       "0.0.0.0:9999"))
    p.add_argument("--id", default=os.environ.get("CHAINCODE_ID", ""),
                   help="the installed package id, label:hash (env CHAINCODE_ID)")
    args = p.parse_args(argv)
    if not args.id:
        p.error("the package id is required: set CHAINCODE_ID or pass --id")
    logging.basicConfig(level=os.environ.get("CHAINCODE_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server, port = serve(args.address, args.id)
    host = args.address.rsplit(":", 1)[0]
    log.info("chaincode %s listening on %s:%d", args.id, host, port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=5).wait()


if __name__ == "__main__":
    main()
