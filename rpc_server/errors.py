"""Service errors, each carrying the Thrift `Code` it is answered with.

The codes come from `idl.codes`, the one table of Codes (documented in
`idl/idl_rpc.thrift`) from which the HTTP tier also takes its statuses.
Raising one of these anywhere below the service turns into a response with
that code and message, never into a broken connection.
"""

from __future__ import annotations

from idl import codes


class ServiceError(Exception):
    code = codes.INTERNAL

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


class InvalidArgument(ServiceError):
    code = codes.INVALID_ARGUMENT


class Unauthenticated(ServiceError):
    """An admin call without the right token (or the admin API is off)."""

    code = codes.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    """The caller may not act on this chat or user."""

    code = codes.PERMISSION_DENIED


class SendTimeExhausted(ServiceError):
    """The chat's last send_time is already the largest an i64 holds (a
    far-future ID written into it by hand or by an older migration): no
    later one can be given. Not worth a retry; the chat must be repaired
    or deleted."""

    code = codes.SEND_TIME_EXHAUSTED


class IdempotencyConflict(ServiceError):
    code = codes.IDEMPOTENCY_CONFLICT


class RateLimited(ServiceError):
    code = codes.RATE_LIMITED

    def __init__(self, msg: str, retry_after_ms: int) -> None:
        super().__init__(msg)
        self.retry_after_ms = retry_after_ms


class StorageUnavailable(ServiceError):
    """Redis is down, too slow, loading, or out of memory; worth a retry later."""

    code = codes.STORAGE_UNAVAILABLE


class DeadlineExceeded(StorageUnavailable):
    """The call's deadline (rpc_server.deadline) left no time to send
    anything to Redis: nothing was done. A 503, as storage too slow for the
    caller's deadline is (overload)."""
