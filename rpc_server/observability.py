"""What the RPC server tells its operators: Prometheus metrics on their own
port, and structured JSON logs with one line per call (never message text)."""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from pythonjsonlogger.json import JsonFormatter

CALLS = Counter("rpc_calls_total", "Thrift calls answered, by method and Code", ["method", "code"])
LATENCY = Histogram(
    "rpc_call_duration_seconds",
    "Time to answer a Thrift call, by method",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
IN_FLIGHT = Gauge("rpc_calls_in_flight", "Thrift calls being answered")
CONNECTIONS = Gauge("rpc_connections_open", "Open Thrift connections")
REFUSED = Counter("rpc_connections_closed_on_error_total", "Connections closed for bad input, by reason", ["reason"])
REDIS_ERRORS = Counter("redis_errors_total", "Failed Redis calls, by kind", ["kind"])

call_log = logging.getLogger("rpc_server.calls")


def record_call(method: str, code: int, started: float, chat: object, request_id: object) -> None:
    elapsed = time.monotonic() - started
    CALLS.labels(method, str(code)).inc()
    LATENCY.labels(method).observe(elapsed)
    if call_log.isEnabledFor(logging.INFO):
        call_log.info(
            "call",
            extra={
                "method": method,
                "code": code,
                "latency_ms": round(elapsed * 1000, 3),
                "chat": chat[:200] if isinstance(chat, str) else None,
                "request_id": request_id[:128] if isinstance(request_id, str) else None,
            },
        )


def configure_logging(level: str, log_calls: bool) -> None:
    """JSON lines on stderr; `log_calls` False silences the per-call lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter("{asctime}{levelname}{name}{message}", style="{", rename_fields={"levelname": "level"})
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    call_log.setLevel(logging.INFO if log_calls else logging.WARNING)


def serve_metrics(host: str, port: int) -> None:
    """Expose /metrics on `port` (0: not at all)."""
    if port:
        start_http_server(port, addr=host)
