"""What the wire knows about the call being answered, for the service.

When the call was read whole (its deadline counts from then: see
rpc_server.deadline), and, for a TTHeader call (Kitex's header transport),
what its header carries beside the Thrift payload: the caller's service
name, a log or request id, and its RPC timeout (one of the deadline's
sources). The server loop sets them here for the duration of the call; the
service reads them for its deadline and the call log line. A context
variable, because each connection is served by its own greenlet, and
greenlets each have their own context: no argument has to go through
thriftpy2's processor, which knows nothing of transports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class CallContext:
    received_at: float | None = None  # time.monotonic() when the call had been read whole
    request_id: str | None = None
    from_service: str | None = None
    timeout_ms: int | None = None  # the caller's RPC timeout, as its transport sent it


NONE = CallContext()
_current: ContextVar[CallContext] = ContextVar("call_context", default=NONE)


def current() -> CallContext:
    """The context of the call being answered (NONE outside a call)."""
    return _current.get()


@contextmanager
def calling(context: CallContext) -> Iterator[None]:
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)
