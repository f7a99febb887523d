"""Service errors, each carrying the Thrift `Code` it is answered with.

The codes are the HTTP-like numbers documented in `idl/idl_rpc.thrift`; the
HTTP tier reuses them as its status. Raising one of these anywhere below the
service turns into a response with that code and message, never into a
broken connection.
"""

from __future__ import annotations


class ServiceError(Exception):
    code = 500

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


class InvalidArgument(ServiceError):
    code = 400


class Unauthenticated(ServiceError):
    """An admin call without the right token (or the admin API is off)."""

    code = 401


class PermissionDenied(ServiceError):
    """The caller may not act on this chat or user."""

    code = 403


class SendTimeExhausted(ServiceError):
    """The chat's last send_time is already the largest an i64 holds (a
    far-future ID written into it by hand or by an older migration): no
    later one can be given. Not worth a retry; the chat must be repaired
    or deleted."""

    code = 409


class IdempotencyConflict(ServiceError):
    code = 422


class RateLimited(ServiceError):
    code = 429

    def __init__(self, msg: str, retry_after_ms: int) -> None:
        super().__init__(msg)
        self.retry_after_ms = retry_after_ms


class StorageUnavailable(ServiceError):
    """Redis is down, too slow, loading, or out of memory; worth a retry later."""

    code = 503
