"""One server process: Redis client, store, service and Thrift server wired
together, serving until SIGTERM/SIGINT, then stopping gracefully.

What keeps it from starting (the port or the metrics port in use, a file
that cannot be read, a malformed Redis setting) is a StartupError, raised
before it serves anything: one line naming what to change (exit status 2,
rpc_server.__main__). Redis down at start is not one: the server starts and
answers 503 until it is back. Nor is a Redis Cluster that cannot be reached,
whose client needs the slot map before anything: the server waits for it.
"""

from __future__ import annotations

import logging
import os
import signal
from types import ModuleType

import gevent
import redis
from gevent.event import Event
from redis.exceptions import RedisClusterException
from thriftpy2.parser.exc import ThriftParserError

import idl
from plumbing.admission import AdaptiveLimit
from plumbing.settings import StartupError, cannot_listen
from rpc_server.admission import AdmissionGate
from rpc_server.config import Config
from rpc_server.deadline import DeadlinePolicy
from rpc_server.observability import serve_metrics
from rpc_server.process.registry import EtcdRegistration, advertised_address
from rpc_server.service import IMService
from rpc_server.storage.conversations import Conversations
from rpc_server.storage.erasure import Erasure
from rpc_server.storage.notifier import Notifier
from rpc_server.storage.redis_client import connect, redacted
from rpc_server.storage.store import MessageStore
from rpc_server.wire.listening import inherited_listener, open_listeners
from rpc_server.wire.message_check import Limits
from rpc_server.wire.thrift_server import ThriftServer

log = logging.getLogger("rpc_server")

CLUSTER_RETRY_S = 2.0


def serve(cfg: Config) -> int:
    rpc = load_idl()
    start_metrics(cfg.host, cfg.metrics_port)  # first: an open Thrift port means (nearly) started
    listener = inherited_listener() or open_listeners(cfg.host, cfg.port, 1)[0]
    # Before serving: a SIGTERM that arrived while calls were already in flight
    # would otherwise kill the process with them (found by a test).
    stopping = Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stopping.set)
    client = open_storage(cfg)
    while client is None:  # a Redis Cluster that cannot be reached yet
        if stopping.wait(CLUSTER_RETRY_S):
            return 0
        client = open_storage(cfg)
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
        rpc,
        store,
        Conversations(store),
        Erasure(store),
        max_text_chars=cfg.max_text_chars,
        max_pull_limit=cfg.max_pull_limit,
        admin_token=cfg.admin_token,
        notifier=notifier,
        max_wait_ms=cfg.pull_max_wait_ms,
        deadlines=DeadlinePolicy(cfg.default_timeout_ms, cfg.reply_reserve_ms),
    )
    limits = Limits(max_bytes=cfg.max_message_bytes, max_string=cfg.max_message_bytes)
    handler: object = service
    if cfg.admission_target_ms:  # past its capacity, the process refuses calls (Code 503) rather than queue them
        handler = AdmissionGate(rpc, service, AdaptiveLimit(cfg.max_in_flight, cfg.admission_target_ms / 1000))
    server = ThriftServer(
        rpc, handler, listener, cfg.max_connections, cfg.idle_timeout_s, cfg.message_timeout_s, limits
    )
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

    supervisor = os.environ.get("RPC_SUPERVISOR_PID")  # set by rpc_server.process.supervisor for its workers
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


def load_idl() -> ModuleType:
    """The RPC IDL; StartupError if it cannot be read."""
    try:
        return idl.load_rpc()
    except FileNotFoundError as e:
        raise StartupError(str(e)) from None
    except ThriftParserError as e:
        raise StartupError(f"idl_rpc.thrift (IDL_DIR): {e}") from None


def start_metrics(host: str, port: int) -> None:
    """/metrics on `port` (0: none); StartupError if it cannot listen there."""
    try:
        serve_metrics(host, port)
    except OSError as e:
        raise StartupError(cannot_listen("RPC_HOST", "RPC_METRICS_PORT", host, port, e)) from None


def open_storage(cfg: Config) -> redis.Redis | None:
    """The Redis client `cfg` describes: StartupError for a malformed setting
    or a CA file that cannot be read; None, with a warning, for a Redis
    Cluster that cannot be reached (its client asks for the slot map at once;
    a single Redis's connects on first use)."""
    try:
        return connect(cfg)
    except ValueError as e:  # connect's malformed settings; the message holds no credentials
        raise StartupError(str(e)) from None
    except (redis.RedisError, RedisClusterException) as e:
        log.warning(
            "Redis Cluster not reachable yet (%s: %s); trying again every %.0f s before serving",
            type(e).__name__,
            e,
            CLUSTER_RETRY_S,
        )
        return None


def check_startup(cfg: Config) -> None:
    """What a worker checks as it starts, checked once by its supervisor
    before starting any: a bad setting is then the supervisor's one line,
    not a worker that fails again each time it is replaced."""
    load_idl()
    client = open_storage(cfg)
    if client is not None:
        client.close()


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
