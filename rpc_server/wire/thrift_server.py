"""The Thrift server loop: one greenlet per connection, many calls on each.

Kitex and Apache clients keep long-lived pooled connections and send calls
on them one after another, so a connection is served until the peer closes
it, stays idle longer than the idle timeout, sends something that is not a
well-formed call, or the server shuts down. gevent makes each of thousands
of connections cost a greenlet, not a thread.

Each message is read whole and checked (transport, message_check) before
thriftpy2 decodes it from memory; the reply goes straight to the socket.
The handler runs inside a rpc_server.call_context: the call's deadline
counts from when it was read whole, and a transport that carries a timeout
of its own (TTHeader) passes it there.

Shutdown (stop()): stop accepting, close the connections that are idle
between calls, let the calls in flight finish and be answered (within the
grace period), then close the rest.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import Any

from gevent.pool import Pool
from gevent.server import StreamServer
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TProcessor
from thriftpy2.transport import TCyMemoryBuffer, TTransportException

from rpc_server.call_context import CallContext, calling
from rpc_server.observability import CONNECTIONS, REFUSED
from rpc_server.wire.message_check import Limits, Malformed
from rpc_server.wire.transport import (
    Framing,
    MessageReader,
    MessageTimeout,
    PeerClosed,
    describe_unknown,
    detect,
    reply_transport,
)

log = logging.getLogger(__name__)


class ThriftServer:
    def __init__(
        self,
        rpc: Any,
        handler: object,
        listener: socket.socket,
        max_connections: int,
        idle_timeout_s: float,
        message_timeout_s: float,
        limits: Limits,
    ) -> None:
        """`listener`: a listening socket (rpc_server.wire.listening)."""
        self._processor = TProcessor(rpc.IMService, handler)
        self._idle_timeout_s = idle_timeout_s
        self._message_timeout_s = message_timeout_s
        self._limits = limits
        self._readers: dict[socket.socket, MessageReader] = {}
        self._stopping = False
        self._server = StreamServer(listener, self._serve_connection, spawn=Pool(max_connections))

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address  # type: ignore[no-any-return]

    def start(self) -> None:
        self._server.start()

    def stop(self, grace_s: float) -> None:
        """Graceful stop: see the module's docstring."""
        self._stopping = True
        self._server.close()  # stop accepting
        for sock, reader in list(self._readers.items()):
            if reader.idle:
                _end_reading(sock)
        self._server.stop(timeout=grace_s)  # wait for calls in flight, then kill what is left

    def _serve_connection(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        CONNECTIONS.inc()
        reader = MessageReader(sock, self._limits, self._idle_timeout_s, self._message_timeout_s)
        self._readers[sock] = reader
        try:
            self._serve(sock, peer, reader)
        except (TTransportException, ConnectionError, PeerClosed):
            pass  # the peer closed the connection
        except TimeoutError:
            log.debug("closing idle connection from %s", _fmt(peer))
        except MessageTimeout as e:
            self._refuse(peer, "slow", str(e))
        except Malformed as e:
            self._refuse(peer, "malformed", str(e))
        except Exception as e:  # anything else the client caused: drop this connection only
            self._refuse(peer, "error", f"{type(e).__name__}: {e}")
        finally:
            del self._readers[sock]
            CONNECTIONS.dec()
            sock.close()

    def _serve(self, sock: socket.socket, peer: tuple[str, int], reader: MessageReader) -> None:
        first = reader.first_bytes()
        if not first:
            return
        framing = detect(first)
        if framing is Framing.APACHE_THEADER:
            why = "Apache Thrift's THeader transport is not supported; use buffered, framed or Kitex's TTHeader"
            self._refuse(peer, "theader", why)
            return
        if framing is Framing.UNKNOWN:
            self._refuse(peer, "protocol", describe_unknown(first))
            return
        reader.framing = framing
        replies = TCyBinaryProtocol(reply_transport(sock, framing, reader))
        while not self._stopping:
            message = reader.next_message()
            if message is None:
                return
            received_at = time.monotonic()  # the call's deadline counts from here (rpc_server.deadline)
            sock.settimeout(self._message_timeout_s)  # a client that does not read cannot block the reply for ever
            with calling(_context(reader, received_at)):
                self._processor.process(TCyBinaryProtocol(TCyMemoryBuffer(message)), replies)

    def _refuse(self, peer: tuple[str, int], reason: str, why: str) -> None:
        REFUSED.labels(reason).inc()
        log.warning("closing connection from %s: %s", _fmt(peer), why)


def _context(reader: MessageReader, received_at: float) -> CallContext:
    """The call just read: when, and what its transport tells (TTHeader's header)."""
    header = reader.header if reader.framing is Framing.TTHEADER else None
    if header is None:
        return CallContext(received_at)
    return CallContext(received_at, header.request_id, header.from_service, header.rpc_timeout_ms)


def _end_reading(sock: socket.socket) -> None:
    """Wake the greenlet waiting for a call on `sock` with an end of file, as
    if the client had closed: it returns and closes the connection itself.

    Through a duplicate of the descriptor: gevent's shutdown() on `sock`
    itself would throw cancel_wait_ex ("File descriptor was closed in
    another greenlet") into that greenlet instead, a warning per connection
    on every clean stop. Only the reading side: a call that arrived at the
    same moment is still answered."""
    with contextlib.suppress(OSError), socket.fromfd(sock.fileno(), sock.family, sock.type) as duplicate:
        duplicate.shutdown(socket.SHUT_RD)  # (OSError: the peer had already closed it)


def _fmt(peer: tuple[str, int]) -> str:
    return f"{peer[0]}:{peer[1]}"
