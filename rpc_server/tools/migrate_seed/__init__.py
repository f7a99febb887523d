"""`python -m rpc_server.tools.migrate_seed`: copy the seed's messages into our layout.

In four steps, a module each: parse (the seed's members into messages),
plan (where each goes in the chat's stream), migration (chat by chat,
writing through rpc_server.storage.seed_import, which owns every key) and
report (the counts).

The seed (the Go reference) kept each chat as a Redis sorted set under the
key "a:b" (the two member names lowercased and sorted), one member per
message: Go's json.Marshal of {"sender", "message", "timestamp"}, scored by
the timestamp in seconds. We keep a chat as a stream of entries
"<send_time>-0" with send_time in microseconds (rpc_server.storage.keys).

What it does, chat by chat:

* finds the seed's chats with SCAN: keys named "<m1>:<m2>" that parse_chat
  accepts and that hold a sorted set; our own keys are never taken for the
  seed's, any other key is reported as skipped. Keys naming the same chat
  ("a:b", "B:a") are one chat;
* reads the members in the sorted set's own order (score, then member bytes:
  ZRANGE order) and gives each valid one the send_time
  timestamp * 10**6 + its position within that second, so messages keep
  their order, and the seed's second is the send_time's second. (Beyond
  10**6 messages in one second, a send_time is its predecessor's + 1, as in
  send.lua.) Invalid members (not the seed's JSON, a sender who is not in the
  chat, ...) are counted by reason and skipped. So are members dated more
  than --max-future-s (default an hour) after the target Redis's clock: a
  chat's send_times only grow, so one far-future message (a row dated 2258,
  or milliseconds in the seconds field) would push every later send in the
  chat into that future;
* skips the messages the chat's stream already holds (same send_time, sender
  and text): a second run adds nothing. A send_time taken by another message
  moves the seed's message to the next free one;
* appends the rest with XADD when they are all newer than the stream's last
  ID. Otherwise (the chat was already in use here, so it holds newer
  messages) it merges: writes the stream's entries and the seed's, in order,
  into a copy in the same hash slot, then swaps the
  copy in (migrate_seed.lua) only if the stream has not changed since it was
  read; else reads again and retries, a few times, then reports the chat as
  failed. Existing messages keep their send_times;
* adds the chat to both members' conversation lists (ZADD GT, with the
  chat's last send_time).

Messages that retention would have removed are not added: those older than
the stream's oldest retained message once the stream has lost any (trimmed
already: adding them again would bring back what retention removed), and
those older than RETENTION_MAX_AGE_S.
RETENTION_MAX_MESSAGES applies at the chat's next send.

The seed's keys are only read: delete them once the result is checked.
The target Redis is the RPC server's (REDIS_URL, REDIS_CLUSTER_NODES, ...,
from the environment); the seed's Redis is --source-url, by default the
same Redis (not in cluster mode, where it is required).
"""
