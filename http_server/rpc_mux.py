"""Several Thrift calls in flight on one connection to rpc_server, replies
matched by seqid: the Thrift hop amortised as auto-pipelining amortises
Redis (rpc_server.storage.pipelining).

Why: with one call per pooled connection (http_server.rpc_pool), every call
costs its own send and receive system calls in both tiers, each waking the
other process, and a check that the idle connection was not closed (a
poll). Here every call made in the same turn of the worker's event loop
goes out in one write (by the first of them, after a gevent.sleep(0) that
lets the others add theirs), framed (a 4-byte length before each message, which
the RPC server detects), and one reading greenlet per connection takes
whatever replies have arrived with one receive and wakes each caller.

Safety, as rpc_pool's:
- every call has a seqid of its own on its connection, and a reply is
  delivered only to the call of that seqid and method: a reply that comes
  after its call timed out finds no one waiting and is dropped, never read
  as the answer to another call;
- a call that times out gets RpcUnavailable (outcome unknown); the
  connection goes on serving the others;
- a connection that fails (reset, closed, a reply that is not a valid
  answer) fails every call in flight on it (outcome unknown) and is
  replaced by a new one for the next call; only connecting is retried
  (nothing was sent).
"""

from __future__ import annotations

import itertools
import socket
import struct
from typing import Any

import gevent
from gevent.event import AsyncResult
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TApplicationException, TMessageType
from thriftpy2.transport import TCyMemoryBuffer, TTransportException

from http_server.endpoints import Endpoints
from http_server.rpc_pool import _BAD_REPLY, ReplyMismatch, RpcUnavailable

_FRAME = struct.Struct(">i")
_RECV_BYTES = 262144
_MAX_FRAME = 64 * 1024 * 1024  # far above any reply; a larger length is a garbled stream


class _ConnectionLost(Exception):
    """The connection failed; every call in flight on it has an unknown outcome."""


class _MuxConnection:
    """One framed connection carrying many calls at once."""

    def __init__(self, service: Any, host: str, port: int, connect_timeout_s: float) -> None:
        self._service = service
        self._sock = socket.create_connection((host, port), timeout=connect_timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.settimeout(None)  # the reader waits for replies for as long as calls are in flight
        self._seqids = itertools.count(1)
        self._waiting: dict[int, tuple[str, AsyncResult]] = {}
        self._out = bytearray()
        self._flushing = False
        self.closed = False
        self._reader = gevent.spawn(self._read_replies)

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    def call(self, method: str, request: Any) -> Any:
        """Send the call (in the next write of this loop turn) and wait for its reply.
        The caller's gevent.Timeout bounds the wait."""
        if self.closed:
            raise _ConnectionLost("connection closed")
        seqid = next(self._seqids) & 0x7FFFFFFF
        self._out += _encode_call(self._service, method, seqid, request)
        waiter = AsyncResult()
        self._waiting[seqid] = (method, waiter)
        try:
            if not self._flushing:  # the first call of this loop turn: it writes them all
                self._flushing = True
                try:
                    gevent.sleep(0)  # the other greenlets ready in this turn add their calls first
                finally:
                    self._flush()
            payload = waiter.get()
        finally:
            self._waiting.pop(seqid, None)  # a late reply to this seqid is now dropped
        return _decode_reply(self._service, method, seqid, payload)

    def _flush(self) -> None:
        """Send what the calls of this loop turn queued, in one write."""
        self._flushing = False
        if self.closed or not self._out:
            return
        data, self._out = bytes(self._out), bytearray()
        try:
            self._sock.sendall(data)
        except BaseException as e:  # a write cut short (a timeout too) leaves a garbled stream: end it
            self._fail(_ConnectionLost(f"connection to the message service failed: {e!r}"))
            if not isinstance(e, OSError):
                raise

    def _read_replies(self) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = self._sock.recv(_RECV_BYTES)
                if not chunk:
                    raise _ConnectionLost("the message service closed the connection")
                buffer += chunk
                start = 0
                while len(buffer) - start >= 4:
                    size = _FRAME.unpack_from(buffer, start)[0]
                    if not 0 < size <= _MAX_FRAME:
                        raise _ConnectionLost(f"garbled reply stream (frame length {size})")
                    if len(buffer) - start - 4 < size:
                        break
                    payload = bytes(buffer[start + 4 : start + 4 + size])
                    start += 4 + size
                    self._deliver(payload)
                del buffer[:start]
        except _ConnectionLost as e:
            self._fail(e)
        except (OSError, *_BAD_REPLY) as e:
            self._fail(_ConnectionLost(f"connection to the message service failed: {e}"))

    def _deliver(self, payload: bytes) -> None:
        name, _, seqid = TCyBinaryProtocol(TCyMemoryBuffer(payload)).read_message_begin()
        entry = self._waiting.get(seqid)
        if entry is None:
            return  # its call timed out: dropped
        method, waiter = entry
        if name != method:
            raise ReplyMismatch(f"reply {name!r}#{seqid} to call {method!r}#{seqid}")
        waiter.set(payload)

    def _fail(self, error: Exception) -> None:
        if self.closed:
            return
        self.closed = True
        waiting, self._waiting = self._waiting, {}
        for _, waiter in waiting.values():
            waiter.set_exception(error)
        self._sock.close()

    def close(self) -> None:
        self._reader.kill(block=False)
        self._fail(_ConnectionLost("connection closed"))


def _encode_call(service: Any, method: str, seqid: int, request: Any) -> bytes:
    buffer = TCyMemoryBuffer()
    protocol = TCyBinaryProtocol(buffer)
    protocol.write_message_begin(method, TMessageType.CALL, seqid)
    args = getattr(service, method + "_args")()
    args.req = request
    args.write(protocol)
    protocol.write_message_end()
    message: bytes = buffer.getvalue()
    return _FRAME.pack(len(message)) + message


def _decode_reply(service: Any, method: str, seqid: int, payload: bytes) -> Any:
    protocol = TCyBinaryProtocol(TCyMemoryBuffer(payload))
    _, kind, _ = protocol.read_message_begin()
    if kind == TMessageType.EXCEPTION:
        error = TApplicationException()
        error.read(protocol)
        raise error
    result = getattr(service, method + "_result")()
    result.read(protocol)
    if result.success is None:
        raise TApplicationException(TApplicationException.MISSING_RESULT)
    return result.success


class MuxClient:
    """RpcClientPool's `call`, over `size` multiplexed connections."""

    def __init__(
        self, service: Any, endpoints: Endpoints, size: int, connect_timeout_s: float, call_timeout_s: float
    ) -> None:
        self._service = service
        self._endpoints = endpoints
        self._connect_timeout_s = connect_timeout_s
        self._call_timeout_s = call_timeout_s
        self._connections: list[_MuxConnection | None] = [None] * size

    def call(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """Call `method` (every IMService method takes one request) within the call timeout, or `timeout_s` (connecting
        included), or raise RpcUnavailable."""
        timeout = gevent.Timeout(timeout_s or self._call_timeout_s)
        timeout.start()
        try:
            return self._connection().call(method, *args)
        except gevent.Timeout as e:
            if e is not timeout:
                raise
            raise RpcUnavailable("message service timed out") from None
        except TTransportException as e:
            raise RpcUnavailable("cannot connect to the message service") from e
        except _ConnectionLost as e:
            raise RpcUnavailable(str(e)) from e
        except (OSError, *_BAD_REPLY) as e:
            raise RpcUnavailable(f"message service call failed: {e}") from e
        finally:
            timeout.close()

    def _connection(self) -> _MuxConnection:
        """The open connection with the fewest calls in flight (a closed one is replaced)."""
        best: tuple[int, int] | None = None
        for i, connection in enumerate(self._connections):
            if connection is None or connection.closed:
                self._connections[i] = connection = self._connect()
            if best is None or connection.in_flight < best[0]:
                best = (connection.in_flight, i)
        assert best is not None
        chosen = self._connections[best[1]]
        assert chosen is not None
        return chosen

    def _connect(self) -> _MuxConnection:
        """Connect to the next endpoint; on failure try the others (a single
        one twice): nothing was sent yet, so this retry is always safe."""
        order = self._endpoints.order()
        if not order:
            raise TTransportException(TTransportException.NOT_OPEN, "no RPC endpoint known")
        if len(order) == 1:
            order = order * 2
        for attempt, endpoint in enumerate(order):
            try:
                connection = _MuxConnection(self._service, *endpoint, self._connect_timeout_s)
            except OSError as e:
                self._endpoints.failed(endpoint)
                if attempt == len(order) - 1:
                    raise TTransportException(TTransportException.NOT_OPEN, str(e)) from e
                continue
            self._endpoints.succeeded(endpoint)
            return connection
        raise AssertionError("unreachable")
