"""What the transport knows about the call being answered, for the service.

A TTHeader call (Kitex's header transport) carries, beside its Thrift
payload, the caller's service name, a log or request id and its RPC timeout.
The server loop sets them here for the duration of the call; the service
reads them for the call log line. The RPC timeout also goes to the call's
deadline (rpc_server.deadline.incoming_call), which is where deadlines live.
A context variable, because each connection is served by its own
greenlet, and greenlets each have their own context: no argument has to go
through thriftpy2's processor, which knows nothing of transports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class CallContext:
    request_id: str | None = None
    from_service: str | None = None
    timeout_ms: int | None = None  # the caller's RPC timeout, as it sent it


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
