"""Deadlines for slow HTTP clients: a request must arrive whole in time.

A socket timeout (HTTP_KEEPALIVE_S) bounds each read, not a request: a
client sending a byte every second would hold a connection for ever, and a
few thousand such clients fill a worker. So, besides the socket timeout:

- a request's head must arrive whole within HTTP_HEADER_TIMEOUT_S of its
  first byte (http_server.worker applies it);
- its body within HTTP_HEADER_TIMEOUT_S + length / HTTP_BODY_MIN_RATE
  seconds of the end of the head, where length is the Content-Length (at
  most MAX_BODY_BYTES: a larger body is refused from its Content-Length)
  or, for a chunked body, MAX_BODY_BYTES (`body_allowance_s`).

Past either deadline the connection is closed: a late head gets no answer,
a late body gets 408 (`BodyTimeout`) then the close.

Its own module, light, because the worker class imports it in gunicorn's
master, before gevent patches anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gevent import get_hub, getcurrent


class BodyTimeout(OSError):
    """The request body did not arrive in time, or stalled for a whole socket
    timeout. An OSError, as a client's broken connection is: pywsgi ignores
    it while discarding an unread body after the response; the application
    answers it with 408 (http_server.app)."""


class _Expired(BaseException):
    """Raised by the body's timer: a BaseException, so that no `except
    Exception` on the way (the JSON or multipart reader) swallows it."""


def start_timer(seconds: float, exception: type[BaseException]) -> Any:
    """Raise `exception` in this greenlet after `seconds`, unless the
    returned timer is closed first. gevent.Timeout's own mechanism without
    its object: measured 0.9 against 1.8-4.9 us, and it runs for every
    request."""
    timer = get_hub().loop.timer(seconds)
    timer.start(getcurrent().throw, exception, update=True)
    return timer


def body_allowance_s(content_length: int | None, header_timeout_s: float, min_rate: float, max_body: int) -> float:
    """How long a body may take to arrive, after the head."""
    length = max_body if content_length is None else min(content_length, max_body)
    return header_timeout_s + length / min_rate


class BodyDeadline:
    """A request's input stream (the buffered socket file pywsgi reads the
    body from), read under the body's deadline: no read returns later than
    `allowance_s` after this object is made. `on_expired` is called once the
    deadline has passed (the handler then closes the connection)."""

    __slots__ = ("_allowance_s", "_deadline", "_on_expired", "_rfile")

    def __init__(self, rfile: object, allowance_s: float, on_expired: Callable[[], None]) -> None:
        self._rfile = rfile
        self._allowance_s = allowance_s
        self._deadline = time.monotonic() + allowance_s
        self._on_expired = on_expired

    def read(self, size: int = -1) -> bytes:
        return self._bounded(self._rfile.read, size)  # type: ignore[attr-defined]

    def readline(self, size: int = -1) -> bytes:
        return self._bounded(self._rfile.readline, size)  # type: ignore[attr-defined]

    def _bounded(self, read: Callable[[int], bytes], size: int) -> bytes:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise self._expired()
        timer = start_timer(remaining, _Expired)
        try:
            return read(size)
        except _Expired:
            raise self._expired() from None
        except TimeoutError:  # no byte for a whole HTTP_KEEPALIVE_S
            raise self._expired("stalled") from None
        finally:
            timer.close()

    def _expired(self, how: str = "") -> BodyTimeout:
        self._on_expired()
        if how:
            return BodyTimeout(f"the request body stalled before it arrived whole; allowed {self._allowance_s:.0f} s")
        return BodyTimeout(f"the request body did not arrive within {self._allowance_s:.0f} s")
