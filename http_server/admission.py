"""Admission control of the HTTP tier: past capacity, refuse cheaply.

Each HTTP worker keeps an adaptive concurrency limit (plumbing.admission:
AIMD against HTTP_ADMISSION_TARGET_MS, at most RPC_POOL_SIZE, since a call
beyond the pool would only wait for a connection) on its RPC calls in
flight: MessageService takes a slot for each ordinary Send, Pull and
ListChats call and gives it back with the call's duration as the latency
sample (a 503 from behind, the RPC server's own limit or a failing Redis,
is a drop). Not the request's whole life: a client whose body is still
trickling in holds no slot, so slow clients cannot fill the limit, and a
long-poll's wait (its own pool) is not counted.

A request to a route that calls the RPC server (`/api/send`, `/api/pull`,
`/api/chats`, `/api/subscribe`) that arrives while the limit is full waits
for a slot, HTTP_ADMISSION_QUEUE_MS at most, in a waiting room (first come,
first served: woken by the release of a slot), and is refused if none came,
before Falcon sees it: its body is neither read nor parsed, no RPC call is
made, and the answer is bytes prepared at start-up. That is what keeps a
refusal cheap (it still costs the request's parsing by gevent's pywsgi,
its wait, no CPU, and one write), and cheap refusals are what keep
goodput up past capacity: each refused request costs a fraction of a
served one, so the CPU left serves the rest. (One admitted while there was
room may find the limit full when it calls: then it waits there as well,
and if no slot comes, gets the same 503, after its parsing.)

Why wait at all: a closed-loop client population larger than the limit (a
pool of 64 connections that sends the next request as soon as one is
answered, or wrk) is no overload: each request waits a few milliseconds
for one ahead of it. Refused at once, such clients send again at once, the
refusals take the CPU the admitted requests need, these get slower, the
limit shrinks, and more are refused: a refusal storm. Measured (wrk -c64,
6 s, HTTP_ADMISSION_TARGET_MS=35, refusals at once): pulls 48,619 and
80,469 answers refused, sends 44,285; with a 10 ms waiting room 7, 0 and 0.
The wait is short because under overload every admitted request has
waited in the room first: at twice the capacity its p99 was 94 and 97 ms
with 20 ms, 83 and 84 with 10. The defaults, a 25 ms target and 15 ms of
waiting, and the other settings measured are in the README (Overload).
The idea is Netflix's
concurrency-limits `BlockingLimiter` with a timeout. `http_admission_waiting`
counts the requests in the room.

The refusals:
- `503` with `Retry-After` and `{"code": 503, "msg": "... not stored"}`
  (a send refused here certainly reached no RPC server);
- `GET /api/subscribe`: a `200` event stream with `retry:` and an
  `unavailable` event, then the end, as http_server.streaming refuses a
  stream it cannot serve: a browser's EventSource treats any non-200 answer
  as final, and reconnects after this one.

The cheapest refusals do not even reach WSGI: the worker's request
handler (http_server.worker) asks `early_refusal` as soon as the request's
head is parsed, and when the limit is full writes the prepared response
itself, skipping the WSGI environment, the start_response machinery and
the Date header (optional on a 5xx), after reading (not parsing) a small
body so that the connection stays usable. Anything unusual (a chunked or
large body, a client that asked to close, a stopping worker) takes the
WSGI path, which refuses the same way with more machinery.

During a refusal storm (plumbing.admission: clients that send again the
moment they are refused, so that refusals take the CPU admitted requests
need) each refusal is answered PACE_S later: a greenlet's sleep, no CPU, so
such a client sends at most one request per PACE_S per connection, and the
CPU goes back to the requests admitted; the limit then grows again. An
ordinary overload is no storm: its refusals are answered at once.

Refusals are counted (`http_admission_refused_total`, the paced ones also in
`http_admission_paced_total`) and summed up in one log line per second at
most, not one line each: under overload, a line per refusal would be most
of the cost of refusing.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event
from prometheus_client import Counter, Gauge

from http_server.errors import ApiError
from plumbing.admission import AdaptiveLimit

log = logging.getLogger(__name__)

REFUSED = Counter("http_admission_refused_total", "Requests refused by admission control, by route", ["route"])
LIMIT = Gauge(
    "http_admission_limit",
    "The admission limit (concurrent requests), summed over workers",
    multiprocess_mode="livesum",
)

PACED = Counter("http_admission_paced_total", "Refusals answered PACE_S late, in a refusal storm")
WAITING = Gauge(
    "http_admission_waiting",
    "Requests waiting for a slot of the admission limit, summed over workers",
    multiprocess_mode="livesum",
)

RETRY_AFTER_S = 1
PACE_S = 0.05  # a refusal's delay in a storm: well within the 100 ms a refusal may take
_SEND = "/api/send"
_SUBSCRIBE = "/api/subscribe"
# Routes that call the RPC server: admitted or refused here.
GATED = frozenset({_SEND, "/api/pull", "/api/chats", _SUBSCRIBE})

_REFUSED_BY_ROUTE = {path: REFUSED.labels(path) for path in GATED}  # (a labels() lookup per refusal costs)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_REQUEST_ID = re.compile(r"[!-~]{1,128}")  # as http_server.telemetry accepts one


def _json_refusal(msg: str) -> tuple[str, list[tuple[str, str]], bytes]:
    body = json.dumps({"code": 503, "msg": msg}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Retry-After", str(RETRY_AFTER_S)),
    ]
    return "503 Service Unavailable", headers, body


def _stream_refusal(msg: str) -> tuple[str, list[tuple[str, str]], bytes]:
    data = json.dumps({"code": 503, "msg": msg})
    body = f"retry: {RETRY_AFTER_S * 1000}\nevent: unavailable\ndata: {data}\n\n".encode()
    headers = [
        ("Content-Type", "text/event-stream"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
    ]
    return "200 OK", headers, body


_OVERLOADED = "server overloaded: retry later"
_REFUSALS = {
    _SEND: _json_refusal(f"{_OVERLOADED}; not stored"),
    _SUBSCRIBE: _stream_refusal(f"{_OVERLOADED}; reconnect"),
}
_DEFAULT_REFUSAL = _json_refusal(_OVERLOADED)
EARLY_MAX_BODY = 16384  # a larger body is read under its deadline by the WSGI path (http_server.slow_clients)
_ACTIVE: list[Admission] = []  # this worker's gate, once get_app() made it
ADMITTED = b""  # early_refusal's answer for a request the gate admitted (None: the gate was not asked)
ADMITTED_KEY = "im.admitted"  # in the WSGI environment of such a request: not gated twice


def _response_head(status: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


_EARLY = {
    path: (_response_head(status, headers), body)
    for path, (status, headers, body) in {
        **_REFUSALS,
        **{p: _DEFAULT_REFUSAL for p in GATED - _REFUSALS.keys()},
    }.items()
}


def pace() -> None:
    """Wait PACE_S before a refusal, in a refusal storm (see the module's docstring)."""
    if _ACTIVE and _ACTIVE[0].limit.storming:
        PACED.inc()
        gevent.sleep(PACE_S)


def early_refusal(method: str, target: str, headers: Any) -> bytes | None:
    """The whole response refusing this request (status line, headers and
    body); ADMITTED when the gate admitted it (after a wait in the waiting
    room, perhaps); None when the gate was not asked: not a gated route, or a
    chunked body (the WSGI path reads it, and gates it). `headers`: the
    request's, parsed."""
    if not _ACTIVE or method not in ("GET", "POST"):
        return None
    path = target.partition("?")[0]
    refusal = _EARLY.get(path)
    if refusal is None or headers.get("Transfer-Encoding") is not None:
        return None
    if not _ACTIVE[0].room.full():
        return ADMITTED
    given = headers.get("X-Request-ID")
    _REFUSED_BY_ROUTE[path].inc()
    _ACTIVE[0]._log_refusals()
    request_id: str = given if isinstance(given, str) and _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
    head, body = refusal
    return head + b"X-Request-ID: " + request_id.encode() + b"\r\n\r\n" + body


class WaitingRoom:
    """Where a request that finds the limit full waits for a slot, `wait_s`
    at most, first come first served (see the module's docstring)."""

    def __init__(self, limit: AdaptiveLimit, wait_s: float) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self._waiting: collections.deque[gevent.event.Event] = collections.deque()
        limit.on_release = self._wake

    def full(self) -> bool:
        """Whether to refuse a request arriving now: the limit is full and
        stayed so while it waited (a refusal, counted as such by the limit).
        While others wait, a newcomer waits behind them."""
        if not self._waiting and not self.limit.at_limit():
            return False
        if self.wait_s > 0 and self._wait():
            return False
        return self.limit.full()

    def acquire(self) -> bool:
        """Take a slot for a call, after a wait here if the limit is full;
        False: refused. A request the gate admitted may find the slots
        taken when it calls, by others admitted in the same instant: it
        waits for one as it would have at the gate. (Not behind those
        waiting: it was let in already.)"""
        if self.limit.at_limit() and self.wait_s > 0:
            self._wait()
        return self.limit.try_acquire()

    def _wait(self) -> bool:
        """Wait for a slot; True when one is free."""
        deadline = time.monotonic() + self.wait_s
        turn = gevent.event.Event()
        self._waiting.append(turn)
        WAITING.inc()
        try:
            while turn.wait(max(deadline - time.monotonic(), 0)):
                if not self.limit.at_limit():
                    return True
                turn.clear()  # woken, but the slot went to a newcomer: first in line again
                self._waiting.appendleft(turn)
            return False
        finally:
            with contextlib.suppress(ValueError):  # (not there once woken)
                self._waiting.remove(turn)
            WAITING.dec()

    def _wake(self) -> None:
        """A slot was released: the longest waiter's turn."""
        if self._waiting and not self.limit.at_limit():
            self._waiting.popleft().set()


class Admission:
    """The WSGI app: `app`, whose gated routes are refused while the limit
    is full (after a wait in the waiting room)."""

    def __init__(self, app: WsgiApp, room: WaitingRoom) -> None:
        self._app = app
        self.room = room
        self.limit = limit = room.limit
        self._logged_at = time.monotonic()
        self._refused_logged = 0
        LIMIT.set(limit.limit)
        _ACTIVE[:] = [self]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if (
            path in GATED
            and environ.get("REQUEST_METHOD") in ("GET", "POST")
            and not environ.get(ADMITTED_KEY)  # (the worker's early gate admitted it)
            and self.room.full()
        ):
            return self._refuse(path, environ, start_response)
        return self._app(environ, start_response)

    def _refuse(self, path: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, headers, body = _REFUSALS.get(path, _DEFAULT_REFUSAL)
        given = environ.get("HTTP_X_REQUEST_ID")
        request_id = given if given and _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        _REFUSED_BY_ROUTE[path].inc()
        self._log_refusals()
        pace()
        start_response(status, [*headers, ("X-Request-ID", request_id)])
        return [body]

    def _log_refusals(self) -> None:
        now = time.monotonic()
        if now - self._logged_at < 1.0:
            return
        refused = self.limit.refused_total - self._refused_logged
        log.warning(
            "admission: refused %d requests in the last %.1f s (limit %d, in flight %d)",
            refused,
            now - self._logged_at,
            self.limit.limit,
            self.limit.in_flight,
        )
        self._logged_at, self._refused_logged = now, self.limit.refused_total
        LIMIT.set(self.limit.limit)


class Overloaded(ApiError):
    """The refusal of a call that found the limit full after all (it had
    room when the request came in, and no slot came while it waited)."""


def overloaded(send: bool) -> Overloaded:
    return Overloaded(503, f"{_OVERLOADED}; not stored" if send else _OVERLOADED)


def count_refused(path: str) -> None:
    """Count a refusal of a request to `path` that the gate admitted but its
    call was refused (Overloaded): in the same counter as the gate's."""
    refused = _REFUSED_BY_ROUTE.get(path)
    if refused is not None:
        refused.inc()
