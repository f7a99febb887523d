"""`python -m rpc_server.tools.index_records`: a one-off after upgrading from a
version without per-chat record indexes.

Deleting a chat finds its idempotency records through the chat's record
index (which send.lua keeps), without scanning the keyspace.
Records written by an older version are in no index, so deleting their chat
would leave them until they expire (IDEMPOTENCY_TTL_S after their send;
they are never honoured for a deleted chat, see send.lua). This scans the
keyspace once and adds each of them to its chat's index
(rpc_server.storage.record_index).
Run it once after the upgrade, or simply wait IDEMPOTENCY_TTL_S. It is safe
while the servers run, and to run again. It reads the RPC server's settings
(REDIS_URL or REDIS_CLUSTER_NODES, ...; the same flags) and prints its
counts as one JSON object.
"""

from __future__ import annotations

import json

import redis

from rpc_server import config
from rpc_server.storage.record_index import index_old_records
from rpc_server.storage.redis_client import connect
from rpc_server.tools import run


def main(argv: list[str] | None = None) -> int:
    cfg = config.load(argv)
    counts = {"records_seen": 0, "records_indexed": 0}
    try:
        index_old_records(connect(cfg), counts)
    except (redis.RedisError, redis.exceptions.RedisClusterException) as e:
        print(json.dumps({**counts, "error": str(e)}))
        return 1
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    run(main, "rpc_server.tools.index_records")
