"""Adding idempotency records written by an older version, which kept no
per-chat record index, to their chat's index (index_record.lua), so that
deleting the chat finds them (erasure.py). A scan of the whole keyspace,
for the one-off tool rpc_server.tools.index_records; idempotent, and safe
while the servers run.
"""

from __future__ import annotations

from typing import cast

import redis

from rpc_server.storage.keys import ALL_IDEMPOTENCY_RECORDS, chat_of_key, idempotency_index_key
from rpc_server.storage.scripts import LuaScript

BATCH = 1000  # scripts per pipeline (the script is idempotent: a re-run by the client is harmless)


def index_old_records(client: redis.Redis, counts: dict[str, int]) -> None:
    """Index every record; `counts` (records_seen, records_indexed) grows as
    it goes, so that a Redis error (raised) leaves what was done in it."""
    script = LuaScript("index_record.lua")
    client.script_load(script.source)
    batch: list[tuple[str, str]] = []
    for key in cast(list[str], client.scan_iter(match=ALL_IDEMPOTENCY_RECORDS, count=1000)):
        chat = chat_of_key(key)
        if chat is None or not key.startswith(idempotency_index_key(chat) + ":"):
            continue
        batch.append((key, idempotency_index_key(chat)))
        if len(batch) == BATCH:
            _index(client, script, batch, counts)
            batch = []
    _index(client, script, batch, counts)


def _index(client: redis.Redis, script: LuaScript, batch: list[tuple[str, str]], counts: dict[str, int]) -> None:
    pipe = client.pipeline(transaction=False)
    for record, index in batch:
        pipe.execute_command(*script.command([record, index], []))
    counts["records_seen"] += len(batch)
    counts["records_indexed"] += sum(int(indexed) for indexed in pipe.execute())
