"""What the HTTP server tells its operators: a request id on every request,
one JSON log line per request (route, status, latency, chat, request id,
never the text), and Prometheus metrics, aggregated over gunicorn's worker
processes (prometheus_client's multiprocess mode, see gunicorn_conf)."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import falcon
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from plumbing.logs import LineLog
from plumbing.metric_children import Children

REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered, by route, method and status", ["route", "method", "status"]
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by route and method",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
access_log = LineLog("http_server.access")  # the one line per request
_REQUESTS = Children(REQUESTS)  # (label values are bounded: see below)
_LATENCY = Children(LATENCY)
_REQUEST_ID = re.compile(r"[!-~]{1,128}")
# Label values must be a bounded set: gevent passes any method token through,
# and every new label value is a series kept for ever (in multiprocess mode,
# on disk). Methods outside this set, and requests no route matched, count
# under "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"})
OTHER = "other"


class RequestTelemetry:
    """Falcon middleware: request id in, then metrics and a log line out."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header("X-Request-ID")
        req.context.request_id = given if given and _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        req.context.started = time.monotonic()
        req.context.chat = None  # resources fill it in for the log line

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, succeeded: bool) -> None:
        elapsed = time.monotonic() - req.context.started
        route = req.uri_template or OTHER
        method = req.method if req.method in _METHODS else OTHER
        status = resp.status_code
        resp.set_header("X-Request-ID", req.context.request_id)
        _REQUESTS(route, method, status).inc()
        _LATENCY(route, method).observe(elapsed)
        if access_log.enabled:
            chat = req.context.chat
            access_log.write(
                message="request",
                route=route,
                method=req.method[:32],
                status=status,
                latency_ms=round(elapsed * 1000, 3),
                chat=chat[:200] if isinstance(chat, str) else None,
                request_id=req.context.request_id,
            )


class Metrics:
    """GET /metrics: Prometheus text, summed over all worker processes."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = REGISTRY
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(registry)
