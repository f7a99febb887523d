"""`python -m rpc_server.tools.sweep`: apply the retention settings to every chat
now. Each send trims only its own chat, so a chat nobody writes to keeps
its history until its next send; run this (from cron, say) to bound every
chat. It reads the RPC server's settings (RETENTION_MAX_AGE_S,
RETENTION_MAX_MESSAGES, REDIS_URL ...; the same flags), is safe while the
servers run, and prints its counts as one JSON object. While Redis is out
of memory it trims nothing and exits 1 (see sweep.lua): delete chats or
raise maxmemory first (docs/operations.md).
"""

from __future__ import annotations

import json
import sys

from gevent import monkey

monkey.patch_all()  # the store's pipelining runs on gevent, as in the server

from rpc_server import config  # noqa: E402
from rpc_server.errors import StorageUnavailable  # noqa: E402
from rpc_server.storage.redis_client import connect  # noqa: E402
from rpc_server.storage.store import MessageStore  # noqa: E402
from rpc_server.tools import run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg = config.load(
        argv,
        prog="python -m rpc_server.tools.sweep",
        description="Apply the retention settings to every chat now; print the counts as one JSON object.",
        shown=("retention_max_age_s", "retention_max_messages", *config.REDIS_SETTINGS),
    )
    if not (cfg.retention_max_age_s or cfg.retention_max_messages):
        print("no retention configured (RETENTION_MAX_AGE_S, RETENTION_MAX_MESSAGES): nothing to do", file=sys.stderr)
        return 2
    store = MessageStore(
        connect(cfg),
        cfg.idempotency_ttl_s,
        retention_max_age_s=cfg.retention_max_age_s,
        retention_max_messages=cfg.retention_max_messages,
    )
    counts = {"chats": 0, "chats_trimmed": 0, "messages_trimmed": 0}
    trimmed = 0  # in the chat being trimmed, not yet counted
    try:
        for chat in store.chats():  # (the SCAN too may fail: StorageUnavailable)
            while batch := store.apply_retention(chat):  # a batch at a time (retention.lua)
                trimmed += batch
            counts["chats"] += 1
            counts["chats_trimmed"] += trimmed > 0
            counts["messages_trimmed"] += trimmed
            trimmed = 0
    except StorageUnavailable as e:  # full (it trims nothing then), down or too slow: stop
        print(json.dumps({**counts, "messages_trimmed": counts["messages_trimmed"] + trimmed, "error": e.msg}))
        return 1
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    run(main, "rpc_server.tools.sweep")
