"""Conversation lists: for each user, the chats they take part in, most
recently active first, each with its last message.

Each user has a sorted set (`store.user_chats_key`): member the chat ID,
score the chat's last send_time, updated with `ZADD GT` on every send,
which is idempotent and order-free: a repeated or late update never moves a
chat back, so replays and retries may simply do it again.

On one Redis, the send script itself updates both members' sets, atomically
with the append. In a Redis Cluster it cannot: a user's set lives on the
user's shard, not the chat's, so `touch` updates them after the append. If
the RPC server or Redis fails between the two, the message is stored and
acknowledged, but the chat's entry lags (a new chat is missing from the
list) until the next send in that chat, an idempotent retry of the same
send, or `python -m rpc_server.tools.reindex`, which rebuilds every list from the
chats.

Paging is by cursor, like pull: the cursor is a last send_time, inclusive,
0 for the most recent. A chat that becomes active while a client pages moves
to the top, above the cursor: it is not repeated on later pages, and the
first page shows it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from rpc_server.chat_id import Chat, parse_chat_or_none
from rpc_server.paging import Page
from rpc_server.storage.keys import ALL_USER_LISTS, stream_key, user_chats_key
from rpc_server.storage.redis_client import storage_errors
from rpc_server.storage.scripts import LuaScript
from rpc_server.storage.store import MessageStore, StoredMessage

log = logging.getLogger(__name__)

INDEX_FAILURES = Counter(
    "conversation_index_failures_total",
    "Sends stored and acknowledged whose conversation-list update failed (repaired by the next send or reindex)",
)


@dataclass(frozen=True)
class ChatSummary:
    chat: Chat
    last_send_time: int
    last_message: StoredMessage | None


class Conversations:
    def __init__(self, store: MessageStore) -> None:
        self._store = store
        self._remove_if_unchanged = LuaScript("remove_if_unchanged.lua")

    def touch(self, chat: Chat, send_time: int) -> None:
        """Record that `chat` was active at `send_time`, in both members'
        lists, unless the append did already. Best effort: the message is
        already stored, so any failure (a Redis error, a cluster slot
        served by nobody, a bug) is counted and logged, never raised: the
        send is answered 200."""
        if self._store.updates_lists_on_append:
            return
        try:
            self._update(chat, send_time)
        except Exception as e:
            INDEX_FAILURES.inc()
            log.warning("conversation list of %s not updated: %r", chat.id, e)

    def _update(self, chat: Chat, send_time: int) -> None:
        commands = [("ZADD", user_chats_key(m), "GT", send_time, chat.id) for m in chat.members]
        failures = [r for r in self._store.run_many(commands) if isinstance(r, Exception)]
        if failures:
            INDEX_FAILURES.inc()
            log.warning("conversation list of %s not updated: %s", chat.id, failures[0])

    def list(self, user: str, cursor: int, limit: int) -> Page[ChatSummary]:
        """Up to `limit` of `user`'s chats last active at or before `cursor`
        (0: the most recent), most recent first.

        Chats whose last send_time ties with the first one left out are left
        out too, so the next page (from that send_time, inclusive) holds all
        of them: a page may then be shorter than `limit`, never repeats or
        skips a chat. Entries whose chat no longer exists are not shown.
        """
        key = user_chats_key(user)
        top = "+inf" if cursor == 0 else str(cursor)
        with storage_errors():
            pairs = self._store.run("ZRANGE", key, top, "-inf", "BYSCORE", "REV", "LIMIT", 0, limit + 1, "WITHSCORES")
            scored = [(member, int(score)) for member, score in pairs]
            has_more = len(scored) > limit
            next_cursor = 0
            if has_more:
                next_cursor = scored[limit][1]
                scored = [(m, s) for m, s in scored[:limit] if s != next_cursor]
                if not scored:  # more than `limit` chats share one send_time: all of them, then below it
                    tied = self._store.run("ZRANGE", key, next_cursor, next_cursor, "BYSCORE")
                    scored = [(member, next_cursor) for member in tied]
                    next_cursor -= 1
            listed = [(chat, score) for chat, score in ((parse_chat_or_none(m), s) for m, s in scored) if chat]
            last = self._store.last_messages([chat for chat, _ in listed])
        summaries = [
            ChatSummary(chat, score, message)
            for (chat, score), message in zip(listed, last, strict=True)
            if message is not None
        ]
        return Page(summaries, has_more, next_cursor)

    def rebuild(self) -> dict[str, int]:
        """Rebuild every conversation list from the chats (the repair
        command): add each chat to both members' lists with its last
        send_time, then drop entries of chats that no longer exist. Safe
        while serving: additions are ZADD GT, and an entry is dropped only if
        its score is still the one read (a new send in between keeps it)."""
        counts = {"chats": 0, "entries_removed": 0}
        client = self._store.client
        with storage_errors():
            for chat in self._store.chats():
                [message] = self._store.last_messages([chat])
                if message is not None:
                    self._update(chat, message.send_time)
                    counts["chats"] += 1
            for key in client.scan_iter(match=ALL_USER_LISTS, count=1000):
                counts["entries_removed"] += self._drop_stale(key)
        return counts

    def _drop_stale(self, key: str) -> int:
        removed = 0
        entries: list[Any] = self._store.client.zrange(key, 0, -1, withscores=True)
        for member, score in entries:
            chat = parse_chat_or_none(member)
            if chat is not None and self._store.client.exists(stream_key(chat)):
                continue
            removed += int(self._store.eval_script(self._remove_if_unchanged, [key], [member, _score_text(score)]))
        return removed


def _score_text(score: float) -> str:
    """A score as Redis prints it (ZSCORE), for an exact comparison in Lua."""
    return str(int(score)) if score == int(score) else repr(score)
