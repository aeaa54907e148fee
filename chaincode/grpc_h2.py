"""A small gRPC server transport over cleartext HTTP/2, for bidirectional streams.

What a gRPC server must do for a streaming call is small: the HTTP/2 frames of
RFC 9113 (with flow control, PING keepalive and GOAWAY), HPACK header blocks (the
``hpack`` package), length-prefixed messages, and status trailers (gRPC's
PROTOCOL-HTTP2.md). A Fabric peer's gRPC client speaks HTTP/2 without TLS (prior
knowledge, RFC 9113 §3.3), so no TLS is offered.

The transport knows nothing of what the messages mean. A :class:`GrpcServer` is
given, per method path, the protobuf message class a request decodes to and an
``open`` function; each call to that method gets an :class:`Outbox` (its way to the
client) and returns a :class:`Handler` (the application's side of the call):

- every request message is passed to ``Handler.receive``, on the loop's thread;
- the application sends with ``Outbox.push`` and ends the call with
  ``Outbox.end(error)``: status OK, or UNKNOWN with ``error`` as the message;
- when the call ends from the client's side (END_STREAM, RST_STREAM, connection
  lost, a bad message) the transport calls ``Handler.close``;
- ``Handler.busy`` says whether the call awaits the client: a graceful stop waits
  for such calls.

It is written by hand rather than taken from grpcio because grpcio costs more than
the work does: its server hands every message between its threads and ours (sync)
or through its completion queue and asyncio futures (``grpc.aio``), about 70-100 µs
of CPU per message. Here one asyncio protocol parses and builds frames, and one
``write`` sends all that a read from the socket causes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol, TypeAlias, cast
from urllib.parse import quote

import hpack
from google.protobuf.message import DecodeError

log = logging.getLogger("cityunion.chaincode")

Pb: TypeAlias = Any  # a protobuf message (the generated modules have no stubs)


class Outbox(Protocol):
    """Where a call's messages to the client go, in order (the transport's side)."""

    def push(self, msg: Pb) -> None:
        """Queue one message for the client; never blocks."""

    def end(self, error: str | None = None) -> None:
        """No message follows: end the call once the queued ones are sent, with
        status OK, or UNKNOWN and ``error`` as its message."""


class Handler(Protocol):
    """The application's side of one call (see the module docstring)."""

    def receive(self, msg: Pb) -> None:
        """Handle one message from the client."""

    def close(self, error: str | None = None) -> None:
        """The call has ended from the client's side or the transport's."""

    def busy(self) -> bool:
        """Whether the call awaits the client (a graceful stop waits for it)."""


Open: TypeAlias = Callable[[Outbox], Handler]
"""Start one call: given its outbox, return its handler."""


class Method:
    """A streaming method: what its requests decode to, and how a call starts."""

    def __init__(self, request: type[Any], open: Open) -> None:
        self.request, self.open = request, open


# ------------------------------------------------------------------- HTTP/2
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
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
MAX_MESSAGE = 100 * 1024 * 1024  # as the Go shim's server and the peer's client

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
    """One call: an HTTP/2 stream carrying a method's messages both ways.

    It is the handler's :class:`Outbox`: a message becomes a DATA frame at once,
    or waits here while the client's flow-control windows are exhausted.
    """

    def __init__(self, conn: _Connection, stream_id: int) -> None:
        self.conn, self.id = conn, stream_id
        self.method: Method | None = None
        self.handler: Handler | None = None
        self.error: str | None = None  # the status message once the call ends
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

    def end(self, error: str | None = None) -> None:
        if not (self.reset or self.ending):
            self.ending, self.error = True, error
            self.conn.flush(self)


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection from a client: HTTP/2 frames in and out, on the loop.

    The socket is read into one fixed buffer (a plain ``Protocol`` gets a fresh
    256 KiB bytes object per read, an mmap and munmap each time). Everything a
    read causes (transactions run to their next state call, replies) is written
    in one ``write`` once it is handled.
    """

    def __init__(self, server: GrpcServer) -> None:
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
        """Whether a call of this connection awaits the client."""
        return any(c.handler is not None and c.handler.busy()
                   for c in self.calls.values())

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
            assert call.method is not None and call.handler is not None
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
                msg = call.method.request.FromString(view)  # a copy: buffer reused
            except DecodeError as e:
                name = call.method.request.__name__
                self._refuse(call, GRPC_INTERNAL, f"unreadable {name}: {e}")
                return
            finally:
                view.release()  # ``call.recv`` may grow again
            call.handler.receive(msg)
        if call.recv:
            del call.recv[:at]
        elif at < size:
            call.recv = bytearray(data[at:])
        if flags & END_STREAM:
            self._remote_end(call)

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
        method = self.server.methods.get(path)
        if headers.get(b":method") != b"POST" or method is None:
            self._refuse(call, GRPC_UNIMPLEMENTED, f"unknown method {path!r}",
                         opening=True)
            return
        self.write(_frame(HEADERS, END_HEADERS, stream, self.encoder.encode(
            [(":status", "200"), ("content-type", "application/grpc")])))
        call.method = method
        call.handler = method.open(call)
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
            error = call.error
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
        if call.handler is not None:
            call.handler.close(message)

    def _remote_end(self, call: _Call) -> None:
        """The client ended its side of the call: the handler's side ends too."""
        call.remote_closed = True
        if call.handler is not None:
            call.handler.close()

    def _drop(self, call: _Call) -> None:
        """The call is gone (RST_STREAM, connection lost): send nothing more."""
        call.reset = True
        if call.handler is not None:
            call.handler.close()


def _unpad(payload: memoryview) -> memoryview:
    if not payload or payload[0] >= len(payload):
        raise _ConnectionError(PROTOCOL_ERROR, "bad padding")
    return payload[1:len(payload) - payload[0]]


# ----------------------------------------------------------------- the server
class GrpcServer:
    """A running gRPC server: its event loop on a thread of its own.

    ``methods`` maps a method's path (``/package.Service/Method``) to how its calls
    are handled; a call to any other path is answered UNIMPLEMENTED. Every handler
    runs on the loop's thread. The constructor returns once the address is bound
    (``:0`` picks a port: see :attr:`port`).
    """

    def __init__(self, address: str, methods: Mapping[str, Method],
                 thread_name: str = "grpc-loop") -> None:
        self.methods = dict(methods)
        self.connections: set[_Connection] = set()
        self.stopped = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Future[float | None] | None = None
        started: Future[int] = Future()
        threading.Thread(target=self._run, args=(address, started),
                         name=thread_name, daemon=True).start()
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
        """Stop serving: no new calls; calls awaiting the client get up to
        ``grace`` seconds, then every connection is closed. The event is set once
        the server has stopped."""
        def request() -> None:
            if self._stop is not None and not self._stop.done():
                self._stop.set_result(grace)

        if not self.stopped.is_set():
            self._loop.call_soon_threadsafe(request)
        return self.stopped
