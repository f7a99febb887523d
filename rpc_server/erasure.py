"""Deleting a chat, and erasing a user (the admin calls).

Deleting a chat removes its stream (every message), its trim mark, its
idempotency records and its entry in both members' conversation lists. Erasing a user deletes
every chat the user is in, then the user's own list and rate-limit state.

The chats of a user are found through the user's conversation list and,
since that list may lag (see conversations.py), also by one SCAN over the
chat keys: a chat the list missed is erased all the same. The SCAN also
finds a chat's idempotency records (each is a key of its own, expiring on
its own), so an admin call costs O(all keys): fine for a rare operation, and
it keeps every send free of bookkeeping for it.

Deletion removes what exists when it runs; a send that arrives afterwards
starts the chat anew (an idempotency record of the deleted chat is not
honoured then: see send.lua).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from rpc_server.chat_id import Chat, parse_chat_or_none
from rpc_server.redis_client import storage_errors
from rpc_server.store import KEY_PREFIX, MessageStore, chat_of_key, rate_key, stream_key, trim_mark_key, user_chats_key


@dataclass
class Erased:
    chats: int = 0
    messages: int = 0


class Erasure:
    def __init__(self, store: MessageStore) -> None:
        self._store = store

    def delete_chat(self, chat: Chat) -> Erased:
        with storage_errors():
            erased = self._delete_chats({chat})
            self._delete_keys(f"{KEY_PREFIX}{{{chat.id}}}:k:*", lambda c: True)
        return erased

    def erase_user(self, user: str) -> Erased:
        """Delete every chat `user` is in, then the user's own keys."""
        client = self._store.client
        with storage_errors():
            listed = cast(list[str], client.zrange(user_chats_key(user), 0, -1))
            chats = {c for c in map(parse_chat_or_none, listed) if c is not None}
            for key in client.scan_iter(match=f"{KEY_PREFIX}{{*}}:m", count=1000, _type="stream"):
                chat = chat_of_key(key)
                if chat is not None and chat.has_member(user):
                    chats.add(chat)
            erased = self._delete_chats(chats)
            self._delete_keys(f"{KEY_PREFIX}{{*}}:k:*", lambda c: c.has_member(user))
            client.delete(user_chats_key(user), rate_key(user))
        return erased

    def _delete_chats(self, chats: set[Chat]) -> Erased:
        """Each chat's stream first (counting its messages), then its entries
        in both members' lists: a list read in between shows no such chat."""
        erased = Erased()
        client = self._store.client
        for chat in chats:
            key = stream_key(chat)
            messages = int(client.xlen(key))
            if client.delete(key):
                erased.chats += 1
                erased.messages += messages
            client.delete(trim_mark_key(chat))
            for member in chat.members:
                client.zrem(user_chats_key(member), chat.id)
        return erased

    def _delete_keys(self, pattern: str, belongs: Callable[[Chat], bool]) -> None:
        client = self._store.client
        for key in client.scan_iter(match=pattern, count=1000):
            chat = chat_of_key(key)
            if chat is not None and belongs(chat):
                client.delete(key)
