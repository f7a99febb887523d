"""`python -m rpc_server.tools.reindex`: rebuild every user's conversation list
from the chats stored in Redis (see conversations.py for when a list can lag).

Safe while the servers run. It reads the same settings as the RPC server
(REDIS_URL or REDIS_CLUSTER_NODES, ...; the same flags), and prints what it
did as one JSON object.
"""

from __future__ import annotations

import json

from gevent import monkey

monkey.patch_all()  # the store's pipelining runs on gevent, as in the server

from rpc_server import config  # noqa: E402
from rpc_server.storage.conversations import Conversations  # noqa: E402
from rpc_server.storage.redis_client import connect  # noqa: E402
from rpc_server.storage.store import MessageStore  # noqa: E402
from rpc_server.tools import run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg = config.load(
        argv,
        prog="python -m rpc_server.tools.reindex",
        description="Rebuild every user's conversation list from the chats in Redis; print what it did as JSON.",
        shown=(*config.REDIS_SETTINGS, "redis_pipeline_lanes"),
    )
    store = MessageStore(connect(cfg), cfg.idempotency_ttl_s, pipeline_lanes=cfg.redis_pipeline_lanes)
    counts = Conversations(store).rebuild()
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    run(main, "rpc_server.tools.reindex")
