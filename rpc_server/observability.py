"""What the RPC server tells its operators: Prometheus metrics on their own
port, and structured JSON logs with one line per call (never message text).

The per-call line is written straight to stderr, not through `logging`:
measured under load, a logging call with a JSON formatter cost ~18 us, a
sixth of a whole call; one json.dumps and one write cost a fraction. The
other log lines go through `logging`, formatted as JSON too."""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

from plumbing.logs import LineLog
from plumbing.metric_children import Children

CALLS = Counter("rpc_calls_total", "Thrift calls answered, by method and Code", ["method", "code"])
LATENCY = Histogram(
    "rpc_call_duration_seconds",
    "Time to answer a Thrift call, by method",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
IN_FLIGHT = Gauge("rpc_calls_in_flight", "Thrift calls being answered", multiprocess_mode="livesum")
WAITING = Gauge("rpc_pulls_waiting", "Pulls waiting for a message (long-poll)", multiprocess_mode="livesum")
CONNECTIONS = Gauge("rpc_connections_open", "Open Thrift connections", multiprocess_mode="livesum")
REFUSED = Counter("rpc_connections_closed_on_error_total", "Connections closed for bad input, by reason", ["reason"])
REDIS_ERRORS = Counter("redis_errors_total", "Failed Redis calls, by kind", ["kind"])
COMMANDS_NOT_SENT = Counter(
    "redis_commands_not_sent_total",
    "Redis commands dropped unsent (they did not run), by why: QueuedPastDeadline, NoConnection",
    ["why"],
)
STORAGE_FULL = Counter("storage_full_total", "Sends refused because Redis is out of memory (maxmemory reached)")


call_log = LineLog("rpc_server.calls", pid=True)  # the one line per call
_CALLS = Children(CALLS)  # methods and codes are few
_LATENCY = Children(LATENCY)


def record_call(
    method: str,
    code: int,
    started: float,
    chat: object,
    request_id: object,
    from_service: str | None = None,
    timeout_ms: int | None = None,
) -> None:
    """`from_service`, `timeout_ms`: the caller's, when its transport says
    (Kitex's TTHeader); logged only then."""
    elapsed = time.monotonic() - started
    _CALLS(method, code).inc()
    _LATENCY(method).observe(elapsed)
    if call_log.enabled:
        caller = {} if from_service is None else {"from_service": from_service[:200]}
        timeout = {} if timeout_ms is None else {"timeout_ms": timeout_ms}
        call_log.write(
            message="call",
            method=method,
            code=code,
            latency_ms=round(elapsed * 1000, 3),
            chat=chat[:200] if isinstance(chat, str) else None,
            request_id=request_id[:128] if isinstance(request_id, str) else None,
            **caller,
            **timeout,
        )


def serve_metrics(host: str, port: int) -> None:
    """Expose /metrics on `port` (0: not at all); with --workers, the sum of
    all workers' metrics (PROMETHEUS_MULTIPROC_DIR)."""
    if not port:
        return
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, addr=host, registry=registry)
    else:
        start_http_server(port, addr=host)


def mark_worker_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
