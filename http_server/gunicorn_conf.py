"""gunicorn settings for the HTTP server, derived from http_server.config.

Metrics: prometheus_client's multiprocess mode needs a directory shared by
the workers, named in PROMETHEUS_MULTIPROC_DIR before any worker imports
prometheus_client; this file runs in the master, before the fork. It is
emptied at start, and a dead worker's files are marked dead. A folder made
here (none given) is removed when the master exits.
"""

import atexit
import os
import shutil
import tempfile
from typing import Any

from http_server.config import load as _load_config
from http_server.logs import json_formatter as _json_formatter

_cfg = _load_config([])

bind = f"{_cfg.host}:{_cfg.port}"
workers = _cfg.workers
worker_class = "http_server.worker.Worker"  # gevent's pywsgi: many clients, each waiting on an RPC
worker_connections = _cfg.worker_connections
keepalive = _cfg.keepalive_s  # pywsgi ignores it: http_server.worker applies it
graceful_timeout = _cfg.graceful_timeout_s
control_socket_disable = True  # gunicorn 27 would share one in ~/.gunicorn
accesslog = None  # http_server.telemetry logs each request, as JSON
errorlog = "-"
loglevel = _cfg.log_level.lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": _json_formatter}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stderr"], "level": _cfg.log_level.upper()},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": _cfg.log_level.upper(), "propagate": False},
        "gunicorn.access": {"handlers": [], "propagate": False},
    },
}


def _remove_own_metrics_dir(directory: str, master_pid: int) -> None:
    if os.getpid() == master_pid:  # not in a worker: forked, it runs atexit handlers too
        shutil.rmtree(directory, ignore_errors=True)


if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="im-http-metrics-")
    # atexit, not on_exit: gunicorn skips on_exit when it cannot bind (sys.exit(1)).
    atexit.register(_remove_own_metrics_dir, os.environ["PROMETHEUS_MULTIPROC_DIR"], os.getpid())


def on_starting(server: Any) -> None:
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
