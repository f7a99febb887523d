"""`python -m rpc_server`: serve IMService over Thrift, storing in Redis."""

from gevent import monkey

monkey.patch_all()  # before redis and socket are imported anywhere

import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402

import idl  # noqa: E402
from rpc_server import config  # noqa: E402
from rpc_server.message_check import Limits  # noqa: E402
from rpc_server.observability import configure_logging, serve_metrics  # noqa: E402
from rpc_server.server import ThriftServer  # noqa: E402
from rpc_server.service import IMService  # noqa: E402
from rpc_server.store import MessageStore, connect_redis  # noqa: E402

log = logging.getLogger("rpc_server")


def main(argv: list[str] | None = None) -> int:
    cfg = config.load(argv)
    configure_logging(cfg.log_level, bool(cfg.log_requests))
    rpc = idl.load_rpc()
    client = connect_redis(
        cfg.redis_url,
        cfg.redis_timeout_ms / 1000,
        cfg.redis_pool_size,
        cfg.redis_pool_wait_ms / 1000,
        cfg.redis_cluster_nodes,
    )
    store = MessageStore(
        client, cfg.idempotency_ttl_s, cfg.rate_limit_per_s, cfg.rate_limit_burst, cfg.redis_pipeline_lanes
    )
    service = IMService(rpc, store, cfg.max_text_chars, cfg.max_pull_limit)
    limits = Limits(max_bytes=cfg.max_message_bytes, max_string=cfg.max_message_bytes)
    server = ThriftServer(
        rpc, service, cfg.host, cfg.port, cfg.max_connections, cfg.idle_timeout_s, cfg.message_timeout_s, limits
    )
    serve_metrics(cfg.host, cfg.metrics_port)  # first: an open Thrift port means fully started
    server.start()
    log.info(
        "IMService listening on %s:%d (Redis %s, metrics :%d)",
        *server.address,
        cfg.redis_cluster_nodes or _redacted(cfg.redis_url),
        cfg.metrics_port,
    )
    try:
        store.ping()
    except Exception as e:
        log.warning("Redis not reachable yet (%s); answering 503 until it is", e)

    stopping = Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stopping.set)
    stopping.wait()
    log.info("stopping: finishing calls in flight (at most %.0f s)", cfg.shutdown_grace_s)
    server.stop(cfg.shutdown_grace_s)
    log.info("stopped")
    return 0


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


if __name__ == "__main__":
    sys.exit(main())
