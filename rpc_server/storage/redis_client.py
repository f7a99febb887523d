"""Connecting to Redis, and what its failures mean to our callers.

Every failure mode is bounded and explicit (short timeouts, a blocking pool
with a bounded wait, no automatic retries), and every Redis error that means
"storage is unavailable" becomes StorageUnavailable with a message fit for a
client: never the URL, which may hold credentials.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.exceptions import AskError, ClusterDownError, RedisClusterException, TryAgainError
from redis.retry import Retry

from rpc_server.config import Config
from rpc_server.errors import StorageUnavailable
from rpc_server.observability import REDIS_ERRORS, STORAGE_FULL
from rpc_server.storage.pipelining import NoConnection, NotSent, QueuedPastDeadline


def connect(cfg: Config) -> redis.Redis:
    """The Redis (or Redis Cluster) client `cfg` describes."""
    return connect_redis(
        cfg.redis_url,
        cfg.redis_timeout_ms / 1000,
        cfg.redis_pool_size,
        cfg.redis_pool_wait_ms / 1000,
        cfg.redis_cluster_nodes,
        cfg.redis_tls_ca_file,
    )


def connect_redis(
    url: str,
    timeout_s: float,
    pool_size: int,
    pool_wait_s: float,
    cluster_nodes: str = "",
    tls_ca_file: str = "",
) -> redis.Redis:
    """A Redis client whose every failure mode is bounded and explicit.

    - socket and connect timeouts and the wait for a pooled connection are
      all short, so that they fit within the caller's RPC deadline (1 s);
    - a BlockingConnectionPool waits for a free connection instead of
      raising as soon as `pool_size` are busy, but only for `pool_wait_s`;
    - no command is retried (redis-py retries by default, which after a
      timeout could store a message twice).

    `url` is redis-py's: `redis://[[user]:password@]host:port/db`, or
    `rediss://…` for TLS; special characters in the user name and password
    percent-encoded.

    With `cluster_nodes` (see parse_cluster_nodes), a Redis Cluster client
    (redis-py's RedisCluster) with the same bounds, per node. It follows
    MOVED/ASK redirections, which are safe: the command did not run. The
    store's sends do not go through it: they are routed to each node's own
    client by pipelining.ClusterRouter (store.py says why).

    `tls_ca_file`: the CA certificates (PEM) that Redis's TLS certificate
    must chain to, instead of the system's; only with `rediss://`.

    A malformed setting raises ValueError; its message never holds the
    credentials.
    """
    bounds: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
    }
    pool_class = functools.partial(redis.BlockingConnectionPool, timeout=pool_wait_s)
    if cluster_nodes:
        nodes = parse_cluster_nodes(cluster_nodes)
        (host, port), *others = nodes.addresses
        cluster = redis.RedisCluster(
            # The first node as a URL: only then does redis-py give every node
            # a pool of `connection_pool_class` (else a ConnectionPool, which
            # raises at once when `pool_size` connections are busy). `rediss`
            # makes every connection TLS; the credentials are kept out of it.
            url=f"{nodes.scheme}://{_host_port(host, port)}",
            startup_nodes=[ClusterNode(h, p) for h, p in others],
            username=nodes.username,
            password=nodes.password,
            max_connections=pool_size,
            connection_pool_class=pool_class,
            # As the cluster's own `cluster-require-full-coverage no`: a slot
            # nobody serves fails its own commands (SlotNotCoveredError), and
            # the slot map can still be read, at start-up and after a failure.
            require_full_coverage=False,
            **_tls(nodes.scheme == "rediss", tls_ca_file, "REDIS_CLUSTER_NODES"),
            **bounds,
        )
        return cast(redis.Redis, cluster)  # the commands the store uses are the same
    tls = _tls(url.startswith("rediss://"), tls_ca_file, "REDIS_URL")
    if _unencoded_credentials(url):
        raise ValueError(f"REDIS_URL {redacted(url)}: percent-encode '/', '?', '#' and '@' in the user and password")
    try:
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=pool_size, timeout=pool_wait_s, **tls, **bounds
        )
    except ValueError:
        # Python's and redis-py's own messages may quote a part of the URL.
        raise ValueError(f"REDIS_URL {redacted(url)}: not a valid Redis URL") from None
    return redis.Redis(connection_pool=pool)


@dataclass(frozen=True)
class ClusterNodes:
    """REDIS_CLUSTER_NODES, parsed."""

    addresses: tuple[tuple[str, int], ...]
    scheme: str = "redis"  # or "rediss": TLS
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def parse_cluster_nodes(spec: str) -> ClusterNodes:
    """`host:port,host:port`, or `redis://[[user]:password@]host:port,host:port`,
    or `rediss://…` (TLS): the scheme and credentials, given once before
    the first node, apply to every node (those found later too). As in a
    URL, special characters in the user name and password are
    percent-encoded; an optional `/0` may end it (a cluster has only db 0).

    Errors never quote `spec`, which may hold credentials.
    """
    scheme, sep, rest = spec.strip().partition("://")
    if not sep:
        scheme, rest = "redis", spec.strip()
    elif scheme not in ("redis", "rediss"):
        raise ValueError("REDIS_CLUSTER_NODES: the scheme must be redis:// or rediss://")
    userinfo, at, hosts = rest.rpartition("@")
    if at and not sep:
        raise ValueError("REDIS_CLUSTER_NODES: credentials need a redis:// or rediss:// scheme before them")
    username = password = None
    if at:
        user, _, secret = userinfo.partition(":")  # as in a URL, `name@host` is a user name alone
        username, password = unquote(user) or None, unquote(secret) or None
    hosts = hosts.removesuffix("/").removesuffix("/0") if sep else hosts
    items = [item.strip() for item in hosts.split(",") if item.strip()]
    if not items:
        raise ValueError("REDIS_CLUSTER_NODES: no host:port")
    addresses = []
    for i, item in enumerate(items, 1):
        host, colon, port = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # [IPv6]:port
        if not (colon and host and port.isdigit() and 0 < int(port) < 65536) or any(c in item for c in "/?#"):
            raise ValueError(f"REDIS_CLUSTER_NODES: node {i} of {len(items)} is not host:port")
        addresses.append((host, int(port)))
    return ClusterNodes(tuple(addresses), scheme, username, password)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _unencoded_credentials(url: str) -> bool:
    """Whether a `/`, `?` or `#` in the user name or password ends the URL's
    authority early (every `@` must be in it): Python would take a part of
    them for the host or port, and quote it in error messages."""
    try:
        return url.count("@") != urlsplit(url).netloc.count("@")
    except ValueError:
        return False  # from_url will refuse it


def _tls(tls: bool, ca_file: str, setting: str) -> dict[str, Any]:
    """redis-py's TLS arguments: the CA file, checked now rather than at
    every connection attempt."""
    if not ca_file:
        return {}
    if not tls:
        raise ValueError(f"REDIS_TLS_CA_FILE is set but {setting} is not rediss:// (TLS)")
    try:
        ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"REDIS_TLS_CA_FILE {ca_file}: {e}") from None
    return {"ssl_ca_certs": ca_file}


@contextmanager
def storage_errors(sending: bool = False) -> Iterator[None]:
    """Turn Redis failures into StorageUnavailable, counting each kind.
    `sending`: around a write, whose message then ends in "; not stored"
    when the command certainly did not run, else in "; outcome unknown"."""
    try:
        yield
    except (redis.RedisError, RedisClusterException) as e:
        if not isinstance(e, QueuedPastDeadline):  # not Redis's failure: redis_commands_not_sent_total counts it
            REDIS_ERRORS.labels("ConnectionError" if isinstance(e, NoConnection) else type(e).__name__).inc()
        if isinstance(e, redis.exceptions.OutOfMemoryError):
            STORAGE_FULL.inc()
        reason = _unavailable_reason(e)
        if reason is None:
            raise  # a script error, say: a bug, not an outage
        if sending:
            reason += "; not stored" if _did_not_run(e) else "; outcome unknown"
        raise StorageUnavailable(reason) from e


_REFUSED = (
    AskError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    NotSent,
)


def _did_not_run(error: Exception) -> bool:
    """Redis refused the command before running it (redirected, its slot
    not served, busy with a script, out of memory, a read-only replica), or
    it was never sent."""
    return isinstance(error, _REFUSED) or _busy(error)


def _busy(error: Exception) -> bool:
    """BUSY: a script has run longer than busy-reply-threshold; Redis
    refuses every other command until it ends."""
    return type(error) is redis.ResponseError and str(error).startswith("BUSY ")


def _unavailable_reason(error: Exception) -> str | None:
    if isinstance(error, QueuedPastDeadline):
        return "the call's deadline left no time to reach storage"
    if isinstance(error, NoConnection):
        return "storage unavailable"
    if isinstance(error, (AskError, ClusterDownError, TryAgainError, RedisClusterException)):
        return "storage cluster unavailable (a shard is down or moving)"
    if _busy(error):
        return "storage busy (a long-running script)"
    if isinstance(error, redis.TimeoutError):
        return "storage timed out"
    if isinstance(error, redis.ConnectionError):
        return "storage unavailable"
    if isinstance(error, redis.exceptions.OutOfMemoryError):
        return "storage full"
    if isinstance(error, redis.exceptions.ReadOnlyError):
        return "storage is read-only"
    return None


def redacted(url: str) -> str:
    """`url`, or REDIS_CLUSTER_NODES, without credentials or options, for
    log lines and error messages: `redis://user:pw@h:1/0?password=x` gives
    `redis://h:1/0?…`, `rediss://user:pw@h1:1,h2:2` gives `rediss://h1:1,h2:2`.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    rest = rest.rpartition("@")[2]  # the credentials end at the last @
    rest, query, _ = rest.partition("?")  # options may hold a password
    return f"{scheme}{sep}{rest}{'?…' if query else ''}"
