"""Per-call deadlines: by when a call must be answered, and until when it may
still send a command to Redis.

Where a call's deadline comes from (the earliest wins):

* the request's `TimeoutMs` (idl_rpc.thrift): the caller's remaining time,
  relative milliseconds, since clocks differ between hosts. The HTTP tier
  sends what is left of its own deadline;
* the transport's: the wire layer runs each call inside a
  rpc_server.call_context, whose `timeout_ms` is set when the transport
  carries one (Kitex's TTHeader: its RPC timeout, key 12, in ms);
* else the server's default, RPC_DEFAULT_TIMEOUT_MS (plus a long-poll
  Pull's wait).

It counts from the context's `received_at`, when the wire layer had read
the call whole (else from when the handler asked). A budget of 0 or less has passed.

A Deadline has two instants:

* `answer_by`: the caller's deadline. Nothing waits past it.
* `send_by`: `answer_by` less the reply reserve (REDIS_REPLY_RESERVE_MS, at
  most half the call's budget). No Redis command is sent after it: a
  command still queued then (for a pipeline, a pooled connection, a
  connect) is dropped unsent, so the caller hears "not stored", a known
  outcome. What is sent before it has at least the reserve to get its
  reply, so a Redis or a process that is busy but alive still answers in
  time; "outcome unknown" is left for Redis failing mid-write (the
  connection lost, or no reply within the reserve and the REDIS_TIMEOUT_MS
  cap).

`NO_DEADLINE` (operator tools, background work) drops nothing and waits as
long as the configured caps allow.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from rpc_server import call_context


@dataclass(frozen=True)
class Deadline:
    """Two instants on time.monotonic()'s clock (see the module's docstring)."""

    answer_by: float
    send_by: float

    def can_send(self) -> bool:
        """Whether a command may still be sent now."""
        return time.monotonic() < self.send_by

    def until_send_by(self) -> float:
        """Seconds left to send (inf without a deadline; never negative)."""
        return max(self.send_by - time.monotonic(), 0.0)

    def until_answer_by(self) -> float:
        """Seconds left to answer (inf without a deadline; never negative)."""
        return max(self.answer_by - time.monotonic(), 0.0)


NO_DEADLINE = Deadline(math.inf, math.inf)


@dataclass(frozen=True)
class DeadlinePolicy:
    """How a call's Deadline is set (RPC_DEFAULT_TIMEOUT_MS, REDIS_REPLY_RESERVE_MS)."""

    default_timeout_ms: int = 1000
    reply_reserve_ms: int = 500

    def for_call(self, timeout_ms: int | None, waits_s: float = 0.0) -> Deadline:
        """The Deadline of the call being handled; `timeout_ms`: its
        request's TimeoutMs (None: absent). `waits_s`: how long the call
        means to wait (a long-poll), added to the default deadline only (a
        caller's own deadline covers its wait)."""
        call = call_context.current()
        start = call.received_at if call.received_at is not None else time.monotonic()
        budgets = [ms for ms in (timeout_ms, call.timeout_ms) if ms is not None]
        budget_s = min(budgets) / 1000 if budgets else self.default_timeout_ms / 1000 + waits_s
        reserve_s = min(self.reply_reserve_ms / 1000, max(budget_s, 0.0) / 2)
        return Deadline(answer_by=start + budget_s, send_by=start + budget_s - reserve_s)


DEFAULT_POLICY = DeadlinePolicy()
