"""The gunicorn worker class: gevent's pywsgi server, run by gunicorn.

Why not gunicorn's own gevent worker: measured here (wrk -c64, 2 workers),
gunicorn 27's HTTP machinery costs 175 us of CPU per /ping request, and the
`gevent_pywsgi` worker it also ships costs 147 us (and 264 against 328 us of
the HTTP tier's share of a send). gunicorn still manages the processes
(forking, replacing dead workers, graceful stops, signals).

Three things the stock `gevent_pywsgi` worker lacks, added here:
- gunicorn's `keepalive` never reaches pywsgi, which would keep an idle
  client connection open for ever; this handler puts `keepalive` on the
  socket, so an idle (or trickling) client is dropped after that long;
- after a response, pywsgi reads and discards whatever request body is left,
  even when it will close the connection: after a 413 answered from the
  Content-Length alone it would drain the whole 100 MB announced (or an
  endless chunked body). When the response says `Connection: close`, the
  handler stops reading instead;
- it builds a gunicorn access-log record for every request; the Falcon
  middleware already logs each request as JSON, so that is skipped.

And on SIGTERM (or a quick stop), event streams (http_server.streaming)
end at once rather than holding the graceful stop for their whole length.
"""

from __future__ import annotations

import contextlib
import socket

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from http_server.config import load as _load_config
from http_server.stopping import STOPPING

_KEEPALIVE_S = _load_config([]).keepalive_s


class _Handler(PyWSGIHandler):  # type: ignore[misc]
    def handle(self) -> None:
        self.socket.settimeout(_KEEPALIVE_S)
        super().handle()

    def run_application(self) -> None:
        super().run_application()
        if self.close_connection:  # so the discarding of the unread body ends at once
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_RD)

    def log_request(self) -> None:
        pass  # http_server.telemetry logs each request


class Worker(GeventPyWSGIWorker):  # type: ignore[misc]
    wsgi_handler = _Handler

    def handle_exit(self, sig: int, frame: object) -> None:
        gevent.spawn(STOPPING.set)  # out of the signal handler, as gunicorn's handle_quit does
        super().handle_exit(sig, frame)

    def handle_quit(self, sig: int, frame: object) -> None:
        gevent.spawn(STOPPING.set)
        super().handle_quit(sig, frame)
