"""The gunicorn worker class: gevent's pywsgi server, run by gunicorn.

Why not gunicorn's own gevent worker: measured here (wrk -c64, 2 workers),
gunicorn 27's HTTP machinery costs 175 us of CPU per /ping request, and the
`gevent_pywsgi` worker it also ships costs 147 us (and 264 against 328 us of
the HTTP tier's share of a send). gunicorn still manages the processes
(forking, replacing dead workers, graceful stops, signals).

What the stock `gevent_pywsgi` worker lacks, added here:
- gunicorn's `keepalive` never reaches pywsgi, which would keep an idle
  client connection open for ever; this handler puts `keepalive` on the
  socket, so a client idle that long between requests, or silent that long
  in the middle of one, is dropped;
- a socket timeout bounds each read, not a request: a client sending a byte
  a second would stay for ever. A request's head must arrive whole within
  HTTP_HEADER_TIMEOUT_S of its first byte, else the connection is closed;
  its body has a deadline of its own (http_server.slow_clients);
- after a response, pywsgi reads and discards whatever request body is left,
  even when it will close the connection: after a 413 answered from the
  Content-Length alone it would drain the whole 100 MB announced (or an
  endless chunked body). When the response says `Connection: close`, the
  handler stops reading instead;
- it builds a gunicorn access-log record for every request; the Falcon
  middleware already logs each request as JSON, so that is skipped.

Past capacity, a request that admission control (http_server.admission)
refuses is answered here, right after its head is parsed, with the
prepared refusal: no WSGI environment, no application. Refusals must cost
far less than the requests they make room for.

And on SIGTERM (or a quick stop, or the TERM that a graceful restart (HUP)
sends to old workers): event streams (http_server.streaming) end at once
rather than holding the graceful stop for their whole length, and no
connection is kept alive: each response in flight says `Connection: close`
(or, for a stream whose headers were sent before, the connection closes
after it), and connections idle between requests are closed at once. A
client, a browser's EventSource above all, then reconnects on a new
connection, which reaches a worker that is not stopping (or, if the whole
server stops, fails to connect and is retried), never this one.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from http_server.config import for_process as _config_for_process
from http_server.slow_clients import BodyDeadline, body_allowance_s, start_timer
from http_server.stopping import STOPPING

_CONFIG = _config_for_process().config  # imported by gunicorn's master: its settings, parsed once
_KEEPALIVE_S = _CONFIG.keepalive_s
_HEADER_TIMEOUT_S = _CONFIG.header_timeout_s


class _HeadTimeout(BaseException):
    """The head did not arrive whole in time. A BaseException: pywsgi would
    answer an Exception raised while parsing the head with a 400."""


class _Handler(PyWSGIHandler):  # type: ignore[misc]
    _served = False  # whether a request was answered on this connection (it is kept alive)
    _late_body = False
    _head_timer: Any = None
    _refusal: bytes | None = None  # this request's, when admission control refuses it here

    def handle(self) -> None:
        self.socket.settimeout(_KEEPALIVE_S)
        super().handle()

    def handle_one_request(self) -> Any:
        if not self._request_begins():
            return None
        self._head_timer = start_timer(_HEADER_TIMEOUT_S, _HeadTimeout)
        try:
            result = super().handle_one_request()
        except _HeadTimeout:
            return None  # close; an answer would be one more thing to wait for
        finally:
            self._head_timer.close()
        self._served = True
        if result is True and STOPPING.is_set():
            return None  # a stream whose headers went out before the stop: close after it
        return result

    def _request_begins(self) -> bool:
        """Wait (HTTP_KEEPALIVE_S at most) for the first byte of the next
        request; False: close (the client left or idled, or the worker is
        stopping and this kept-alive connection has no request pending)."""
        if self._served:
            if STOPPING.is_set():
                return False
            _IDLE.add(self)
        try:
            return bool(self.rfile.peek(1))  # b"" at the end of the stream
        except OSError:  # idle past keep-alive, or reset
            return False
        finally:
            _IDLE.discard(self)

    def stop_waiting(self) -> None:
        """The worker stops: end the wait for a next request (a request
        already received in part is still read, and answered)."""
        with contextlib.suppress(OSError, AttributeError):  # (AttributeError: pywsgi dropped the socket)
            self.socket.shutdown(socket.SHUT_RD)

    def read_request(self, raw_requestline: str) -> Any:
        try:
            return super().read_request(raw_requestline)
        finally:
            if self._head_timer is not None:
                self._head_timer.close()  # the head is in: the body has a deadline of its own

    def get_environ(self) -> dict[str, Any]:
        decision = self._early_refusal()
        self._refusal = decision or None
        if self._refusal is not None:
            return {}  # not used: handle_one_response writes the refusal
        environ: dict[str, Any] = super().get_environ()
        if decision is not None:  # admitted by the gate (admission.ADMITTED): not gated again
            from http_server import admission  # (imported once _early_refusal ran: a dict lookup here)

            environ[admission.ADMITTED_KEY] = True
        chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
        if self.content_length or chunked:
            allowance = body_allowance_s(
                None if chunked else self.content_length,
                _HEADER_TIMEOUT_S,
                _CONFIG.body_min_rate,
                _CONFIG.max_body_bytes,
            )
            self.wsgi_input.rfile = BodyDeadline(self.rfile, allowance, self._body_expired)
        return environ

    def _early_refusal(self) -> bytes | None:
        """The prepared refusal of this request, if admission control refuses
        it (after a wait for a slot, perhaps) and nothing about it needs the
        WSGI path; b"" when the gate admitted it; None when it was not asked."""
        from http_server import admission  # here, in the worker: it imports prometheus_client (see gunicorn_conf)

        if STOPPING.is_set() or self.close_connection or (self.content_length or 0) > admission.EARLY_MAX_BODY:
            return None
        return admission.early_refusal(self.command, self.path, self.headers)

    def handle_one_response(self) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is None:
            super().handle_one_response()
            return
        try:
            remaining = self.content_length or 0
            while remaining:  # the body, unread: the next request starts after it
                chunk = self.rfile.read(remaining)
                if not chunk:
                    raise ConnectionError("closed in the body")
                remaining -= len(chunk)
            from http_server import admission  # (imported once _early_refusal ran: a dict lookup here)

            admission.pace()  # in a refusal storm only
            self._sendall(refusal)
        except OSError:
            self.close_connection = True

    def _body_expired(self) -> None:
        self._late_body = True
        self.close_connection = True

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if STOPPING.is_set() or self._late_body:  # this connection takes no further request
            headers = [(name, value) for name, value in headers if name.lower() != "connection"]
            headers.append(("Connection", "close"))
        return super().start_response(status, headers, exc_info)

    def run_application(self) -> None:
        super().run_application()
        if self.close_connection:  # so the discarding of the unread body ends at once
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_RD)

    def log_request(self) -> None:
        pass  # http_server.telemetry logs each request


_IDLE: set[_Handler] = set()  # kept-alive connections waiting for their next request


def _begin_stopping() -> None:
    STOPPING.set()
    for handler in list(_IDLE):
        handler.stop_waiting()


class Worker(GeventPyWSGIWorker):  # type: ignore[misc]
    wsgi_handler = _Handler

    def handle_exit(self, sig: int, frame: object) -> None:
        gevent.spawn(_begin_stopping)  # out of the signal handler, as gunicorn's handle_quit does
        super().handle_exit(sig, frame)

    def handle_quit(self, sig: int, frame: object) -> None:
        gevent.spawn(_begin_stopping)
        super().handle_quit(sig, frame)
