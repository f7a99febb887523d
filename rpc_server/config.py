"""RPC server configuration: environment variables, each with a matching flag.

A flag wins over its variable, which wins over the default. Every numeric
setting has a range, checked at start-up (plumbing.settings.StartupError: one line,
exit status 2). The README's configuration table lists the same names and
ranges.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields

from plumbing.settings import Check, OneOf, Range, StartupError, check_host_port, check_url, describe, parse


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = 8888
    workers: int = 0
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster_nodes: str = ""
    redis_tls_ca_file: str = ""
    redis_timeout_ms: int = 1000
    redis_pool_size: int = 64
    redis_pool_wait_ms: int = 200
    redis_pipeline_lanes: int = 2
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 200
    default_timeout_ms: int = 1000
    reply_reserve_ms: int = 500
    max_text_chars: int = 4096
    max_pull_limit: int = 100
    pull_max_wait_ms: int = 30000
    max_waiters: int = 5000
    idempotency_ttl_s: int = 86400
    retention_max_age_s: int = 0
    retention_max_messages: int = 0
    admin_token: str = ""
    max_connections: int = 10000
    idle_timeout_s: float = 300.0
    message_timeout_s: float = 5.0
    max_message_bytes: int = 65536
    shutdown_grace_s: float = 10.0
    rate_limit_per_s: float = 0.0
    rate_limit_burst: int = 10
    metrics_port: int = 8889
    etcd_endpoints: str = ""
    service_name: str = "demo.rpc.server"
    advertise_addr: str = ""
    etcd_lease_ttl_s: int = 60
    log_level: str = "INFO"
    log_requests: int = 1
    max_in_flight: int = 512
    admission_target_ms: int = 100


# field -> (environment variable, help)
_SOURCES = {
    "host": ("RPC_HOST", "address to listen on"),
    "port": ("RPC_PORT", "port to listen on"),
    "workers": ("RPC_WORKERS", "server processes sharing the port (0: the CPUs available, cgroup quota included)"),
    "redis_url": ("REDIS_URL", "Redis to store messages in"),
    "redis_cluster_nodes": (
        "REDIS_CLUSTER_NODES",
        "host:port,... of a Redis Cluster, or redis[s]://[user:password@]host:port,... (then REDIS_URL is unused)",
    ),
    "redis_tls_ca_file": ("REDIS_TLS_CA_FILE", "CA certificates (PEM) to verify Redis's TLS certificate (rediss://)"),
    "redis_timeout_ms": (
        "REDIS_TIMEOUT_MS",
        "longest wait to connect to Redis or for a reply (a call's own deadline may shorten it)",
    ),
    "redis_pool_size": ("REDIS_POOL_SIZE", "Redis connections per process"),
    "redis_pool_wait_ms": (
        "REDIS_POOL_WAIT_MS",
        "longest wait for a free Redis connection (a call's own deadline may shorten it)",
    ),
    "redis_pipeline_lanes": (
        "REDIS_PIPELINE_LANES",
        "pipelines in flight at once for coalesced commands (0: no coalescing)",
    ),
    "redis_wait_replicas": ("REDIS_WAIT_REPLICAS", "acknowledge a send only once this many replicas have it (WAIT)"),
    "redis_wait_timeout_ms": ("REDIS_WAIT_TIMEOUT_MS", "how long a send waits for its replicas (503 beyond)"),
    "default_timeout_ms": (
        "RPC_DEFAULT_TIMEOUT_MS",
        "the deadline of a call that brings none (no TimeoutMs; a long-poll's wait is added)",
    ),
    "reply_reserve_ms": (
        "REDIS_REPLY_RESERVE_MS",
        "a Redis command is sent only while this much of its call's deadline is left (at most half of it)",
    ),
    "max_text_chars": ("MAX_TEXT_CHARS", "longest text, in Unicode code points"),
    "max_pull_limit": ("MAX_PULL_LIMIT", "larger pull limits are clamped to this"),
    "pull_max_wait_ms": ("PULL_MAX_WAIT_MS", "longest long-poll wait of a pull (larger WaitMs are clamped)"),
    "max_waiters": ("RPC_MAX_WAITERS", "waiting pulls per process; beyond, Code 503 (retry later)"),
    "idempotency_ttl_s": ("IDEMPOTENCY_TTL_S", "how long an idempotency key is remembered"),
    "retention_max_age_s": ("RETENTION_MAX_AGE_S", "trim a chat's messages older than this on each send (0: keep)"),
    "retention_max_messages": (
        "RETENTION_MAX_MESSAGES",
        "keep about this many newest messages per chat, trimmed on each send (0: all)",
    ),
    "admin_token": ("ADMIN_TOKEN", "the token admin calls (DeleteChat, EraseUser) must carry (empty: admin API off)"),
    "max_connections": ("RPC_MAX_CONNECTIONS", "concurrent Thrift connections per process"),
    "idle_timeout_s": ("RPC_IDLE_TIMEOUT_S", "close a connection idle between calls this long"),
    "message_timeout_s": ("RPC_MESSAGE_TIMEOUT_S", "deadline to receive a whole call once it has begun"),
    "max_message_bytes": ("RPC_MAX_MESSAGE_BYTES", "largest Thrift call (bounds strings and containers)"),
    "shutdown_grace_s": ("RPC_SHUTDOWN_GRACE_S", "on SIGTERM, how long calls in flight may take to finish"),
    "rate_limit_per_s": ("RATE_LIMIT_PER_S", "sends per second per sender, shared by replicas (0: off)"),
    "rate_limit_burst": ("RATE_LIMIT_BURST", "sends a sender may make at once before the rate applies"),
    "metrics_port": ("RPC_METRICS_PORT", "Prometheus /metrics port (0: off)"),
    "etcd_endpoints": ("ETCD_ENDPOINTS", "register in this etcd, as Kitex's registry-etcd does (empty: don't)"),
    "service_name": ("RPC_SERVICE_NAME", "the service name registered in etcd"),
    "advertise_addr": ("RPC_ADVERTISE_ADDR", "host:port registered in etcd (default: this host's address)"),
    "etcd_lease_ttl_s": ("ETCD_LEASE_TTL_S", "the registration's lease, kept alive while serving"),
    "log_level": ("LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR"),
    "log_requests": ("LOG_REQUESTS", "1: a JSON log line per call; 0: none"),
    "max_in_flight": (
        "RPC_MAX_IN_FLIGHT",
        "admission control: most calls worked on at once per process (Send, Pull, ListChats)",
    ),
    "admission_target_ms": (
        "RPC_ADMISSION_TARGET_MS",
        "admission control: the latency target of the adaptive limit on calls in flight (0: no limit)",
    ),
}


LOG_LEVELS = OneOf(("DEBUG", "INFO", "WARNING", "ERROR"), case_sensitive=False)
_PORT = Range(1, 65535)

# field -> the values it may take. Lower bounds: what cannot work (a 0 timeout
# is a non-blocking socket; WAIT with a 0 timeout blocks for ever; EX 0 is an
# error); upper bounds: well past any sane value, so that a typo is caught.
CHECKS: dict[str, Check] = {
    "port": _PORT,
    "workers": Range(0, 1024),
    "redis_timeout_ms": Range(1, 600_000),
    "redis_pool_size": Range(1, 100_000),
    "redis_pool_wait_ms": Range(0, 600_000),
    "redis_pipeline_lanes": Range(0, 64),
    "redis_wait_replicas": Range(0, 100),
    "redis_wait_timeout_ms": Range(1, 600_000),
    "default_timeout_ms": Range(1, 3_600_000),
    "reply_reserve_ms": Range(0, 600_000),
    "max_text_chars": Range(1, 1_000_000),
    "max_pull_limit": Range(1, 10_000),
    "pull_max_wait_ms": Range(0, 3_600_000),
    "max_waiters": Range(0, 1_000_000),
    "idempotency_ttl_s": Range(1, 31_536_000),  # a year
    "retention_max_age_s": Range(0, 3_153_600_000),  # a century; in microseconds still exact in a Lua double
    "retention_max_messages": Range(0, 1_000_000_000),
    "max_connections": Range(1, 1_000_000),
    "idle_timeout_s": Range(0.1, 86400.0),
    "message_timeout_s": Range(0.1, 3600.0),
    "max_message_bytes": Range(1024, 67_108_864),
    "shutdown_grace_s": Range(0.0, 3600.0),
    "rate_limit_per_s": Range(0.0, 1_000_000.0),
    "rate_limit_burst": Range(1, 1_000_000),
    "metrics_port": Range(0, 65535),
    "etcd_lease_ttl_s": Range(1, 86400),
    "log_level": LOG_LEVELS,
    "log_requests": Range(0, 1),
    "max_in_flight": Range(1, 1_000_000),
    "admission_target_ms": Range(0, 60_000),
}

SETTINGS = describe(Config, _SOURCES, CHECKS)


def environment(cfg: Config) -> dict[str, str]:
    """`cfg` as the environment variables that load() reads back."""
    return {_SOURCES[f.name][0]: str(getattr(cfg, f.name)) for f in fields(Config)}


# the settings that reach Redis: what every operator tool (sweep, reindex) uses
REDIS_SETTINGS = (
    "redis_url",
    "redis_cluster_nodes",
    "redis_tls_ca_file",
    "redis_timeout_ms",
    "redis_pool_size",
    "redis_pool_wait_ms",
)


def load(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    *,
    prog: str = "python -m rpc_server",
    description: str = "IMService Thrift server",
    shown: Collection[str] | None = None,
) -> Config:
    """The configuration; StartupError for a setting that cannot work. A tool
    that reads the server's settings (sweep, reindex) passes its own `prog`
    and `description`, and in `shown` the settings it uses: only those appear
    in its --help. It still accepts every flag, so a server's command line can
    be reused as it is."""
    epilog = None if shown is None else "Every other flag of `python -m rpc_server` is accepted and ignored."
    cfg = parse(Config, SETTINGS, prog, description, argv, environ, shown, epilog)
    if cfg.metrics_port == cfg.port:
        raise StartupError(
            f"RPC_METRICS_PORT must differ from RPC_PORT (both {cfg.port}): set another port, or 0 for no metrics"
        )
    if cfg.etcd_endpoints:
        check_url("ETCD_ENDPOINTS", cfg.etcd_endpoints)
    if cfg.advertise_addr:
        check_host_port("RPC_ADVERTISE_ADDR", cfg.advertise_addr)
    return cfg
