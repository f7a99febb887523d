"""`--workers N`: N server processes sharing one port.

Each worker is a whole `python -m rpc_server` process that binds the port
with SO_REUSEPORT, so the kernel spreads new connections over them (one
gevent loop uses one core). This parent only supervises: it starts the
workers, starts another when one dies, forwards SIGTERM (each worker then
stops gracefully) and serves the workers' metrics, summed through
prometheus_client's multiprocess files. Workers are started afresh rather
than forked, so that none inherits this process's greenlets or sockets.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import gevent
from gevent.event import Event

from rpc_server.config import Config, environment
from rpc_server.observability import mark_worker_dead, serve_metrics
from rpc_server.serving import register

log = logging.getLogger(__name__)

SUPERVISOR_PID = "RPC_SUPERVISOR_PID"  # set for the workers, not by users


def supervise(cfg: Config, workers: int) -> int:
    env = {**os.environ, **environment(cfg), "RPC_WORKERS": "1", "RPC_REUSE_PORT": "1", "RPC_METRICS_PORT": "0"}
    env["ETCD_ENDPOINTS"] = ""  # the supervisor registers the server once, not each worker
    env[SUPERVISOR_PID] = str(os.getpid())  # a worker stops when its supervisor is gone
    children: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        children.append(subprocess.Popen([sys.executable, "-m", "rpc_server"], env=env))

    stopping = Event()  # before the workers: a SIGTERM from now on stops them gracefully
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stopping.set)
    for _ in range(workers):
        start()
    serve_metrics(cfg.host, cfg.metrics_port)
    log.info("supervising %d workers on %s:%d (metrics :%d)", workers, cfg.host, cfg.port, cfg.metrics_port)

    registration = register(cfg)
    while not stopping.wait(0.5):
        for child in [c for c in children if c.poll() is not None]:
            log.warning("worker %d exited with %s; starting another", child.pid, child.returncode)
            children.remove(child)
            mark_worker_dead(child.pid)
            start()

    if registration is not None:
        registration.stop()
    log.info("stopping %d workers", len(children))
    for child in children:
        child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + cfg.shutdown_grace_s + 5
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0
