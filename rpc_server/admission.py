"""Admission control of the RPC server: its own limit, for every caller.

The HTTP tier limits what each of its workers sends (http_server.admission),
but the RPC server also serves many HTTP workers at once, and Thrift clients
that have no limit of their own. So each process keeps an adaptive
concurrency limit of its own (plumbing.admission: AIMD against
RPC_ADMISSION_TARGET_MS, at most RPC_MAX_IN_FLIGHT calls) on the calls that
work: `Send`, `Pull` and `ListChats`. A call that finds no free slot is
answered at once with Code 503 and a message that says "not stored" (for
a `Send`, with `RetryAfterMs`): nothing was done for it, so the caller may
send it again, with or without its idempotency key.

It wraps the IMService handler (rpc_server.service), so the call is decoded
by thriftpy2 as any other (a few microseconds), but neither validated nor
sent to Redis. `Health` and the admin calls pass untouched: a readiness
probe must say whether the server works, and admin calls are rare and
authenticated. A pull that waits (long-poll, `WaitMs`) is not counted: its
wait costs no CPU and is bounded by RPC_MAX_WAITERS already.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge

from plumbing.admission import AdaptiveLimit
from rpc_server.observability import record_call

REFUSED = Counter("rpc_calls_refused_total", "Calls refused by admission control, by method", ["method"])
LIMIT = Gauge(
    "rpc_admission_limit", "The admission limit (concurrent calls), summed over workers", multiprocess_mode="livesum"
)

RETRY_AFTER_MS = 1000
CODE_OVERLOADED = 503  # idl.codes.STORAGE_UNAVAILABLE: "unavailable or overloaded: retry later"


class AdmissionGate:
    """The handler thriftpy2 calls: IMService behind an adaptive limit."""

    def __init__(self, rpc: Any, service: Any, limit: AdaptiveLimit) -> None:
        self._rpc = rpc
        self._service = service
        self.limit = limit
        self._shown_limit = limit.limit
        LIMIT.set(limit.limit)

    def __getattr__(self, method: str) -> Any:
        return getattr(self._service, method)  # Health, DeleteChat, EraseUser: not limited

    def Send(self, req: Any) -> Any:
        return self._admit("Send", req, self._service.Send, self._rpc.SendResponse)

    def Pull(self, req: Any) -> Any:
        if getattr(req, "WaitMs", None):
            return self._service.Pull(req)
        return self._admit("Pull", req, self._service.Pull, self._rpc.PullResponse)

    def ListChats(self, req: Any) -> Any:
        return self._admit("ListChats", req, self._service.ListChats, self._rpc.ListChatsResponse)

    def _admit(self, method: str, req: Any, call: Any, response: Any) -> Any:
        limit = self.limit
        if not limit.try_acquire():
            return self._refuse(method, req, response)
        started = time.monotonic()
        code = 500
        try:
            answer = call(req)
            code = answer.Code
            return answer
        finally:
            limit.release(time.monotonic() - started, dropped=code == CODE_OVERLOADED)
            if limit.limit != self._shown_limit:  # the gauge is written only when it changed
                self._shown_limit = limit.limit
                LIMIT.set(limit.limit)

    def _refuse(self, method: str, req: Any, response: Any) -> Any:
        started = time.monotonic()
        REFUSED.labels(method).inc()
        if method == "Send":
            answer = response(Code=CODE_OVERLOADED, Msg="server overloaded; not stored", RetryAfterMs=RETRY_AFTER_MS)
        else:
            answer = response(Code=CODE_OVERLOADED, Msg="server overloaded; retry later")
        message = getattr(req, "message", None)
        chat = getattr(message if method == "Send" else req, "Chat", None)
        record_call(method, CODE_OVERLOADED, started, chat, getattr(req, "RequestId", None))
        return answer
