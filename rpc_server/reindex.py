"""`python -m rpc_server.reindex`: rebuild every user's conversation list
from the chats stored in Redis (see conversations.py for when a list can lag).

Safe while the servers run. It reads the same settings as the RPC server
(REDIS_URL or REDIS_CLUSTER_NODES, ...; the same flags), and prints what it
did as one JSON object.
"""

from __future__ import annotations

import json
import sys

from gevent import monkey

monkey.patch_all()  # the store's pipelining runs on gevent, as in the server

from rpc_server import config  # noqa: E402
from rpc_server.conversations import Conversations  # noqa: E402
from rpc_server.redis_client import connect  # noqa: E402
from rpc_server.store import MessageStore  # noqa: E402
from settings import StartupError, fail  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg = config.load(
        argv,
        prog="python -m rpc_server.reindex",
        description="Rebuild every user's conversation list from the chats in Redis; print what it did as JSON.",
        shown=(*config.REDIS_SETTINGS, "redis_pipeline_lanes"),
    )
    store = MessageStore(connect(cfg), cfg.idempotency_ttl_s, pipeline_lanes=cfg.redis_pipeline_lanes)
    counts = Conversations(store).rebuild()
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StartupError as e:  # a setting out of range: one line, exit status 2, as the servers do
        fail("rpc_server.reindex", e)
