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
from rpc_server.server import ThriftServer  # noqa: E402
from rpc_server.service import IMService  # noqa: E402
from rpc_server.store import MessageStore, connect_redis  # noqa: E402

log = logging.getLogger("rpc_server")


def main(argv: list[str] | None = None) -> int:
    cfg = config.load(argv)
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rpc = idl.load_rpc()
    client = connect_redis(
        cfg.redis_url, cfg.redis_timeout_ms / 1000, cfg.redis_pool_size, cfg.redis_pool_wait_ms / 1000
    )
    store = MessageStore(client, cfg.idempotency_ttl_s)
    service = IMService(rpc, store, cfg.max_text_chars, cfg.max_pull_limit)
    server = ThriftServer(rpc, service, cfg.host, cfg.port, cfg.max_connections, cfg.idle_timeout_s)
    server.start()
    log.info("IMService listening on %s:%d (Redis %s)", *server.address, _redacted(cfg.redis_url))
    try:
        store.ping()
    except Exception as e:
        log.warning("Redis not reachable yet (%s); answering 503 until it is", e)

    stopping = Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stopping.set)
    stopping.wait()
    log.info("stopping")
    server.stop(timeout=5)
    return 0


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


if __name__ == "__main__":
    sys.exit(main())
