"""JSON log lines for the HTTP server: gunicorn's own and ours.

Kept apart from telemetry, which imports prometheus_client: gunicorn_conf
needs the formatter before the metrics directory is set up, and
prometheus_client chooses its storage when it is first imported.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

access_log = logging.getLogger("http_server.access")


def json_formatter() -> JsonFormatter:
    return JsonFormatter("{asctime}{levelname}{name}{message}", style="{", rename_fields={"levelname": "level"})


def configure_logging(level: str, log_requests: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    access_log.setLevel(logging.INFO if log_requests else logging.WARNING)
