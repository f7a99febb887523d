"""Connecting to Redis, and what its failures mean to our callers.

Every failure mode is bounded and explicit (short timeouts, a blocking pool
with a bounded wait, no automatic retries), and every Redis error that means
"storage is unavailable" becomes StorageUnavailable with a message fit for a
client: never the URL, which may hold credentials.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.exceptions import ClusterDownError, RedisClusterException, TryAgainError
from redis.retry import Retry

from rpc_server.config import Config
from rpc_server.errors import StorageUnavailable
from rpc_server.observability import REDIS_ERRORS


def connect(cfg: Config) -> redis.Redis:
    """The Redis (or Redis Cluster) client `cfg` describes."""
    return connect_redis(
        cfg.redis_url,
        cfg.redis_timeout_ms / 1000,
        cfg.redis_pool_size,
        cfg.redis_pool_wait_ms / 1000,
        cfg.redis_cluster_nodes,
    )


def connect_redis(
    url: str, timeout_s: float, pool_size: int, pool_wait_s: float, cluster_nodes: str = ""
) -> redis.Redis:
    """A Redis client whose every failure mode is bounded and explicit.

    - socket and connect timeouts and the wait for a pooled connection are
      all short, so that they fit within the caller's RPC deadline (1 s);
    - a BlockingConnectionPool waits for a free connection instead of
      raising as soon as `pool_size` are busy, but only for `pool_wait_s`;
    - no command is retried (redis-py retries by default, which after a
      timeout could store a message twice).

    With `cluster_nodes` ("host:port,host:port"), a Redis Cluster client
    (redis-py's RedisCluster) with the same bounds, per node. It follows
    MOVED/ASK redirections, which are safe: the command did not run.
    """
    bounds: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
    }
    if cluster_nodes:
        startup = [
            ClusterNode(host, int(port))
            for host, _, port in (n.strip().rpartition(":") for n in cluster_nodes.split(","))
        ]
        cluster = redis.RedisCluster(
            startup_nodes=startup,
            max_connections=pool_size,
            connection_pool_class=functools.partial(redis.BlockingConnectionPool, timeout=pool_wait_s),
            **bounds,
        )
        return cast(redis.Redis, cluster)  # the commands the store uses are the same
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=pool_size, timeout=pool_wait_s, **bounds)
    return redis.Redis(connection_pool=pool)


@contextmanager
def storage_errors() -> Iterator[None]:
    """Turn Redis failures into StorageUnavailable, counting each kind."""
    try:
        yield
    except (redis.RedisError, RedisClusterException) as e:
        REDIS_ERRORS.labels(type(e).__name__).inc()
        reason = _unavailable_reason(e)
        if reason is None:
            raise  # a script error, say: a bug, not an outage
        raise StorageUnavailable(reason) from e


def _unavailable_reason(error: Exception) -> str | None:
    if isinstance(error, (ClusterDownError, TryAgainError, RedisClusterException)):
        return "storage cluster unavailable (a shard is down or moving)"
    if isinstance(error, redis.TimeoutError):
        return "storage timed out; the outcome of a send is unknown"
    if isinstance(error, redis.ConnectionError):
        return "storage unavailable"
    if isinstance(error, redis.exceptions.OutOfMemoryError):
        return "storage full"
    if isinstance(error, redis.exceptions.ReadOnlyError):
        return "storage is read-only"
    return None


def redacted(url: str) -> str:
    """`url` without its credentials, for log lines."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url
