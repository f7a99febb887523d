"""The Thrift `Code` numbers and the HTTP status each is answered with: one
table, the source of truth for both servers.

rpc_server's error classes take their `code` from here; http_server turns a
non-zero Code into its status (and passes the Msg on) from here, so neither
server keeps its own list, and they may not import each other. The numbers
are the ones `idl_rpc.thrift` documents; tests/test_error_codes.py holds the
table, that comment and the error classes equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SUCCESS = 0
INVALID_ARGUMENT = 400
UNAUTHENTICATED = 401
PERMISSION_DENIED = 403
SEND_TIME_EXHAUSTED = 409
IDEMPOTENCY_CONFLICT = 422
RATE_LIMITED = 429
INTERNAL = 500
STORAGE_UNAVAILABLE = 503


@dataclass(frozen=True)
class Failure:
    """A non-zero Code: what it means, and how the HTTP API answers it."""

    code: int
    meaning: str
    http_status: int
    msg_passed_on: bool = True  # False: the HTTP answer says "internal error", never the RPC server's Msg


FAILURES: Mapping[int, Failure] = {
    f.code: f
    for f in (
        Failure(INVALID_ARGUMENT, "invalid argument", 400),
        Failure(UNAUTHENTICATED, "admin call without the right AdminToken", 401),
        Failure(PERMISSION_DENIED, "the Caller may not do this", 403),
        Failure(SEND_TIME_EXHAUSTED, "the chat can take no more messages", 409),
        Failure(IDEMPOTENCY_CONFLICT, "idempotency-key conflict", 422),
        Failure(RATE_LIMITED, "rate limited", 429),
        Failure(INTERNAL, "internal error", 500, msg_passed_on=False),
        Failure(STORAGE_UNAVAILABLE, "storage unavailable or overloaded", 503),
    )
}

# A Code missing from the table (a newer or broken RPC server): a bug somewhere, so
# the HTTP answer is 500 "internal error", the RPC server's Msg withheld.
UNKNOWN = Failure(-1, "unknown code", 500, msg_passed_on=False)


def failure(code: int) -> Failure:
    """The table's row for the non-zero `code`, or UNKNOWN."""
    return FAILURES.get(code, UNKNOWN)
