"""The overload benchmark: capacity, then 1.5x and 2x of it, open loop.

- Capacity: the highest open-loop send rate at which the p99 of all sends
  is at most 100 ms and at most 0.5% are not answered 2xx (found by doubling,
  then bisecting between the last rate that passed and the first that did
  not).
- CPU per admitted send: from the run at capacity (open loop, the stack
  nearly saturated, as it is past capacity: a send costs less CPU then than
  at a low rate, more work per wake-up): the stack's CPU time (from /proc,
  every process of each tier), less what its few refusals cost, divided by
  the 2xx answered. (It was measured with wrk -c64, closed loop, after the
  2x run; but a closed-loop client that retries a refusal at once can keep
  the HTTP limit low, and then that run was nearly all refusals: 5.7 ms
  "per admitted send".)
- CPU per refusal: the same while every send is refused at admission, at
  twice the capacity: made certain by stopping the RPC server (SIGSTOP),
  so that the few sends admitted wait for it and every other one is
  refused at the HTTP tier's gate. Divided by the refusals.
- 1.5x and 2x capacity, 30 s each: goodput (2xx/s), p99 of the 2xx and of
  the refusals, client timeouts (5 s), refusals with and without
  Retry-After, the CPU of each tier, the CPU left idle, and the generator's
  own CPU time.
- The CPU model: with C cores for the stack (what it used plus what was
  left idle), a send costing `a` and a refusal `r`, answering every offered
  request L as either, goodput G solves a*G + r*(L - G) = C, capped at L:
  G = (C - r*L) / (a - r). Goodput far below it means CPU was wasted
  (work for requests that then timed out, or refusals dearer than measured).

The generator is bench/loadgen (Go, compiled by scripts/lib.sh): a Python
one would take a core of the two at these rates. Its CPU share is reported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procstat import cpu_s, descendants, machine

LOADGEN = Path(sys.executable).parent / "im-loadgen"
P99_TARGET_MS = 100.0
MAX_FAILED_SHARE = 0.005  # at capacity: at most this share of sends not answered 2xx
CLIENT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Tiers:
    """The root process of each tier of the stack under test (children included when measured)."""

    http: int
    rpc: int
    redis: int

    def as_dict(self) -> dict[str, int]:
        return {"http": self.http, "rpc": self.rpc, "redis": self.redis}


@contextmanager
def cpu_meter(tiers: Tiers) -> Iterator[dict[str, float]]:
    """CPU seconds used by each tier, and the machine's idle CPU seconds, over the block."""
    pids = {name: descendants(root) for name, root in tiers.as_dict().items()}
    before = {name: cpu_s(p) for name, p in pids.items()}
    busy0, idle0 = machine()
    started = time.monotonic()
    figures: dict[str, float] = {}
    yield figures
    for name, p in pids.items():
        figures[f"cpu_{name}_s"] = round(cpu_s(p) - before[name], 3)
    busy1, idle1 = machine()
    figures["cpu_machine_busy_s"] = round(busy1 - busy0, 3)
    figures["cpu_idle_s"] = round(idle1 - idle0, 3)
    figures["wall_s"] = round(time.monotonic() - started, 3)


def loadgen(url: str, rate: float, duration: float, body: str | None) -> dict[str, Any]:
    argv = [str(LOADGEN), "-url", url, "-rate", f"{rate:.0f}", "-duration", str(duration)]
    argv += ["-timeout", str(CLIENT_TIMEOUT_S), *(["-body", body] if body else [])]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def measured(url: str, rate: float, duration: float, body: str | None, tiers: Tiers | None) -> dict[str, Any]:
    """One open-loop run, with the stack's CPU when its processes are known."""
    if tiers is None:
        return loadgen(url, rate, duration, body)
    with cpu_meter(tiers) as cpu:
        result = loadgen(url, rate, duration, body)
    result.update(cpu)
    result["cpu_stack_s"] = round(cpu["cpu_http_s"] + cpu["cpu_rpc_s"] + cpu["cpu_redis_s"], 3)
    return result


def passes(run: dict[str, Any]) -> bool:
    """Within capacity: p99 of all sends <= 100 ms, and almost all of them 2xx."""
    failed = run["requests"] - run["ok"]
    p99 = run["p99_ms"] if failed <= run["requests"] * 0.01 else float("inf")  # timeouts have no latency
    return failed <= run["requests"] * MAX_FAILED_SHARE and p99 is not None and p99 <= P99_TARGET_MS


def find_capacity(
    run: Callable[[float], dict[str, Any]], start: float = 1000, bisections: int = 3, pause_s: float = 1.0
) -> dict[str, Any]:
    """The highest rate that passes: doubling from `start`, then bisecting."""
    points: list[dict[str, Any]] = []

    def attempt(rate: float) -> bool:
        for _ in range(2):  # a failure is tried again once: a neighbour's burst on these cores can fail one run
            result = run(rate)
            ok = passes(result)
            points.append({**result, "passed": ok})
            time.sleep(pause_s)  # let what is left of the run drain
            if ok:
                return True
        return False

    low, high = 0.0, start
    while attempt(high):
        low, high = high, high * 2
        if high > 64_000:
            break
    if low == 0:  # even the first rate failed: search below it
        high_fail, low = high, start / 8
        while low > 50 and not attempt(low):
            high_fail, low = low, low / 2
        high = high_fail
    for _ in range(bisections):
        middle = (low + high) / 2
        if attempt(middle):
            low = middle
        else:
            high = middle
    return {"capacity_per_s": round(low), "points": points}


def metered(tiers: Tiers, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Any run, with the stack's CPU."""
    with cpu_meter(tiers) as cpu:
        result = run()
    result.update(cpu)
    result["cpu_stack_s"] = round(cpu["cpu_http_s"] + cpu["cpu_rpc_s"] + cpu["cpu_redis_s"], 3)
    return result


def refusal_cost(url: str, rate: float, duration: float, body: str, tiers: Tiers) -> dict[str, Any]:
    """Every send refused: the RPC server stopped (SIGSTOP) meanwhile."""
    os.kill(tiers.rpc, signal.SIGSTOP)
    try:
        result = measured(url, rate, duration, body, tiers)
    finally:
        os.kill(tiers.rpc, signal.SIGCONT)
    time.sleep(2)  # the calls that waited for it are answered
    return result


def cpu_per_request_us(run: dict[str, Any], count_key: str) -> float | None:
    count = run.get(count_key) or 0
    if "cpu_stack_s" not in run or not count:
        return None
    return round(run["cpu_stack_s"] / count * 1e6, 1)


def send_cost_us(run: dict[str, Any], refusal_us: float) -> float | None:
    """CPU µs of the stack per admitted send in `run`, its refusals' CPU taken out."""
    if "cpu_stack_s" not in run or not run.get("ok"):
        return None
    cpu_s = run["cpu_stack_s"] - refusal_us / 1e6 * (run.get("refused") or 0)
    return round(max(cpu_s, 0.0) / run["ok"] * 1e6, 1)


def model_goodput(run: dict[str, Any], send_us: float, refusal_us: float) -> float | None:
    """The CPU model's goodput for `run` (see the module's docstring), per second."""
    if "cpu_stack_s" not in run or send_us <= refusal_us:
        return None
    wall = run["wall_s"]
    cores = (run["cpu_stack_s"] + run["cpu_idle_s"]) / wall
    offered = (run["ok"] + run["refused"]) / run["elapsed_s"]  # those answered, as either
    goodput = (cores - refusal_us / 1e6 * offered) / ((send_us - refusal_us) / 1e6)
    return round(max(0.0, min(offered, goodput)), 1)


def generator_share(run: dict[str, Any]) -> float:
    """The generator's CPU, as a share of the machine's (all its cores)."""
    return round(run["cpu_s"] / (run["elapsed_s"] * (os.cpu_count() or 1)), 3)
