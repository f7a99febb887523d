"""JSON log lines for the HTTP server: gunicorn's own, ours, and the one
line per request.

The per-request line is written straight to stderr, not through `logging`:
measured in a worker under load, a logging call with a JSON formatter cost
~18 us, a sixth of a whole /ping; one json.dumps and one write (stderr is
line-buffered, so two workers' lines never interleave) cost a fraction.
Everything else goes through `logging`, formatted as JSON too.

Kept apart from telemetry, which imports prometheus_client: gunicorn_conf
needs the formatter before the metrics directory is set up, and
prometheus_client chooses its storage when it is first imported.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter


class RequestLog:
    """One JSON object per line on stderr, for the hot per-request line."""

    enabled = True

    def write(self, **fields: Any) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
        sys.stderr.write(json.dumps({"asctime": stamp, "level": "INFO", "name": "http_server.access", **fields}) + "\n")


access_log = RequestLog()


def json_formatter() -> JsonFormatter:
    return JsonFormatter("{asctime}{levelname}{name}{message}", style="{", rename_fields={"levelname": "level"})


def configure_logging(level: str, log_requests: bool) -> None:
    # Each LogRecord would look up its thread, process and task names, which
    # we never print; under gevent, current_thread() builds a dummy thread for
    # every greenlet (measured: ~40 us per log line in the servers).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    access_log.enabled = log_requests
