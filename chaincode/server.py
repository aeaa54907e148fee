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

The gRPC transport is :mod:`chaincode.grpc_h2` (HTTP/2 written for this server:
grpcio's per-message cost exceeds the contract's, and an endorsement is 8
messages: TRANSACTION; GET_STATE, PUT_STATE, PUT_STATE and their answers;
COMPLETED). This module is the shim protocol on top of it.

Run it with ``python -m chaincode.server`` (``CHAINCODE_SERVER_ADDRESS``, default
``0.0.0.0:9999``; ``CHAINCODE_ID``, the installed package id ``label:hash``).
TLS between peer and chaincode is not offered (connection.json ``tls_required:
false``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextvars import Context
from datetime import UTC, datetime
from typing import Any, TypeAlias, TypeVar

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
from chaincode.grpc_h2 import GrpcServer, Method, Outbox
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
MAX_IDLE_WORKERS = 256  # transaction greenlets kept for reuse, per stream
_VALID_HEADER_TYPES = (common_pb2.ENDORSER_TRANSACTION, common_pb2.CONFIG)


class ShimError(Exception):
    """The peer refused a state call, or the stream to the peer has ended."""


def _default_invoke(stub: Stub) -> bytes:
    from chaincode import contract  # imported late: tests may run another invoke

    return contract.invoke(stub)


# ----------------------------------------------------------------- one stream
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
        self.outbox.end(error)

    def busy(self) -> bool:
        """Whether a transaction awaits the peer's answer."""
        return bool(self.pending)

    def receive(self, msg: Pb) -> None:
        """One message from the peer (the transport's :class:`Handler` call)."""
        try:
            error = self.handle(msg)
            if error is not None:
                self.send(Msg(type=Msg.ERROR, payload=error.encode(), txid=msg.txid))
        except Exception as e:  # never leave waiting transactions behind
            log.exception("shim stream failed")
            error = f"{type(e).__name__}: {e}"
        if error is not None:
            self.close(error)

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


# ----------------------------------------------------------------- the server
CONNECT_PATH = "/protos.Chaincode/Connect"


class ChaincodeServer(GrpcServer):
    """A running chaincode server: ``protos.Chaincode/Connect`` on a
    :class:`~chaincode.grpc_h2.GrpcServer`, each call a shim stream."""

    def __init__(self, address: str, package_id: str,
                 invoke: Invoke | None = None) -> None:
        if not package_id:
            raise ValueError("the chaincode package id (CHAINCODE_ID) is required")
        self.package_id = package_id
        self.invoke = invoke or _default_invoke
        connect = Method(Msg, lambda outbox: _Stream(self.package_id, self.invoke,
                                                     outbox))
        super().__init__(address, {CONNECT_PATH: connect},
                         thread_name="chaincode-loop")


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
