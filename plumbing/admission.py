"""An adaptive concurrency limit: how many requests a server takes on at once.

Past capacity a server that accepts everything queues without bound: every
request waits behind all the others, latency grows until callers time out,
and the work done for them is wasted (goodput collapses). A concurrency
limit turns the excess into quick refusals instead, and Little's law does
the rest: with at most L requests in flight, each taking T, throughput is
L / T, and a request admitted never queues behind more than L others.

Which L? Too low wastes capacity, too high lets latency climb. The limit
here adapts to measured latency, AIMD over short windows, the idea of
Netflix's concurrency-limits `AIMDLimit` (and TCP's congestion window):

- at the end of each window (WINDOW_S) that used the limit (a request was
  refused, or half the limit was in flight at once): if more than 1% of
  the requests that finished in it took longer than the latency target, or
  were turned away by the tier behind (a 503: a "drop"), the limit shrinks
  by 10%; otherwise it grows by one;
- a window that did not use the limit changes nothing: slow requests with
  few in flight are not slow for their number (a neighbour took the CPU,
  Redis stalled), and refusing others would not make them faster;
- it stays between `maximum` (a configured cap: the RPC connections a
  worker has, the calls a process may hold) and 1/16 of it;
- STORM_WINDOWS windows in a row that each refused more than STORM_FACTOR
  times as many requests as they finished mark a refusal storm
  (`storming`, until a window that did not; one such window is a hiccup,
  such as a pause of the process, not a storm): clients that send again the moment they are refused (a closed loop,
  such as wrk; not one that honours Retry-After) make refusals cost the CPU
  that admitted requests need, so these stay slow, the limit stays low and
  the refusals go on. Measured: wrk -c64 on pulls, 155,203 of 156,678
  answers refused in 6 s, 246 served a second against about 3,000. The
  HTTP tier then paces its refusals (http_server.admission), which breaks
  the loop; the refusals of an open-loop overload (1.4 refused per request
  served at 2x capacity) are no storm and are answered at once.

Why not the others: Netflix's `Gradient2Limit` and Envoy's adaptive
concurrency filter compare recent latency with a baseline (Envoy measures
the minimum RTT by dropping concurrency to a few requests every minute,
refusing most traffic meanwhile). Both keep latency *near its unloaded
value*, which on a CPU-bound 2-core machine whose latency doubles with any
neighbour's load would refuse work it could do. Our target is absolute (an
admitted request answered within 100 ms at p99), so the controller compares
with that target directly: a configured number, not a moving baseline.
AIMD's sawtooth keeps probing upwards, so the limit follows capacity as it
changes (another tenant on the cores, a slower Redis).

Not thread-safe, by design: each process has one limit and gevent runs one
greenlet at a time, so no lock is needed (a lock would cost more than the
limit itself). The clock is injected so that the control law is tested
without timing anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable

WINDOW_S = 0.05  # one decision per window: per-request decisions would shrink the limit on every slow request
BACKOFF = 0.9
SLOW_SHARE = 0.01  # more slow requests than this in a window: back off (a p99 over the target)
MIN_SHARE = 16  # the limit never falls below maximum / MIN_SHARE (nor below 1)
STORM_FACTOR = 10  # a window refusing this many times what it finished: a refusal storm...
STORM_WINDOWS = 3  # ...when this many windows in a row do


class AdaptiveLimit:
    """Concurrency limit, AIMD against a latency target (see the module's docstring)."""

    def __init__(self, maximum: int, target_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if maximum < 1 or target_s <= 0:
            raise ValueError("maximum must be at least 1 and target_s positive")
        self.maximum = maximum
        self.minimum = max(1, maximum // MIN_SHARE)
        self.target_s = target_s
        self._clock = clock
        self._limit = float(maximum)  # optimistic: a fresh server takes what it may
        self.in_flight = 0
        self.refused_total = 0
        self._window_end = clock() + WINDOW_S
        self._finished = self._slow = self._refused = self._peak = 0
        self.storming = False  # the last windows were a refusal storm (see the module's docstring)
        self._stormy_windows = 0
        # Called after each release: a waiting room (http_server.admission) wakes a waiter.
        self.on_release: Callable[[], None] | None = None

    @property
    def limit(self) -> int:
        return int(self._limit)

    def at_limit(self) -> bool:
        """Whether every slot is taken, asked without refusing anything."""
        return self.in_flight >= int(self._limit)

    def full(self) -> bool:
        """Whether the limit is reached: a request arriving now is refused
        (and counted as such), without taking a slot."""
        self._maybe_adapt()
        if self.in_flight >= int(self._limit):
            self._refused += 1
            self.refused_total += 1
            return True
        return False

    def try_acquire(self) -> bool:
        """Take a slot: False (refuse the request) when the limit is reached."""
        if self.full():
            return False
        self.in_flight += 1
        self._peak = max(self._peak, self.in_flight)
        return True

    def release(self, elapsed_s: float | None, dropped: bool = False) -> None:
        """Give the slot back. `elapsed_s`: how long the request took (None:
        no sample, e.g. a long-poll that left to wait); `dropped`: the tier
        behind refused it or failed (counts as slow)."""
        self.in_flight -= 1
        if elapsed_s is not None or dropped:
            self._finished += 1
            if dropped or (elapsed_s is not None and elapsed_s > self.target_s):
                self._slow += 1
        self._maybe_adapt()
        if self.on_release is not None:
            self.on_release()

    def _maybe_adapt(self) -> None:
        now = self._clock()
        if now < self._window_end:
            return
        stormy = self._refused > STORM_FACTOR * max(self._finished, 1)
        self._stormy_windows = self._stormy_windows + 1 if stormy else 0
        self.storming = self._stormy_windows >= STORM_WINDOWS
        used = self._refused or self._peak * 2 >= int(self._limit)
        if self._slow > self._finished * SLOW_SHARE and used:
            self._limit = max(float(self.minimum), self._limit * BACKOFF)
        elif used:
            self._limit = min(float(self.maximum), self._limit + 1)
        self._finished = self._slow = self._refused = 0
        self._peak = self.in_flight
        self._window_end = now + WINDOW_S
