"""The Thrift server loop: one greenlet per connection, many calls on each.

Kitex and Apache clients keep long-lived pooled connections and send calls
on them one after another, so a connection is served until the peer closes
it, it stays idle longer than the idle timeout, or it sends something that
is not a Thrift call. gevent makes each of thousands of connections cost a
greenlet, not a thread.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from gevent.pool import Pool
from gevent.server import StreamServer
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TProcessor
from thriftpy2.transport import TTransportException

from rpc_server.transport import Framing, describe_unknown, detect, open_transport, read_prefix

log = logging.getLogger(__name__)


class ThriftServer:
    def __init__(
        self, rpc: Any, handler: object, host: str, port: int, max_connections: int, idle_timeout_s: float
    ) -> None:
        self._processor = TProcessor(rpc.IMService, handler)
        self._idle_timeout_s = idle_timeout_s
        self._server = StreamServer((host, port), self._serve_connection, spawn=Pool(max_connections))

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address  # type: ignore[no-any-return]

    def start(self) -> None:
        self._server.start()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self, timeout: float | None = None) -> None:
        self._server.stop(timeout)

    def _serve_connection(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self._idle_timeout_s)
        try:
            first = read_prefix(sock)
            if not first:
                return
            framing = detect(first)
            if framing is Framing.TTHEADER:
                log.warning(
                    "closing connection from %s: TTHeader transport is not supported; "
                    "use buffered or framed strict binary",
                    _fmt(peer),
                )
                return
            if framing is Framing.UNKNOWN:
                log.warning("closing connection from %s: %s", _fmt(peer), describe_unknown(first))
                return
            protocol = TCyBinaryProtocol(open_transport(sock, first, framing))
            while True:
                self._processor.process(protocol, protocol)
        except (TTransportException, ConnectionError):
            pass  # the peer closed the connection
        except TimeoutError:
            log.debug("closing idle connection from %s", _fmt(peer))
        except Exception as e:  # malformed input: drop this connection only
            log.info("closing connection from %s: %s: %s", _fmt(peer), type(e).__name__, e)
        finally:
            sock.close()


def _fmt(peer: tuple[str, int]) -> str:
    return f"{peer[0]}:{peer[1]}"
