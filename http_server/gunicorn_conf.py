"""gunicorn settings for the HTTP server, derived from http_server.config.

Start-up failures: this file runs in gunicorn's master, before anything
else; a setting that cannot work, or a port that cannot be listened on, is
one line on stderr and exit status 2 from here (plumbing.settings.fail), not
gunicorn's traceback, nor its five one-second retries of a port in use. So
the master opens the port itself, exclusively (no SO_REUSEPORT: a second
server on it fails), and hands the socket to gunicorn (`fd://`), whose
workers inherit it as they would gunicorn's own.

Metrics: prometheus_client's multiprocess mode needs a directory shared by
the workers, named in PROMETHEUS_MULTIPROC_DIR before any worker imports
prometheus_client; this file runs in the master, before the fork. It is
emptied at start, and a dead worker's files are marked dead. A folder made
here (none given) is removed when the master exits.
"""

import atexit
import os
import shutil
import socket as _socket
import tempfile
from pathlib import Path as _Path
from typing import Any

from http_server.config import Config as _Config
from http_server.config import for_process as _config_for_process
from plumbing.logs import json_formatter as _json_formatter
from plumbing.settings import StartupError as _StartupError
from plumbing.settings import cannot_listen as _cannot_listen
from plumbing.settings import fail as _fail

_BACKLOG = 2048  # gunicorn's default


def _listen(cfg: _Config) -> str:
    """gunicorn's `bind`: the port, opened here (see the module's docstring)."""
    if os.environ.get("GUNICORN_FD") or os.environ.get("LISTEN_FDS"):
        return f"{cfg.host}:{cfg.port}"  # gunicorn was handed its sockets (re-executed, or systemd): it uses those
    sock = _socket.socket(_socket.AF_INET6 if ":" in cfg.host else _socket.AF_INET, _socket.SOCK_STREAM)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind((cfg.host, cfg.port))
        sock.listen(_BACKLOG)
    except OSError as e:
        sock.close()
        raise _StartupError(_cannot_listen("HTTP_HOST", "HTTP_PORT", cfg.host, cfg.port, e)) from None
    return f"fd://{sock.detach()}"  # gunicorn takes the descriptor over


def _check_idl() -> None:
    """The workers load the RPC IDL; an IDL_DIR without it fails here instead (the
    idl package itself is not imported in the master: it imports ssl, before gevent's patching)."""
    directory = os.environ.get("IDL_DIR")
    if directory and not (_Path(directory) / "idl_rpc.thrift").is_file():
        raise _StartupError(f"IDL file 'idl_rpc.thrift' not found in {directory} (set IDL_DIR)")


try:
    _cfg = _config_for_process().config  # parsed already if `python -m http_server` started us
    _check_idl()
    bind = _listen(_cfg)
except _StartupError as _error:
    _fail("http_server", _error)

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
