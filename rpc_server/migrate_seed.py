"""`python -m rpc_server.migrate_seed`: copy the seed's messages into our layout.

The seed (the Go reference) kept each chat as a Redis sorted set under the
key "a:b" (the two member names lowercased and sorted), one member per
message: Go's json.Marshal of {"sender", "message", "timestamp"}, scored by
the timestamp in seconds. We keep a chat as a stream of entries
"<send_time>-0" with send_time in microseconds (store.py).

What it does, chat by chat:

* finds the seed's chats with SCAN: keys named "<m1>:<m2>" that parse_chat
  accepts and that hold a sorted set; our own keys (im:v1:*) are never taken
  for the seed's, any other key is reported as skipped. Keys naming the same chat
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
  into a copy in the same hash slot (im:v1:{a:b}:migrating), then swaps the
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

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from rpc_server import config
from rpc_server.chat_id import Chat, canonical_member, parse_chat
from rpc_server.errors import InvalidArgument
from rpc_server.redis_client import connect, redacted
from rpc_server.store import KEY_PREFIX, LuaScript, stream_key, user_chats_key
from settings import StartupError, fail

US_PER_S = 1_000_000
# The largest timestamp whose send_times (and their position) fit in an int64 (Thrift's i64).
MAX_TIMESTAMP = (2**63 - 1) // US_PER_S - 1
# How far after the target Redis's clock a seed timestamp may lie (clock skew between the seed's hosts and it).
DEFAULT_MAX_FUTURE_S = 3600
READ_CHUNK = 10_000  # members / entries per ZRANGE or XRANGE
WRITE_BATCH = 1_000  # commands per pipeline
SCAN_COUNT = 1_000
ATTEMPTS = 5  # per chat, when its stream keeps changing during a merge
SKIPPED_SAMPLE = 20  # skipped key names shown in the report

# Why a member was skipped: its reason key in the report, and what it means.
INVALID_REASONS = {
    "not_json": "not UTF-8 JSON",
    "not_object": "not a JSON object",
    "bad_fields": "sender, message or timestamp missing or of the wrong type",
    "timestamp_mismatch": "timestamp is not the member's score",
    "timestamp_range": f"timestamp outside 1..{MAX_TIMESTAMP}",
    "timestamp_future": "timestamp dated after the target Redis's clock + --max-future-s",
    "sender_not_member": "sender is not a member of the chat",
    "bad_text": "message is not valid Unicode",
}


def migrating_key(chat: Chat) -> str:
    """The merged copy of a chat's stream, in the chat's hash slot."""
    return f"{KEY_PREFIX}{{{chat.id}}}:migrating"


def trimmed_floor(state: dict[str, Any]) -> int:
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


@dataclass(frozen=True)
class SeedMessage:
    send_time: int  # wanted: timestamp * 10**6 + position within the second
    sender: str  # canonical (lowercase)
    text: str


def parse_member(member: bytes, score: float, chat: Chat, latest: int = MAX_TIMESTAMP) -> tuple[str, str, int] | str:
    """(sender, text, timestamp) of a seed member, or why it is invalid
    (a key of INVALID_REASONS). `latest`: the last timestamp accepted."""
    try:
        value = json.loads(member.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is one
        return "not_json"
    if not isinstance(value, dict):
        return "not_object"
    sender, text, timestamp = value.get("sender"), value.get("message"), value.get("timestamp")
    if not isinstance(sender, str) or not isinstance(text, str) or type(timestamp) is not int:
        return "bad_fields"
    if timestamp != score:
        return "timestamp_mismatch"
    if not 1 <= timestamp <= MAX_TIMESTAMP:
        return "timestamp_range"
    if timestamp > latest:
        return "timestamp_future"
    try:
        sender = canonical_member(sender)
    except InvalidArgument:
        return "sender_not_member"
    if not chat.has_member(sender):
        return "sender_not_member"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a \ud800 escape
        return "bad_text"
    return sender, text, timestamp


def seed_messages(
    members: Iterable[tuple[bytes, float]], chat: Chat, invalid: Counter[str], latest: int = MAX_TIMESTAMP
) -> tuple[list[SeedMessage], int]:
    """The chat's valid messages in order, with their wanted send_times, and
    how many members were read. Invalid ones (and those dated after
    `latest`) are counted into `invalid`."""
    ordered = sorted(set(members), key=lambda pair: (pair[1], pair[0]))  # ZRANGE order; one copy of each
    messages: list[SeedMessage] = []
    second, position = -1, 0
    for member, score in ordered:
        parsed = parse_member(member, score, chat, latest)
        if isinstance(parsed, str):
            invalid[parsed] += 1
            continue
        sender, text, timestamp = parsed
        position = position + 1 if timestamp == second else 0
        second = timestamp
        messages.append(SeedMessage(timestamp * US_PER_S + position, sender, text))
    return messages, len(ordered)


EntryId = tuple[int, int]


def parse_id(entry_id: str) -> EntryId:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Plan:
    """Where each seed message goes in a chat's stream, and what is missing."""

    missing: list[tuple[int, SeedMessage]] = field(default_factory=list)  # (send_time, message), increasing
    present: int = 0
    expired: int = 0
    last_send_time: int = 0  # the chat's last, seed or not


def make_plan(
    messages: Sequence[SeedMessage],
    existing: Mapping[EntryId, Mapping[str, str]],
    floor: int = 0,
    existing_last: int = 0,
) -> Plan:
    """Place `messages` (in order) among the stream's `existing` entries (all
    those at or after the first message's wanted send_time).

    Each message's send_time is its wanted one, at least its predecessor's
    + 1, moved up past entries holding another message. A message is present
    if the entry at that send_time holds the same sender and text; else it is
    missing, unless at or below `floor` (retention: expired). The walk only
    depends on the existing entries, which migrated messages never change,
    so a second run finds every message the first one added.
    """
    plan = Plan(last_send_time=existing_last)
    previous = 0
    for message in messages:
        send_time = max(message.send_time, previous + 1)
        while (fields := existing.get((send_time, 0))) is not None and not _same(fields, message):
            send_time += 1
        previous = send_time
        if (send_time, 0) in existing:
            plan.present += 1
        elif send_time <= floor:
            plan.expired += 1
            continue
        else:
            plan.missing.append((send_time, message))
        plan.last_send_time = max(plan.last_send_time, send_time)
    return plan


def _same(fields: Mapping[str, str], message: SeedMessage) -> bool:
    return fields.get("s") == message.sender and fields.get("t") == message.text


@dataclass
class ChatResult:
    chat: str
    read: int = 0
    added: int = 0
    present: int = 0
    expired: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    merged: bool = False
    conversations: int = 0
    error: str = ""


@dataclass
class Report:
    dry_run: bool
    chats_found: int = 0
    chats_changed: int = 0
    chats_merged: int = 0
    chats_failed: int = 0
    messages_read: int = 0
    messages_added: int = 0
    messages_present: int = 0
    messages_expired: int = 0
    messages_in_failed_chats: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    conversation_entries: int = 0
    keys_skipped: int = 0
    skipped_sample: list[dict[str, str]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def skip(self, key: bytes, reason: str) -> None:
        self.keys_skipped += 1
        if len(self.skipped_sample) < SKIPPED_SAMPLE:
            self.skipped_sample.append({"key": key.decode("utf-8", "backslashreplace"), "reason": reason})

    def add(self, result: ChatResult) -> None:
        self.messages_read += result.read
        self.invalid.update(result.invalid)
        if result.error:
            self.chats_failed += 1
            self.messages_in_failed_chats += result.read - sum(result.invalid.values())
            self.failures.append({"chat": result.chat, "error": result.error})
            return
        self.messages_added += result.added
        self.messages_present += result.present
        self.messages_expired += result.expired
        self.chats_changed += result.added > 0
        self.chats_merged += result.merged
        self.conversation_entries += result.conversations

    @property
    def messages_invalid(self) -> int:
        return sum(self.invalid.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "chats_found": self.chats_found,
            "chats_changed": self.chats_changed,
            "chats_merged": self.chats_merged,
            "chats_failed": self.chats_failed,
            "messages_read": self.messages_read,
            "messages_added": self.messages_added,
            "messages_already_present": self.messages_present,
            "messages_expired": self.messages_expired,
            "messages_invalid": self.messages_invalid,
            "invalid_reasons": dict(sorted(self.invalid.items())),
            "messages_in_failed_chats": self.messages_in_failed_chats,
            "conversation_entries_updated": self.conversation_entries,
            "keys_skipped": self.keys_skipped,
            "skipped_keys_sample": self.skipped_sample,
            "failed_chats": self.failures,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        would = "would be " if self.dry_run else ""
        done = self.messages_added + self.messages_present
        rate = f", {done / self.seconds:,.0f} messages/s" if self.seconds > 0 and done else ""

        def row(label: str, value: object) -> str:
            return f"  {label + ':':<40}{value}"

        lines = ["seed migration" + (" (dry run: nothing written)" if self.dry_run else "")]
        lines.append(row("chats found", f"{self.chats_found:,}"))
        lines.append(row(f"chats {would}changed", f"{self.chats_changed:,} ({self.chats_merged:,} merged)"))
        lines.append(row(f"messages {would}added", f"{self.messages_added:,}"))
        lines.append(row("messages already present", f"{self.messages_present:,}"))
        lines.append(row("messages skipped (invalid)", f"{self.messages_invalid:,}"))
        lines += [f"    {INVALID_REASONS[r]}: {n:,}" for r, n in sorted(self.invalid.items())]
        lines.append(row("messages skipped (retention)", f"{self.messages_expired:,}"))
        lines.append(row(f"conversation entries {would}updated", f"{self.conversation_entries:,}"))
        lines.append(row("keys skipped (not seed chats)", f"{self.keys_skipped:,}"))
        lines += [f"    {s['key']!r}: {s['reason']}" for s in self.skipped_sample]
        if self.keys_skipped > len(self.skipped_sample):
            lines.append(f"    ... and {self.keys_skipped - len(self.skipped_sample):,} more")
        lines.append(row("chats failed", f"{self.chats_failed:,}"))
        lines += [f"    {f['chat']}: {f['error']}" for f in self.failures]
        if self.chats_failed:
            lines.append(
                f"    ({self.messages_in_failed_chats:,} messages in them not, or not all, migrated: run again)"
            )
        lines.append(f"  took {self.seconds:.2f} s{rate}")
        return "\n".join(lines)


class ChatChanged(Exception):
    """The chat's stream changed while it was being migrated: read it again."""


class Migration:
    def __init__(
        self,
        source: redis.Redis,
        target: redis.Redis,
        dry_run: bool = False,
        match: str = "*",
        retention_max_age_s: int = 0,
        verbose: bool = False,
        max_future_s: int = DEFAULT_MAX_FUTURE_S,
    ) -> None:
        self.source = source  # bytes replies (decode_responses=False)
        self.target = target  # text replies, as connect() makes it
        self.dry_run = dry_run
        self.match = match
        self.retention_max_age_us = retention_max_age_s * US_PER_S
        self.verbose = verbose
        self.max_future_s = max_future_s
        self.latest = MAX_TIMESTAMP  # the last timestamp accepted: set from the target's clock by run()
        self._swap = LuaScript("migrate_seed.lua")

    def run(self) -> Report:
        started = time.monotonic()
        report = Report(self.dry_run)
        self.latest = min(MAX_TIMESTAMP, self._now_us() // US_PER_S + self.max_future_s)
        chats = self.find_chats(report)
        report.chats_found = len(chats)
        for chat_id in sorted(chats):
            chat, keys = chats[chat_id]
            result = self.migrate_chat(chat, keys)
            report.add(result)
            if self.verbose or result.error:
                print(_chat_line(result, self.dry_run), file=sys.stderr, flush=True)
        report.seconds = time.monotonic() - started
        return report

    def find_chats(self, report: Report) -> dict[str, tuple[Chat, list[bytes]]]:
        """The seed's chats: {chat ID: (chat, its keys)}. Other keys are skipped."""
        candidates: list[tuple[bytes, Chat]] = []
        for key in cast(Iterable[bytes], self.source.scan_iter(match=self.match, count=SCAN_COUNT)):
            if key.startswith(KEY_PREFIX.encode()):
                continue  # ours
            try:
                candidates.append((key, parse_chat(key.decode("utf-8"))))
            except (UnicodeDecodeError, InvalidArgument):
                report.skip(key, "not a chat name")
        chats: dict[str, tuple[Chat, list[bytes]]] = {}
        for start in range(0, len(candidates), WRITE_BATCH):
            batch = candidates[start : start + WRITE_BATCH]
            pipe = self.source.pipeline(transaction=False)
            for key, _ in batch:
                pipe.type(key)
            for (key, chat), kind in zip(batch, pipe.execute(), strict=True):
                kind = kind.decode() if isinstance(kind, bytes) else str(kind)
                if kind == "zset":
                    chats.setdefault(chat.id, (chat, []))[1].append(key)
                elif kind != "none":  # "none": deleted since the SCAN
                    report.skip(key, f"a {kind}, not a sorted set")
        return chats

    def migrate_chat(self, chat: Chat, keys: list[bytes]) -> ChatResult:
        result = ChatResult(chat.id)
        try:
            members = [pair for key in keys for pair in self._read_members(key)]
            messages, result.read = seed_messages(members, chat, result.invalid, self.latest)
            if not messages:
                return result
            for _ in range(ATTEMPTS):
                try:
                    self._migrate(chat, messages, result)
                    return result
                except ChatChanged:
                    continue
            raise ChatChanged(f"its stream kept changing during {ATTEMPTS} attempts; run again")
        except Exception as e:  # reported, and the other chats go on
            result.error = f"{type(e).__name__}: {e}"
            return result

    def _migrate(self, chat: Chat, messages: list[SeedMessage], result: ChatResult) -> None:
        key = stream_key(chat)
        state = self._stream_state(key)
        first = f"{messages[0].send_time}-0"
        after = self._read_entries(key, first, "+") if state else []
        existing = {parse_id(entry_id): fields for entry_id, fields in after}
        floor = trimmed_floor(state) if state else 0
        if self.retention_max_age_us:
            floor = max(floor, self._now_us() - self.retention_max_age_us)
        existing_last = parse_id(after[-1][0])[0] if after else 0
        plan = make_plan(messages, existing, floor, existing_last)
        merge = bool(plan.missing and state and (plan.missing[0][0], 0) <= parse_id(state["last-generated-id"]))
        if plan.missing and not self.dry_run:
            if merge:
                assert state is not None
                before = self._read_entries(key, "-", f"({first}")
                self._merge(chat, state, before + after, plan.missing)
            else:
                self._append(key, plan.missing)
        result.added, result.present, result.expired = len(plan.missing), plan.present, plan.expired
        result.merged = merge
        if plan.last_send_time:
            result.conversations = self._touch_conversations(chat, plan.last_send_time)

    def _read_members(self, key: bytes) -> list[tuple[bytes, float]]:
        members: list[tuple[bytes, float]] = []
        start = 0
        while True:
            chunk = cast(
                list[tuple[bytes, float]],
                self.source.zrange(key, start, start + READ_CHUNK - 1, withscores=True),
            )
            members += chunk
            if len(chunk) < READ_CHUNK:
                return members
            start += READ_CHUNK

    def _stream_state(self, key: str) -> dict[str, Any] | None:
        """XINFO STREAM's fields, or None if there is no such stream."""
        try:
            info = self.target.xinfo_stream(key)
        except redis.ResponseError as e:
            if "no such key" in str(e).lower():
                return None
            raise
        return dict(info)

    def _read_entries(self, key: str, first: str, last: str) -> list[tuple[str, dict[str, str]]]:
        entries: list[tuple[str, dict[str, str]]] = []
        while True:
            chunk = cast(list[tuple[str, dict[str, str]]], self.target.xrange(key, first, last, count=READ_CHUNK))
            entries += chunk
            if len(chunk) < READ_CHUNK:
                return entries
            first = "(" + chunk[-1][0]

    def _now_us(self) -> int:
        seconds, micros = self.target.time()
        return int(seconds) * US_PER_S + int(micros)

    def _append(self, key: str, missing: list[tuple[int, SeedMessage]]) -> None:
        """XADD the missing messages, all newer than the stream's last ID. If
        a send came in between with a newer ID, the older ones are refused:
        then the chat changed (and is merged on the next attempt)."""
        changed = False
        for start in range(0, len(missing), WRITE_BATCH):
            pipe = self.target.pipeline(transaction=False)
            for send_time, m in missing[start : start + WRITE_BATCH]:
                pipe.execute_command("XADD", key, f"{send_time}-0", "s", m.sender, "t", m.text)
            for reply in pipe.execute(raise_on_error=False):
                if isinstance(reply, redis.ResponseError) and "equal or smaller" in str(reply):
                    changed = True
                elif isinstance(reply, Exception):
                    raise reply
        if changed:
            raise ChatChanged

    def _merge(
        self,
        chat: Chat,
        state: Mapping[str, Any],
        entries: list[tuple[str, dict[str, str]]],
        missing: list[tuple[int, SeedMessage]],
    ) -> None:
        """Write the stream's `entries` and the `missing` messages, in order,
        into a copy, and swap it in if the stream is still as it was read."""
        key, copy = stream_key(chat), migrating_key(chat)
        merged: list[tuple[EntryId, list[str]]] = [
            (parse_id(entry_id), [x for pair in fields.items() for x in pair]) for entry_id, fields in entries
        ]
        merged += [((send_time, 0), ["s", m.sender, "t", m.text]) for send_time, m in missing]
        merged.sort(key=lambda entry: entry[0])
        try:
            self.target.delete(copy)  # left over by an interrupted run
            for start in range(0, len(merged), WRITE_BATCH):
                pipe = self.target.pipeline(transaction=False)
                for (ms, seq), fields in merged[start : start + WRITE_BATCH]:
                    pipe.execute_command("XADD", copy, f"{ms}-{seq}", *fields)
                pipe.execute()
            args: list[str | int] = [str(state["last-generated-id"]), int(state["length"]), len(merged), len(missing)]
            swapped = self._eval(self._swap, [key, copy], args)
        except Exception:
            self._discard(copy)
            raise
        if int(swapped) != 1:
            raise ChatChanged

    def _discard(self, copy: str) -> None:
        with contextlib.suppress(redis.RedisError):  # else the next run deletes it first
            self.target.delete(copy)

    def _eval(self, script: LuaScript, keys: list[str], args: list[str | int]) -> Any:
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return self.target.execute_command(*command)
        except redis.exceptions.NoScriptError:  # not loaded yet, or flushed: it did not run
            self.target.script_load(script.source)
            return self.target.execute_command(*command)

    def _touch_conversations(self, chat: Chat, last_send_time: int) -> int:
        """Put the chat in both members' lists (ZADD GT: never moves an entry
        back). How many entries changed (or would)."""
        changed = 0
        for member in chat.members:
            key = user_chats_key(member)
            if self.dry_run:
                score = self.target.zscore(key, chat.id)
                changed += score is None or float(score) < last_send_time
            else:
                changed += int(cast(int, self.target.zadd(key, {chat.id: last_send_time}, gt=True, ch=True)))
        return changed


def _chat_line(result: ChatResult, dry_run: bool) -> str:
    if result.error:
        return f"{result.chat}: FAILED: {result.error}"
    would = "would be " if dry_run else ""
    parts = [f"{result.added} {would}added", f"{result.present} present"]
    if result.invalid:
        parts.append(f"{sum(result.invalid.values())} invalid")
    if result.expired:
        parts.append(f"{result.expired} expired")
    return f"{result.chat}: {', '.join(parts)}" + (f" ({would}merged)" if result.merged else "")


def source_client(url: str, timeout_s: float, tls_ca_file: str = "") -> redis.Redis:
    """The seed's Redis, with bytes replies (a member may be anything)."""
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    if tls_ca_file and url.startswith("rediss://"):
        options["ssl_ca_certs"] = tls_ca_file
    return redis.Redis.from_url(url, decode_responses=False, **options)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rpc_server.migrate_seed",
        description="Copy the seed's messages (a sorted set per chat, key 'a:b') into this server's layout "
        "(a stream per chat). The target Redis is the RPC server's: REDIS_URL or REDIS_CLUSTER_NODES, ... "
        "from the environment. The seed's keys are only read.",
    )
    p.add_argument("--dry-run", action="store_true", help="write nothing; report what would be added")
    p.add_argument(
        "--source-url",
        help="the seed's Redis (default: the target Redis, $REDIS_URL; required with REDIS_CLUSTER_NODES)",
    )
    p.add_argument("--match", default="*", help="only keys matching this glob (SCAN MATCH), e.g. one chat 'a:b'")
    p.add_argument("--json", action="store_true", help="print the report as a JSON object (the summary to stderr)")
    p.add_argument("--verbose", action="store_true", help="a line per chat, on stderr")
    p.add_argument("--timeout-ms", type=int, default=10_000, help="Redis command timeout (default 10000)")
    p.add_argument(
        "--max-future-s",
        type=int,
        default=DEFAULT_MAX_FUTURE_S,
        help="skip (as timestamp_future) messages dated more than this many seconds after the target Redis's "
        f"clock: a far-future send_time holds back every later send in its chat (default {DEFAULT_MAX_FUTURE_S})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.max_future_s < 0:
        print(f"error: --max-future-s must be 0 or more, not {args.max_future_s}", file=sys.stderr)
        return 2
    cfg = config.load([])  # the RPC server's settings, from the environment
    timeout_ms = max(args.timeout_ms, cfg.redis_timeout_ms)
    cfg = dataclasses.replace(cfg, redis_timeout_ms=timeout_ms, redis_pool_wait_ms=timeout_ms, redis_pool_size=4)
    if args.source_url is None and cfg.redis_cluster_nodes:
        print("error: --source-url is required with REDIS_CLUSTER_NODES (the seed used one Redis)", file=sys.stderr)
        return 2
    source_url = args.source_url or cfg.redis_url
    target_name = cfg.redis_cluster_nodes or redacted(cfg.redis_url)
    try:
        target = connect(cfg)
        target.ping()
    except (redis.RedisError, redis.exceptions.RedisClusterException) as e:
        print(f"error: target Redis {target_name}: {e}", file=sys.stderr)
        return 2
    try:
        source = source_client(source_url, timeout_ms / 1000, cfg.redis_tls_ca_file)
        source.ping()
    except redis.RedisError as e:
        print(f"error: the seed's Redis {redacted(source_url)}: {e}", file=sys.stderr)
        return 2
    migration = Migration(
        source, target, args.dry_run, args.match, cfg.retention_max_age_s, args.verbose, args.max_future_s
    )
    try:
        report = migration.run()
    except redis.RedisError as e:  # the SCAN of the seed's keys
        print(f"error: reading the seed's keys from {redacted(source_url)}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(report.summary(), file=sys.stderr)
        print(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        print(report.summary())
    return 1 if report.chats_failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StartupError as e:  # a setting out of range: one line, exit status 2, as the servers do
        fail("rpc_server.migrate_seed", e)
