"""`--workers N`: N server processes sharing one port.

This parent opens the port once, before anything else (rpc_server.wire.listening:
one socket per worker, in a SO_REUSEPORT group that no other server can
join), so a port in use is its one-line failure, and each worker inherits
its own socket; the kernel spreads new connections over them (one gevent
loop uses one core). It checks what the workers would check as they start
(serving.check_startup), then only supervises: it starts the workers,
starts another when one dies (on the dead one's socket), forwards SIGTERM
(each worker then stops gracefully) and serves the workers' metrics, summed
through prometheus_client's multiprocess files. A worker that exits with
status 2 failed to start: it would fail again, so the supervisor stops and
exits 2 too. Workers are started afresh rather than forked, so that none
inherits this process's greenlets (nor any socket but its own).
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

from plumbing.settings import EXIT_STARTUP_FAILED
from rpc_server.config import Config, environment
from rpc_server.observability import mark_worker_dead
from rpc_server.process.worker import check_startup, register, start_metrics
from rpc_server.wire.listening import LISTEN_FD, open_listeners

log = logging.getLogger(__name__)

SUPERVISOR_PID = "RPC_SUPERVISOR_PID"  # set for the workers, not by users


def supervise(cfg: Config, workers: int) -> int:
    listeners = open_listeners(cfg.host, cfg.port, workers)  # StartupError: the port is not ours
    start_metrics(cfg.host, cfg.metrics_port)
    check_startup(cfg)
    env = {**os.environ, **environment(cfg), "RPC_WORKERS": "1", "RPC_METRICS_PORT": "0"}
    env["ETCD_ENDPOINTS"] = ""  # the supervisor registers the server once, not each worker
    env[SUPERVISOR_PID] = str(os.getpid())  # a worker stops when its supervisor is gone
    children: dict[int, subprocess.Popen[bytes]] = {}  # listener index -> the worker serving on it

    def start(slot: int) -> None:
        fd = listeners[slot].fileno()
        argv = [sys.executable, "-m", "rpc_server"]
        children[slot] = subprocess.Popen(argv, env={**env, LISTEN_FD: str(fd)}, pass_fds=(fd,))

    stopping = Event()  # before the workers: a SIGTERM from now on stops them gracefully
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stopping.set)
    for slot in range(workers):
        start(slot)
    log.info("supervising %d workers on %s:%d (metrics :%d)", workers, cfg.host, cfg.port, cfg.metrics_port)

    registration = register(cfg)
    failed = False
    while not failed and not stopping.wait(0.5):
        for slot, child in list(children.items()):
            if child.poll() is None:
                continue
            mark_worker_dead(child.pid)
            if child.returncode == EXIT_STARTUP_FAILED:
                log.error("worker %d could not start (exit status 2: see its line above); stopping", child.pid)
                del children[slot]
                failed = True
                break
            log.warning("worker %d exited with %s; starting another", child.pid, child.returncode)
            start(slot)

    if registration is not None:
        registration.stop()
    for listener in listeners:
        listener.close()  # each worker's socket now closes with it: new connections are refused, not queued
    log.info("stopping %d workers", len(children))
    for child in children.values():
        child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + cfg.shutdown_grace_s + 5
    for child in children.values():
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return EXIT_STARTUP_FAILED if failed else 0
