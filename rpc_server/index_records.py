"""`python -m rpc_server.index_records`: a one-off after upgrading from a
version without per-chat record indexes.

Deleting a chat finds its idempotency records through the chat's record
index (im:v1:{a:b}:k, which send.lua keeps), without scanning the keyspace.
Records written by an older version are in no index, so deleting their chat
would leave them until they expire (IDEMPOTENCY_TTL_S after their send;
they are never honoured for a deleted chat, see send.lua). This scans the
keyspace once and adds each of them to its chat's index (index_record.lua).
Run it once after the upgrade, or simply wait IDEMPOTENCY_TTL_S. It is safe
while the servers run, and to run again. It reads the RPC server's settings
(REDIS_URL or REDIS_CLUSTER_NODES, ...; the same flags) and prints its
counts as one JSON object.
"""

from __future__ import annotations

import json
import sys
from typing import cast

import redis

from rpc_server import config
from rpc_server.redis_client import connect
from rpc_server.store import KEY_PREFIX, LuaScript, chat_of_key, idempotency_index_key

BATCH = 1000  # scripts per pipeline (the script is idempotent: a re-run by the client is harmless)


def main(argv: list[str] | None = None) -> int:
    cfg = config.load(argv)
    client = connect(cfg)
    script = LuaScript("index_record.lua")
    counts = {"records_seen": 0, "records_indexed": 0}
    try:
        client.script_load(script.source)
        batch: list[tuple[str, str]] = []
        for key in cast(list[str], client.scan_iter(match=f"{KEY_PREFIX}{{*}}:k:*", count=1000)):
            chat = chat_of_key(key)
            if chat is None or not key.startswith(idempotency_index_key(chat) + ":"):
                continue
            batch.append((key, idempotency_index_key(chat)))
            if len(batch) == BATCH:
                _index(client, script, batch, counts)
                batch = []
        _index(client, script, batch, counts)
    except (redis.RedisError, redis.exceptions.RedisClusterException) as e:
        print(json.dumps({**counts, "error": str(e)}))
        return 1
    print(json.dumps(counts))
    return 0


def _index(client: redis.Redis, script: LuaScript, batch: list[tuple[str, str]], counts: dict[str, int]) -> None:
    pipe = client.pipeline(transaction=False)
    for record, index in batch:
        pipe.evalsha(script.sha, 2, record, index)
    counts["records_seen"] += len(batch)
    counts["records_indexed"] += sum(int(indexed) for indexed in pipe.execute())


if __name__ == "__main__":
    sys.exit(main())
