"""A gevent-safe pool of persistent Thrift connections to rpc_server.

Why not thriftpy2's `make_client` as it is:
- it has no connect timeout, so a black-holed server would hang a request;
- its client always sends seqid 0 and never checks a reply's seqid or
  method name, so after a timeout a late reply would be read as the answer
  to the next call on that connection.
Here every call gets a fresh seqid and both are checked; a connection whose
call failed or timed out in any way is closed, never reused; an idle pooled
connection that the server has closed is noticed before reuse; and each call
has a total deadline (not only a per-read socket timeout).

Retries: only a connect failure is retried (on the next endpoint, if there
are several), because then the request certainly never reached a server.
After a timeout or a dropped reply the outcome is unknown, so the caller
gets RpcUnavailable and the client decides, with its
Idempotency-Key, whether to retry. RpcUnavailable says whether the call
was sent: not (no free connection or no connect before the deadline: the
RPC server never saw it), or sent (its outcome unknown to us).

Deadlines: the call's deadline starts when `call` does (RPC_TIMEOUT_MS, or
the caller's `timeout_s`), and covers waiting for a pooled connection and
connecting. The time then left travels with the call as its request's
`TimeoutMs` (idl_rpc.thrift; rpc_server.deadline), less a margin
(DEADLINE_MARGIN: a tenth, at least 20 ms) for the RPC server reading the
call late and for the answer's way back, so the RPC server answers before
we give up. A call with less than the margin left is not sent. Once a call
is sent, its reply is waited for until the TimeoutMs it carries plus half
the call's budget (REPLY_GRACE_SHARE): the RPC server answers by its
TimeoutMs unless it is down or stuck, so a busy RPC server, or this
worker's own busy loop, is not reported as "outcome unknown". A call's
503 thus comes within 1.5 times its budget at most.
"""

from __future__ import annotations

import time
from collections import deque
from select import POLLERR, POLLHUP, POLLIN, POLLPRI
from typing import Any

import gevent
from gevent.lock import BoundedSemaphore
from gevent.monkey import get_original
from thriftpy2.protocol import TCyBinaryProtocol, cybin
from thriftpy2.protocol.exc import TProtocolException
from thriftpy2.thrift import TApplicationException, TClient, TDecodeException, TMessageType
from thriftpy2.transport import TCyBufferedTransport, TSocket, TTransportException

from http_server.endpoints import Endpoints

# The unpatched poll: a zero-timeout check never blocks, so gevent's is not needed.
_poll = get_original("select", "poll")


class RpcUnavailable(Exception):
    """The RPC server could not answer: down, overloaded or too slow. (The
    one case certainly safe to retry, a connect failure, is retried already
    by _connect.) `sent`: whether the call went out (then its outcome is
    unknown to us); if not, the RPC server never saw it."""

    def __init__(self, msg: str, sent: bool) -> None:
        super().__init__(msg)
        self.sent = sent


DEADLINE_MARGIN_SHARE, DEADLINE_MARGIN_MIN_S = 0.1, 0.02
REPLY_GRACE_SHARE = 0.5


def time_for_server(remaining_s: float) -> float:
    """The part of `remaining_s` the RPC server is given (its TimeoutMs), the
    margin kept for reading the call late and the answer's way back."""
    return remaining_s - max(DEADLINE_MARGIN_MIN_S, remaining_s * DEADLINE_MARGIN_SHARE)


class ReplyMismatch(Exception):
    pass


# The Cython protocol's own error; the compiled module has no type stubs.
_CY_PROTOCOL_ERROR: type[Exception] = cybin.ProtocolError  # type: ignore[attr-defined]

# A reply that is not a valid answer to the call: the server is not well.
_BAD_REPLY = (ReplyMismatch, TApplicationException, _CY_PROTOCOL_ERROR, TProtocolException, TDecodeException)


class CheckedClient(TClient):
    """thriftpy2's TClient with a seqid per call and checked replies."""

    def _send(self, _api: str, **kwargs: Any) -> None:
        self._seqid = (self._seqid + 1) & 0x7FFFFFFF
        super()._send(_api, **kwargs)

    def _recv(self, _api: str) -> Any:
        name, kind, seqid = self._iprot.read_message_begin()
        if name != _api or seqid != self._seqid:
            raise ReplyMismatch(f"reply {name!r}#{seqid} to call {_api!r}#{self._seqid}")
        if kind == TMessageType.EXCEPTION:
            error = TApplicationException()
            error.read(self._iprot)
            raise error
        result = getattr(self._service, _api + "_result")()
        result.read(self._iprot)
        if result.success is None:
            raise TApplicationException(TApplicationException.MISSING_RESULT)
        return result.success


class _Connection:
    def __init__(self, service: Any, host: str, port: int, connect_timeout_s: float, call_timeout_s: float):
        self._socket = TSocket(
            host, port, socket_timeout=call_timeout_s * 1000, connect_timeout=connect_timeout_s * 1000
        )
        self._socket.open()  # raises TTransportException(NOT_OPEN) on failure
        transport = TCyBufferedTransport(self._socket)
        self.client = CheckedClient(service, TCyBinaryProtocol(transport))

    def is_stale(self) -> bool:
        """An idle connection with something to read was closed (or garbled)
        by the server; either way it must not carry another call. (poll, not
        select: select fails on descriptors from 1024 up, which a worker
        holding a thousand event streams reaches.)"""
        sock = self._socket.sock
        if sock is None:
            return True
        poller = _poll()
        poller.register(sock.fileno(), POLLIN | POLLPRI | POLLERR | POLLHUP)
        return bool(poller.poll(0))

    def close(self) -> None:
        self._socket.close()


class RpcClientPool:
    def __init__(
        self,
        service: Any,
        endpoints: Endpoints,
        size: int,
        connect_timeout_s: float,
        call_timeout_s: float,
    ) -> None:
        self._service = service
        self._endpoints = endpoints
        self._connect_timeout_s = connect_timeout_s
        self._call_timeout_s = call_timeout_s
        self._slots = BoundedSemaphore(size)
        self._idle: deque[_Connection] = deque()

    def call(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """Call `method` within the call timeout, or `timeout_s` (either
        includes waiting for a free connection and connecting), or raise
        RpcUnavailable. A request with a `TimeoutMs` field gets the time
        left (see the module's docstring)."""
        budget_s = timeout_s or self._call_timeout_s
        deadline = time.monotonic() + budget_s
        timeout = gevent.Timeout(budget_s)
        timeout.start()
        connection = None
        sent = False
        try:
            self._slots.acquire()  # waits for a free slot, at most until the deadline
            try:
                connection = self._checkout()
                server_s = time_for_server(deadline - time.monotonic())
                if server_s <= 0:
                    self._idle.append(connection)  # unused: it stays good
                    connection = None
                    raise RpcUnavailable("no time left to call the message service before the deadline", sent=False)
                for request in args:
                    if hasattr(request, "TimeoutMs"):
                        request.TimeoutMs = max(1, int(server_s * 1000))
                # Sent: the RPC server answers by its TimeoutMs, unless it is
                # down or stuck; give a busy one the grace to be heard.
                timeout.close()
                timeout = gevent.Timeout(server_s + budget_s * REPLY_GRACE_SHARE)
                timeout.start()
                sent = True
                result = getattr(connection.client, method)(*args)
            except BaseException:
                if connection is not None:
                    connection.close()
                raise
            else:
                self._idle.append(connection)
            finally:
                self._slots.release()
            return result
        except gevent.Timeout as e:
            if e is not timeout:
                raise
            raise RpcUnavailable("message service timed out", sent) from None
        except TTransportException as e:
            if e.type == TTransportException.NOT_OPEN:
                raise RpcUnavailable("cannot connect to the message service", sent) from e
            raise RpcUnavailable("connection to the message service failed", sent) from e
        except (OSError, *_BAD_REPLY) as e:
            raise RpcUnavailable(f"message service call failed: {e}", sent) from e
        finally:
            timeout.close()

    def _checkout(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()  # most recently used: least likely stale
            if not connection.is_stale():
                return connection
            connection.close()
        return self._connect()

    def _connect(self) -> _Connection:
        """Connect to the next endpoint; on failure try the others (a single
        one twice): nothing was sent yet, so this retry is always safe."""
        order = self._endpoints.order()
        if not order:
            raise TTransportException(TTransportException.NOT_OPEN, "no RPC endpoint known")
        if len(order) == 1:
            order = order * 2
        for attempt, endpoint in enumerate(order):
            try:
                # Each read's own timeout: never shorter than a call's reply wait (call() bounds the whole).
                read_timeout_s = self._call_timeout_s * (1 + REPLY_GRACE_SHARE)
                connection = _Connection(self._service, *endpoint, self._connect_timeout_s, read_timeout_s)
            except TTransportException:
                self._endpoints.failed(endpoint)
                if attempt == len(order) - 1:
                    raise
                continue
            self._endpoints.succeeded(endpoint)
            return connection
        raise AssertionError("unreachable")
