"""HTTP server configuration: environment variables, each with a matching flag.

`python -m http_server --flag value` exports the flags as the variables,
then runs gunicorn, whose workers (and `gunicorn_conf`) read the variables;
so gunicorn can also be run directly with the same environment. Each
process parses them once (`for_process`): the master for `gunicorn_conf`,
the worker class and `__main__`; each worker for its app, reading the JWT
key file once, as a worker started later (after a HUP) reads it anew.

Every numeric setting has a range, checked at start-up with the rest
(ConfigError, a plumbing.settings.StartupError: one line, exit status 2). The README's
configuration table lists the same names and ranges.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from plumbing.cpus import available_cpus
from plumbing.settings import Check, OneOf, Range, StartupError, check_host_port, check_url, describe, parse

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

# jwt and cryptography are imported only with AUTH_MODE=jwt, where they are
# used: gunicorn's master imports this module before the workers' gevent
# patching, and PyJWT's jwks_client imports ssl, which gevent warns about.


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = available_cpus()  # the cgroup CPU quota included, as the RPC server counts
    worker_connections: int = 2000
    rpc_addr: str = "127.0.0.1:8888"
    rpc_dns: str = ""
    rpc_etcd: str = ""
    rpc_service_name: str = "demo.rpc.server"
    rpc_refresh_s: float = 5.0
    rpc_eject_s: float = 5.0
    rpc_timeout_ms: int = 1000
    rpc_connect_timeout_ms: int = 250
    rpc_pool_size: int = 64
    admin_erase_timeout_s: int = 20
    pull_max_wait_s: int = 30
    rpc_wait_pool_size: int = 1500
    sse_max_streams: int = 1000
    sse_heartbeat_s: int = 15
    sse_allowed_origins: str = ""
    max_body_bytes: int = 65536
    keepalive_s: int = 5
    header_timeout_s: int = 10
    body_min_rate: int = 1024
    graceful_timeout_s: int = 10
    log_level: str = "INFO"
    log_requests: int = 1
    auth_mode: str = "none"
    auth_user_header: str = "X-User-Id"
    jwt_secret: str = ""
    jwt_public_key_file: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_user_claim: str = "sub"
    jwt_leeway_s: int = 30
    admission_target_ms: int = 25
    admission_queue_ms: int = 15


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
    "admin_erase_timeout_s": (
        "ADMIN_ERASE_TIMEOUT_S",
        "DELETE /api/admin/users/{user}: how long one request may work (beyond: 202, and the next request resumes)",
    ),
    "pull_max_wait_s": ("PULL_MAX_WAIT_S", "longest long-poll wait of GET /api/pull (larger waits are clamped)"),
    "rpc_wait_pool_size": ("RPC_WAIT_POOL_SIZE", "RPC connections per worker for waiting pulls (their own pool)"),
    "sse_max_streams": ("SSE_MAX_STREAMS", "event streams (GET /api/subscribe) per worker; beyond, 503"),
    "sse_heartbeat_s": ("SSE_HEARTBEAT_S", "seconds between heartbeat comments on an idle event stream"),
    "sse_allowed_origins": ("SSE_ALLOWED_ORIGINS", "origins allowed by CORS (comma-separated, or *; empty: none)"),
    "max_body_bytes": ("MAX_BODY_BYTES", "largest request body (413 beyond)"),
    "keepalive_s": ("HTTP_KEEPALIVE_S", "close an idle client connection after this long"),
    "header_timeout_s": ("HTTP_HEADER_TIMEOUT_S", "a request's head must arrive whole this long after its first byte"),
    "body_min_rate": (
        "HTTP_BODY_MIN_RATE",
        "bytes/s: a body must arrive within HTTP_HEADER_TIMEOUT_S + its length / this, after its head",
    ),
    "graceful_timeout_s": ("HTTP_GRACEFUL_TIMEOUT_S", "on SIGTERM, how long requests in flight may take to finish"),
    "log_level": ("LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR"),
    "log_requests": ("LOG_REQUESTS", "1: a JSON log line per request; 0: none"),
    "auth_mode": ("AUTH_MODE", "none; header (a gateway names the user in AUTH_USER_HEADER); jwt (a bearer token)"),
    "auth_user_header": ("AUTH_USER_HEADER", "AUTH_MODE=header: the header in which the gateway names the user"),
    "jwt_secret": ("JWT_SECRET", "AUTH_MODE=jwt: the HS256 secret, 32 bytes or more (prefer the variable to the flag)"),
    "jwt_public_key_file": ("JWT_PUBLIC_KEY_FILE", "AUTH_MODE=jwt: PEM file of the RS256 public key (or JWT_SECRET)"),
    "jwt_issuer": ("JWT_ISSUER", "AUTH_MODE=jwt: if set, the `iss` every token must have"),
    "jwt_audience": ("JWT_AUDIENCE", "AUTH_MODE=jwt: if set, an `aud` every token must have"),
    "jwt_user_claim": ("JWT_USER_CLAIM", "AUTH_MODE=jwt: the claim naming the user"),
    "jwt_leeway_s": ("JWT_LEEWAY_S", "AUTH_MODE=jwt: clock skew allowed on exp, nbf and iat, in seconds"),
    "admission_target_ms": (
        "HTTP_ADMISSION_TARGET_MS",
        "admission control: the latency target of the adaptive concurrency limit per worker (0: no limit)",
    ),
    "admission_queue_ms": (
        "HTTP_ADMISSION_QUEUE_MS",
        "admission control: how long a request that finds the limit full waits for a slot before it is refused",
    ),
}

AUTH_MODES = ("none", "header", "jwt")
LOG_LEVELS = OneOf(("DEBUG", "INFO", "WARNING", "ERROR"), case_sensitive=False)

# field -> the values it may take. Lower bounds: what cannot work (a 0 s
# keep-alive would make every client socket non-blocking; no worker, no
# connection); upper bounds: well past any sane value, so that a typo is caught.
CHECKS: dict[str, Check] = {
    "port": Range(1, 65535),
    "workers": Range(1, 1024),
    "worker_connections": Range(1, 1_000_000),
    "rpc_refresh_s": Range(0.1, 86400.0),
    "rpc_eject_s": Range(0.0, 86400.0),
    "rpc_timeout_ms": Range(1, 3_600_000),
    "rpc_connect_timeout_ms": Range(1, 600_000),
    "rpc_pool_size": Range(1, 100_000),
    "pull_max_wait_s": Range(0, 3600),
    "rpc_wait_pool_size": Range(1, 1_000_000),
    "sse_max_streams": Range(0, 1_000_000),
    "sse_heartbeat_s": Range(1, 3600),
    "max_body_bytes": Range(1, 1_073_741_824),
    "keepalive_s": Range(1, 3600),
    "graceful_timeout_s": Range(0, 3600),
    "log_level": LOG_LEVELS,
    "log_requests": Range(0, 1),
    "auth_mode": OneOf(AUTH_MODES),
    "jwt_leeway_s": Range(0, 86400),
    "admin_erase_timeout_s": Range(1, 3600),
    "header_timeout_s": Range(1, 3600),
    "body_min_rate": Range(1, 1_073_741_824),  # bytes/s; 0 would divide by zero on every body
    "admission_target_ms": Range(0, 60_000),
    "admission_queue_ms": Range(0, 60_000),
}

JWT_MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
JWT_MIN_RSA_BITS = 2048  # RFC 7518 3.3
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110 5.1)


class ConfigError(StartupError, ValueError):
    """A setting that cannot work, reported at start-up rather than on the first request."""


@dataclass(frozen=True)
class JwtKey:
    """What tokens are verified with: one algorithm, never chosen by the token."""

    algorithm: str  # "HS256" or "RS256"
    key: str | RSAPublicKey


SETTINGS = describe(Config, _SOURCES, CHECKS)


@dataclass(frozen=True)
class Loaded:
    """A checked configuration, and the JWT key it names (read while checking it)."""

    config: Config
    jwt_key: JwtKey | None


_PER_PROCESS: dict[int, Loaded] = {}  # by process id: a forked worker parses its own


def for_process(argv: Sequence[str] | None = ()) -> Loaded:
    """This process's configuration, parsed on the first call (`argv`: the
    flags of `python -m http_server`; by default none, only the environment)
    and returned again by every later call in the same process."""
    pid = os.getpid()
    if pid not in _PER_PROCESS:
        loaded = load_checked(argv)
        _PER_PROCESS.clear()  # the parent's, inherited by a fork
        _PER_PROCESS[pid] = loaded
    return _PER_PROCESS[pid]


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> Config:
    """The configuration; StartupError (ConfigError) for a setting that cannot work."""
    return load_checked(argv, environ).config


def load_checked(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> Loaded:
    """`load`'s configuration, with the JWT key read while checking it."""
    cfg = parse(Config, SETTINGS, "python -m http_server", "HTTP API server (gunicorn)", argv, environ)
    if cfg.rpc_etcd:
        check_url("RPC_ETCD", cfg.rpc_etcd)
    elif cfg.rpc_dns:
        check_host_port("RPC_DNS", cfg.rpc_dns, "name:port")
    else:
        parse_addresses(cfg.rpc_addr)  # a bad RPC_ADDR fails at start-up, not on the first request
    if cfg.rpc_wait_pool_size < cfg.sse_max_streams:
        raise ConfigError(
            f"RPC_WAIT_POOL_SIZE ({cfg.rpc_wait_pool_size}) must be at least SSE_MAX_STREAMS"
            f" ({cfg.sse_max_streams}): each event stream waits on one of its connections"
        )
    return Loaded(cfg, check_auth(cfg))  # a bad access-control setting fails at start-up too (ConfigError)


def check_auth(cfg: Config) -> JwtKey | None:
    """Check the access-control settings (ConfigError); with AUTH_MODE=jwt, read the key."""
    if cfg.auth_mode not in AUTH_MODES:
        raise ConfigError(f"AUTH_MODE must be one of {', '.join(AUTH_MODES)}, not {cfg.auth_mode!r}")
    if cfg.auth_mode != "jwt":
        # A key without AUTH_MODE=jwt is most likely a forgotten AUTH_MODE: refuse rather than run open.
        for name in ("jwt_secret", "jwt_public_key_file"):
            if getattr(cfg, name):
                env = _SOURCES[name][0]
                raise ConfigError(f"{env} is set but AUTH_MODE is {cfg.auth_mode}: set AUTH_MODE=jwt, or unset {env}")
    if cfg.auth_mode == "header" and not _HEADER_NAME.fullmatch(cfg.auth_user_header):
        raise ConfigError(f"AUTH_USER_HEADER must be a header name, not {cfg.auth_user_header!r}")
    if cfg.auth_mode != "jwt":
        return None
    if not cfg.jwt_user_claim:
        raise ConfigError("JWT_USER_CLAIM must not be empty")
    if cfg.jwt_leeway_s < 0:
        raise ConfigError(f"JWT_LEEWAY_S must be 0 or more, not {cfg.jwt_leeway_s}")
    if bool(cfg.jwt_secret) == bool(cfg.jwt_public_key_file):
        raise ConfigError("AUTH_MODE=jwt needs exactly one of JWT_SECRET (HS256) or JWT_PUBLIC_KEY_FILE (RS256)")
    if cfg.jwt_secret:
        return JwtKey("HS256", _hs256_secret(cfg.jwt_secret))
    return JwtKey("RS256", _rs256_public_key(cfg.jwt_public_key_file))


def _hs256_secret(secret: str) -> str:
    import jwt

    # Never put the secret itself in a message.
    if len(secret.encode()) < JWT_MIN_SECRET_BYTES:
        raise ConfigError(f"JWT_SECRET must be at least {JWT_MIN_SECRET_BYTES} bytes (RFC 7518 3.2)")
    try:
        jwt.get_algorithm_by_name("HS256").prepare_key(secret)
    except jwt.InvalidKeyError:  # a PEM, SSH or JWK text: a public key used as a secret invites alg confusion
        raise ConfigError("JWT_SECRET looks like a public key or a JWK, not a shared secret") from None
    return secret


def _rs256_public_key(path: str) -> RSAPublicKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise ConfigError(f"JWT_PUBLIC_KEY_FILE {path}: cannot read it: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"JWT_PUBLIC_KEY_FILE {path}: not a PEM public key") from None
    if not isinstance(key, RSAPublicKey):
        raise ConfigError(f"JWT_PUBLIC_KEY_FILE {path}: not an RSA public key (RS256 needs one)")
    if key.key_size < JWT_MIN_RSA_BITS:
        raise ConfigError(f"JWT_PUBLIC_KEY_FILE {path}: {key.key_size} bits; RS256 needs {JWT_MIN_RSA_BITS} or more")
    return key


def parse_addresses(addresses: str) -> list[tuple[str, int]]:
    """ "h1:8888,[::1]:8888" -> [("h1", 8888), ("::1", 8888)]; an empty host is 127.0.0.1.
    StartupError (naming RPC_ADDR) for anything else."""
    return [check_host_port("RPC_ADDR", address, "host:port[,host:port...]") for address in addresses.split(",")]


def export(cfg: Config, environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Write `cfg` into the environment, for gunicorn and its workers."""
    for name, value in asdict(cfg).items():
        environ[_SOURCES[name][0]] = str(value)
