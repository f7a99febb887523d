"""What the transport knows about the call being answered, for the service.

A TTHeader call (Kitex's header transport) carries, beside its Thrift
payload, the caller's service name, a log or request id and its RPC timeout.
The server loop sets them here for the duration of the call; the service
reads them (the call log line, and `deadline` for whatever must finish in
time). A context variable, because each connection is served by its own
greenlet, and greenlets each have their own context: no argument has to go
through thriftpy2's processor, which knows nothing of transports.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class CallContext:
    request_id: str | None = None
    from_service: str | None = None
    timeout_ms: int | None = None  # the caller's RPC timeout, as it sent it
    deadline: float | None = None  # time.monotonic() when the caller gives up; None: unknown

    @classmethod
    def starting_now(cls, request_id: str | None, from_service: str | None, timeout_ms: int | None) -> CallContext:
        """The context of a call whose caller's timeout started (about) now."""
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms is not None else None
        return cls(request_id, from_service, timeout_ms, deadline)


NONE = CallContext()
_current: ContextVar[CallContext] = ContextVar("call_context", default=NONE)


def current() -> CallContext:
    """The context of the call being answered (NONE outside a call, or when the transport carries none)."""
    return _current.get()


@contextmanager
def calling(context: CallContext) -> Iterator[None]:
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)
