"""One server process: Redis client, store, service and Thrift server wired
together, serving until SIGTERM/SIGINT, then stopping gracefully."""

from __future__ import annotations

import logging
import os
import signal

import gevent
from gevent.event import Event

import idl
from rpc_server.config import Config
from rpc_server.message_check import Limits
from rpc_server.notifier import Notifier
from rpc_server.observability import serve_metrics
from rpc_server.redis_client import connect, redacted
from rpc_server.registry import EtcdRegistration, advertised_address
from rpc_server.server import ThriftServer
from rpc_server.service import IMService
from rpc_server.store import MessageStore

log = logging.getLogger("rpc_server")


def serve(cfg: Config) -> int:
    rpc = idl.load_rpc()
    client = connect(cfg)
    store = MessageStore(
        client,
        cfg.idempotency_ttl_s,
        cfg.rate_limit_per_s,
        cfg.rate_limit_burst,
        cfg.redis_pipeline_lanes,
        cfg.redis_wait_replicas,
        cfg.redis_wait_timeout_ms,
        cfg.retention_max_age_s,
        cfg.retention_max_messages,
    )
    notifier = Notifier(client, cfg.max_waiters)
    service = IMService(
        rpc, store, cfg.max_text_chars, cfg.max_pull_limit, cfg.admin_token, notifier, cfg.pull_max_wait_ms
    )
    limits = Limits(max_bytes=cfg.max_message_bytes, max_string=cfg.max_message_bytes)
    server = ThriftServer(
        rpc,
        service,
        cfg.host,
        cfg.port,
        cfg.max_connections,
        cfg.idle_timeout_s,
        cfg.message_timeout_s,
        limits,
        reuse_port=bool(cfg.reuse_port),
    )
    # Before serving: a SIGTERM that arrived while calls were already in flight
    # would otherwise kill the process with them (found by a test).
    stopping = Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stopping.set)
    serve_metrics(cfg.host, cfg.metrics_port)  # first: an open Thrift port means fully started
    server.start()
    log.info(
        "IMService listening on %s:%d (Redis %s, metrics :%d)",
        *server.address,
        redacted(cfg.redis_cluster_nodes or cfg.redis_url),
        cfg.metrics_port,
    )
    try:
        store.ping()
    except Exception as e:
        log.warning("Redis not reachable yet (%s); answering 503 until it is", e)

    supervisor = os.environ.get("RPC_SUPERVISOR_PID")  # set by rpc_server.supervisor for its workers
    if supervisor:
        # Its pid, not our parent's at this moment: it may already be gone.
        gevent.spawn(_stop_when_orphaned, int(supervisor), stopping)
    registration = register(cfg)
    stopping.wait()
    if registration is not None:
        registration.stop()  # first, so that clients stop choosing this server
    notifier.close()  # waiting pulls answer at once (their clients pull again, elsewhere)
    log.info("stopping: finishing calls in flight (at most %.0f s)", cfg.shutdown_grace_s)
    server.stop(cfg.shutdown_grace_s)
    log.info("stopped")
    return 0


def register(cfg: Config) -> EtcdRegistration | None:
    """Register this server in etcd if ETCD_ENDPOINTS is set."""
    if not cfg.etcd_endpoints:
        return None
    address = advertised_address(cfg.host, cfg.port, cfg.advertise_addr)
    registration = EtcdRegistration(cfg.etcd_endpoints, cfg.service_name, address, cfg.etcd_lease_ttl_s)
    registration.start()
    return registration


def _stop_when_orphaned(parent: int, stopping: Event) -> None:
    while os.getppid() == parent:
        gevent.sleep(1)
    log.warning("the supervisor (pid %d) is gone; stopping", parent)
    stopping.set()
