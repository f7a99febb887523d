"""HTTP server configuration: environment variables, each with a matching flag.

`python -m http_server --flag value` exports the flags as the variables,
then runs gunicorn, whose workers (and `gunicorn_conf`) read the variables;
so gunicorn can also be run directly with the same environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields


def _available_cpus() -> int:
    """CPUs this process may run on (affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = _available_cpus()
    worker_connections: int = 1000
    rpc_addr: str = "127.0.0.1:8888"
    rpc_dns: str = ""
    rpc_etcd: str = ""
    rpc_service_name: str = "demo.rpc.server"
    rpc_refresh_s: float = 5.0
    rpc_eject_s: float = 5.0
    rpc_timeout_ms: int = 1000
    rpc_connect_timeout_ms: int = 250
    rpc_pool_size: int = 64
    max_body_bytes: int = 65536
    keepalive_s: int = 5
    graceful_timeout_s: int = 10
    log_level: str = "INFO"
    log_requests: int = 1


# field -> (environment variable, help)
_SOURCES = {
    "host": ("HTTP_HOST", "address to listen on"),
    "port": ("HTTP_PORT", "port to listen on"),
    "workers": ("HTTP_WORKERS", "gunicorn worker processes (default: available CPUs)"),
    "worker_connections": ("HTTP_WORKER_CONNECTIONS", "concurrent clients per worker"),
    "rpc_addr": ("RPC_ADDR", "host:port of the RPC server; several, comma-separated, are used in turn"),
    "rpc_dns": ("RPC_DNS", "name:port: the RPC servers are every A/AAAA record of name (then RPC_ADDR is unused)"),
    "rpc_etcd": ("RPC_ETCD", "etcd holding the RPC servers' registrations (Kitex registry-etcd format)"),
    "rpc_service_name": ("RPC_SERVICE_NAME", "the service name to look up in etcd"),
    "rpc_refresh_s": ("RPC_REFRESH_S", "how often RPC_DNS or RPC_ETCD is read again"),
    "rpc_eject_s": ("RPC_EJECT_S", "how long an RPC endpoint that refused a connect is skipped"),
    "rpc_timeout_ms": ("RPC_TIMEOUT_MS", "total deadline of one RPC call"),
    "rpc_connect_timeout_ms": ("RPC_CONNECT_TIMEOUT_MS", "deadline to connect to the RPC server"),
    "rpc_pool_size": ("RPC_POOL_SIZE", "RPC connections per worker"),
    "max_body_bytes": ("MAX_BODY_BYTES", "largest request body (413 beyond)"),
    "keepalive_s": ("HTTP_KEEPALIVE_S", "close an idle client connection after this long"),
    "graceful_timeout_s": ("HTTP_GRACEFUL_TIMEOUT_S", "on SIGTERM, how long requests in flight may take to finish"),
    "log_level": ("LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR"),
    "log_requests": ("LOG_REQUESTS", "1: a JSON log line per request; 0: none"),
}


def parser(environ: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m http_server", description="HTTP API server (gunicorn)")
    for field in fields(Config):
        env, help_text = _SOURCES[field.name]
        p.add_argument(
            "--" + field.name.replace("_", "-"),
            type=type(field.default),
            default=environ.get(env, field.default),
            help=f"{help_text} (${env}, default {field.default})",
        )
    return p


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> Config:
    cfg = Config(**vars(parser(environ).parse_args(argv)))
    if not (cfg.rpc_dns or cfg.rpc_etcd):
        parse_addresses(cfg.rpc_addr)  # a bad RPC_ADDR fails at start-up, not on the first request
    return cfg


def parse_addresses(addresses: str) -> list[tuple[str, int]]:
    """ "h1:8888,[::1]:8888" -> [("h1", 8888), ("::1", 8888)]; an empty host is 127.0.0.1."""
    endpoints = []
    for address in addresses.split(","):
        host, _, port = address.strip().rpartition(":")
        endpoints.append((host.strip("[]") or "127.0.0.1", int(port)))
    return endpoints


def export(cfg: Config, environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Write `cfg` into the environment, for gunicorn and its workers."""
    for name, value in asdict(cfg).items():
        environ[_SOURCES[name][0]] = str(value)
