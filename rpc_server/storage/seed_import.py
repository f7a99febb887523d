"""The Redis side of the seed migration (rpc_server.tools.migrate_seed):
reading the seed's chats, and writing their messages into ours.

The seed kept each chat as a sorted set under the key "a:b"; those keys
are only read (SeedSource). Our side (ImportTarget) appends to a chat's
stream when every new message is newer than its last entry, and otherwise
writes a merged copy (keys.migrating_key, in the chat's hash slot) that
migrate_seed.lua swaps in only if the stream has not changed since it was
read. Either way a concurrent send is never lost: the chat is reported as
changed (ChatChanged), and the caller reads it again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import redis

from rpc_server.chat_id import Chat, parse_chat
from rpc_server.errors import InvalidArgument
from rpc_server.storage.keys import is_ours, migrating_key, stream_key, user_chats_key
from rpc_server.storage.scripts import LuaScript

US_PER_S = 1_000_000
READ_CHUNK = 10_000  # members / entries per ZRANGE or XRANGE
WRITE_BATCH = 1_000  # commands per pipeline
SCAN_COUNT = 1_000

EntryId = tuple[int, int]  # a stream entry's (ms, seq): here (send_time, 0)
Entry = tuple[str, dict[str, str]]  # as XRANGE returns it
NewMessage = tuple[int, str, str]  # (send_time, sender, text)


class ChatChanged(Exception):
    """The chat's stream changed while it was being migrated: read it again."""


def parse_id(entry_id: str) -> EntryId:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def trimmed_floor(state: Mapping[str, Any]) -> int:
    """The newest send_time that retention (or a deletion) may have removed
    from a stream, from its XINFO STREAM: 0 if it never lost an entry.
    entries-added counts every entry ever added; trimming takes the oldest
    first, so all that is gone lies before the first one left. (This also
    covers a trim by hand, which leaves no trim mark; XTRIM does not set
    max-deleted-entry-id on Redis 7.0, XDEL does.)"""
    deleted = parse_id(state["max-deleted-entry-id"])[0]
    if int(state["entries-added"]) <= int(state["length"]):
        return deleted
    first = state.get("first-entry")
    if not first:
        return max(deleted, parse_id(state["last-generated-id"])[0])
    return max(deleted, parse_id(first[0])[0] - 1)


def source_client(url: str, timeout_s: float, tls_ca_file: str = "") -> redis.Redis:
    """The seed's Redis, with bytes replies (a member may be anything)."""
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    if tls_ca_file and url.startswith("rediss://"):
        options["ssl_ca_certs"] = tls_ca_file
    return redis.Redis.from_url(url, decode_responses=False, **options)


class SeedSource:
    """The seed's Redis (bytes replies), read only."""

    def __init__(self, client: redis.Redis, match: str = "*") -> None:
        self.client = client
        self.match = match

    def chats(self, skip: Callable[[bytes, str], None]) -> dict[str, tuple[Chat, list[bytes]]]:
        """The seed's chats, {chat ID: (chat, its keys)}: keys naming the same
        chat ("a:b", "B:a") are one chat. Each other key is passed to `skip`
        with the reason; ours are passed over in silence."""
        candidates: list[tuple[bytes, Chat]] = []
        for key in cast(Iterable[bytes], self.client.scan_iter(match=self.match, count=SCAN_COUNT)):
            if is_ours(key):
                continue
            try:
                candidates.append((key, parse_chat(key.decode("utf-8"))))
            except (UnicodeDecodeError, InvalidArgument):
                skip(key, "not a chat name")
        chats: dict[str, tuple[Chat, list[bytes]]] = {}
        for start in range(0, len(candidates), WRITE_BATCH):
            batch = candidates[start : start + WRITE_BATCH]
            pipe = self.client.pipeline(transaction=False)
            for key, _ in batch:
                pipe.type(key)
            for (key, chat), kind in zip(batch, pipe.execute(), strict=True):
                kind = kind.decode() if isinstance(kind, bytes) else str(kind)
                if kind == "zset":
                    chats.setdefault(chat.id, (chat, []))[1].append(key)
                elif kind != "none":  # "none": deleted since the SCAN
                    skip(key, f"a {kind}, not a sorted set")
        return chats

    def members(self, key: bytes) -> list[tuple[bytes, float]]:
        """Every (member, score) of a seed chat's sorted set."""
        members: list[tuple[bytes, float]] = []
        start = 0
        while True:
            chunk = cast(
                list[tuple[bytes, float]],
                self.client.zrange(key, start, start + READ_CHUNK - 1, withscores=True),
            )
            members += chunk
            if len(chunk) < READ_CHUNK:
                return members
            start += READ_CHUNK


class ImportTarget:
    """Our Redis (text replies, as redis_client.connect makes it); with
    `dry_run`, writes nothing and tells what would change."""

    def __init__(self, client: redis.Redis, dry_run: bool = False) -> None:
        self.client = client
        self.dry_run = dry_run
        self._swap = LuaScript("migrate_seed.lua")

    def now_us(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * US_PER_S + int(micros)

    def stream_state(self, chat: Chat) -> dict[str, Any] | None:
        """The chat's stream's XINFO STREAM fields, or None if it has none."""
        try:
            info = self.client.xinfo_stream(stream_key(chat))
        except redis.ResponseError as e:
            if "no such key" in str(e).lower():
                return None
            raise
        return dict(info)

    def entries(self, chat: Chat, first: str, last: str) -> list[Entry]:
        """The stream's entries from `first` to `last` (XRANGE bounds)."""
        key = stream_key(chat)
        entries: list[Entry] = []
        while True:
            chunk = cast(list[Entry], self.client.xrange(key, first, last, count=READ_CHUNK))
            entries += chunk
            if len(chunk) < READ_CHUNK:
                return entries
            first = "(" + chunk[-1][0]

    def append(self, chat: Chat, missing: list[NewMessage]) -> None:
        """XADD the missing messages, all newer than the stream's last ID. If
        a send came in between with a newer ID, the older ones are refused:
        then the chat changed (and is merged on the next attempt)."""
        key = stream_key(chat)
        changed = False
        for start in range(0, len(missing), WRITE_BATCH):
            pipe = self.client.pipeline(transaction=False)
            for send_time, sender, text in missing[start : start + WRITE_BATCH]:
                pipe.execute_command("XADD", key, f"{send_time}-0", "s", sender, "t", text)
            for reply in pipe.execute(raise_on_error=False):
                if isinstance(reply, redis.ResponseError) and "equal or smaller" in str(reply):
                    changed = True
                elif isinstance(reply, Exception):
                    raise reply
        if changed:
            raise ChatChanged

    def merge(self, chat: Chat, state: Mapping[str, Any], entries: list[Entry], missing: list[NewMessage]) -> None:
        """Write the stream's `entries` and the `missing` messages, in order,
        into a copy, and swap it in if the stream is still as it was read
        (`state`); else ChatChanged."""
        key, copy = stream_key(chat), migrating_key(chat)
        merged: list[tuple[EntryId, list[str]]] = [
            (parse_id(entry_id), [x for pair in fields.items() for x in pair]) for entry_id, fields in entries
        ]
        merged += [((send_time, 0), ["s", sender, "t", text]) for send_time, sender, text in missing]
        merged.sort(key=lambda entry: entry[0])
        try:
            self.client.delete(copy)  # left over by an interrupted run
            for start in range(0, len(merged), WRITE_BATCH):
                pipe = self.client.pipeline(transaction=False)
                for (ms, seq), fields in merged[start : start + WRITE_BATCH]:
                    pipe.execute_command("XADD", copy, f"{ms}-{seq}", *fields)
                pipe.execute()
            args: list[str | int] = [str(state["last-generated-id"]), int(state["length"]), len(merged), len(missing)]
            swapped = self._swap.run(self.client.execute_command, lambda _key: self.client, [key, copy], args)
        except Exception:
            self._discard(copy)
            raise
        if int(swapped) != 1:
            raise ChatChanged

    def _discard(self, copy: str) -> None:
        with contextlib.suppress(redis.RedisError):  # else the next run deletes it first
            self.client.delete(copy)

    def touch_conversations(self, chat: Chat, last_send_time: int) -> int:
        """Put the chat in both members' lists (ZADD GT: never moves an entry
        back). How many entries changed (or would)."""
        changed = 0
        for member in chat.members:
            key = user_chats_key(member)
            if self.dry_run:
                score = self.client.zscore(key, chat.id)
                changed += score is None or float(score) < last_send_time
            else:
                changed += int(cast(int, self.client.zadd(key, {chat.id: last_send_time}, gt=True, ch=True)))
        return changed
