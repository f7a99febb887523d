"""Deleting a chat, and erasing a user (the admin calls).

Deleting a chat removes its stream (every message), its trim mark, its
idempotency records and its entry in both members' conversation lists. It
costs what the chat holds, never the size of the database: the records are
found through the chat's record index (im:v1:{a:b}:k, kept by send.lua),
not by a SCAN. (Records written before the index existed are not in it:
`python -m rpc_server.tools.index_records` adds them, or they expire within
IDEMPOTENCY_TTL_S; an erasure finds them anyway.)

Erasing a user deletes every chat the user is in, then the user's own list
and rate-limit state. The chats are found through the user's conversation
list and, since that list may lag (see conversations.py), also by a SCAN
over the chat keys whose names contain the user: a chat the list missed is
erased all the same, and so is any other key of the user's chats (records
of an older version, a migration's leftover copy). That is O(all keys), so
an erasure works in bounded steps within a time budget given by the caller
(the HTTP tier's own deadline for the route, not the 1 s RPC one): a list
page or one SCAN batch (SCAN_COUNT keys) at a time, checking the budget
between steps. When the budget runs out it answers "not done" and stores
where its SCAN stands (one cursor per Redis node, in im:v1:u:{user}:e, for
an hour); the next call for the same user, on any RPC server, resumes
there. SCAN's guarantee holds across the calls: every key that exists from
the first call to the last is returned.

Deletion removes what exists when it runs; a send that arrives afterwards
starts the chat anew (an idempotency record of the deleted chat is not
honoured then: see send.lua).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis

from rpc_server.chat_id import Chat, parse_chat_or_none
from rpc_server.storage.keys import (
    chat_of_key,
    erasure_progress_key,
    idempotency_index_key,
    rate_key,
    stream_key,
    trim_mark_key,
    user_chat_keys_pattern,
    user_chats_key,
)
from rpc_server.storage.redis_client import storage_errors
from rpc_server.storage.store import MessageStore

SCAN_COUNT = 1000  # keys one SCAN step looks at
LIST_PAGE = 100  # conversation-list entries read at a time
RECORD_BATCH = 1000  # idempotency records deleted per command
PROGRESS_TTL_S = 3600  # an interrupted erasure resumes within this long, else starts over


@dataclass
class Erased:
    chats: int = 0
    messages: int = 0
    done: bool = True  # False: the budget ran out; call again to go on

    def add(self, other: Erased) -> None:
        self.chats += other.chats
        self.messages += other.messages


class Erasure:
    def __init__(self, store: MessageStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock

    def delete_chat(self, chat: Chat) -> Erased:
        with storage_errors():
            return self._delete_chat(chat)

    def erase_user(self, user: str, budget_s: float) -> Erased:
        """Delete every chat `user` is in, then the user's own keys; stop
        after the step during which `budget_s` ran out (done False)."""
        deadline = self._clock() + budget_s
        erased = Erased(done=False)
        steps = 0

        def time_left() -> bool:
            nonlocal steps
            steps += 1
            return steps == 1 or self._clock() < deadline  # at least one step per call

        with storage_errors():
            if not self._delete_listed_chats(user, erased, time_left):
                return erased
            nodes = self._nodes()
            cursors = self._load_progress(user, set(nodes))
            while cursors:
                if not time_left():
                    self._save_progress(user, cursors)
                    return erased
                name = min(cursors)
                cursor, keys = nodes[name].scan(cursors[name], match=user_chat_keys_pattern(user), count=SCAN_COUNT)
                self._delete_found(user, cast(list[str], keys), erased)
                if int(cursor) == 0:
                    del cursors[name]
                else:
                    cursors[name] = int(cursor)
            self._store.client.delete(user_chats_key(user), rate_key(user), erasure_progress_key(user))
        erased.done = True
        return erased

    def _delete_listed_chats(self, user: str, erased: Erased, time_left: Callable[[], bool]) -> bool:
        """The chats in the user's list, a page at a time (each deletion
        takes its entry out of the list). False if time ran out."""
        client = self._store.client
        key = user_chats_key(user)
        while listed := cast(list[str], client.zrange(key, 0, LIST_PAGE - 1)):
            for entry in listed:
                if not time_left():
                    return False
                chat = parse_chat_or_none(entry)
                if chat is None or not chat.has_member(user):  # not a chat of the user's: only the entry goes
                    client.zrem(key, entry)
                else:
                    erased.add(self._delete_chat(chat))
                    client.zrem(key, entry)  # gone already, unless the entry was not canonical
        return True

    def _delete_found(self, user: str, keys: list[str], erased: Erased) -> None:
        """Keys a SCAN step returned: every chat of the user's among them is
        deleted, and so is any key of it the deletion did not know of."""
        by_chat: dict[Chat, list[str]] = defaultdict(list)
        for key in keys:
            chat = chat_of_key(key)
            if chat is not None and chat.has_member(user):
                by_chat[chat].append(key)
        for chat, chat_keys in by_chat.items():
            erased.add(self._delete_chat(chat))
            self._store.client.delete(*chat_keys)

    def _delete_chat(self, chat: Chat) -> Erased:
        """The stream first (counting its messages), then its trim mark and
        idempotency records, then its entries in both members' lists: a list
        read in between shows no such chat."""
        erased = Erased()
        client = self._store.client
        key = stream_key(chat)
        messages = int(client.xlen(key))
        if client.unlink(key):  # UNLINK: a long stream is freed in the background
            erased.chats, erased.messages = 1, messages
        client.delete(trim_mark_key(chat))
        self._delete_records(chat)
        for member in chat.members:
            client.zrem(user_chats_key(member), chat.id)
        return erased

    def _delete_records(self, chat: Chat) -> None:
        """The records the chat's index names, a batch at a time; the index
        goes with its last member."""
        client = self._store.client
        index = idempotency_index_key(chat)
        prefix = index + ":"
        while batch := cast(list[str], client.zrange(index, 0, RECORD_BATCH - 1)):
            client.delete(*[prefix + member for member in batch])
            client.zrem(index, *batch)

    def _nodes(self) -> dict[str, redis.Redis]:
        """The Redis servers to scan, by name: each master of a cluster."""
        client = self._store.client
        if isinstance(client, redis.RedisCluster):
            return {node.name: cast(redis.Redis, client.get_redis_connection(node)) for node in client.get_primaries()}
        return {"": client}

    def _load_progress(self, user: str, nodes: set[str]) -> dict[str, int]:
        """Where an interrupted erasure's SCAN stands on each node not yet
        done; from the start when there is none, or when the nodes changed
        (a failover: the cursors belong to other servers)."""
        stored = self._store.client.get(erasure_progress_key(user))
        if stored:
            try:
                cursors = {str(name): int(cursor) for name, cursor in json.loads(stored)["cursors"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                cursors = {}
            if cursors and set(cursors) <= nodes:
                return cursors
        return dict.fromkeys(nodes, 0)

    def _save_progress(self, user: str, cursors: dict[str, int]) -> None:
        value: dict[str, Any] = {"cursors": cursors}
        self._store.client.set(erasure_progress_key(user), json.dumps(value), ex=PROGRESS_TTL_S)
