"""`history_truncated` in every state a chat can be in (issue 12, item 8).

The README's rule: ascending, the flag is true exactly when some message at
or after the cursor is gone (cursor 0: from the oldest); reverse, exactly
when the page is the last one (`has_more` false) and some message at or
before the cursor is gone (cursor 0: from the newest). Each test below
builds one state against a real Redis, remembers every send_time ever
written, and checks the flag against that rule for every interesting
cursor: 0 and 1, each message's send_time and its neighbours, the trim
mark's neighbours, the last message's, and one far beyond; in both
directions, on a last page and on a page with more after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest
import redis

from rpc_server.chat_id import Chat, parse_chat
from rpc_server.storage.keys import stream_key, trim_mark_key
from rpc_server.storage.redis_client import connect_redis
from rpc_server.storage.store import MessageStore
from tests.conftest import Api
from tests.servers import ROOT, RedisServer, Stack

US = 1_000_000


class Chatlog:
    """A chat and every send_time ever written to it."""

    def __init__(self, stack: Stack) -> None:
        tag = uuid.uuid4().hex[:8]
        self.chat: Chat = parse_chat(f"h-{tag}:i-{tag}")
        self.redis: redis.Redis = stack.redis.client()
        self.client = connect_redis(stack.redis.url, 2.0, 4, 0.5)
        self.written: list[int] = []

    def store(self, max_age_s: int = 0, max_messages: int = 0) -> MessageStore:
        return MessageStore(
            self.client, 60, retention_max_age_s=max_age_s, retention_max_messages=max_messages, pipeline_lanes=0
        )

    def send(self, store: MessageStore, n: int = 1) -> None:
        for _ in range(n):
            self.written.append(store.append(self.chat, self.chat.first, f"message {len(self.written)} " + "x" * 90))

    def plant_old(self, ages_s: Iterable[float]) -> None:
        """Messages written long ago (as a send then would have): explicit IDs."""
        seconds, micros = self.redis.time()
        now = int(seconds) * US + int(micros)
        for age in ages_s:
            send_time = now - int(age * US)
            assert not self.written or send_time > self.written[-1]
            self.redis.xadd(stream_key(self.chat), {"s": self.chat.first, "t": "old"}, id=f"{send_time}-0")
            self.written.append(send_time)

    def present(self) -> list[int]:
        return [int(entry_id.split("-")[0]) for entry_id, _ in self.redis.xrange(stream_key(self.chat))]

    def cursors(self) -> set[int]:
        points = {1, 2**62}
        for t in self.written:
            points |= {t - 1, t, t + 1}
        mark = self.redis.get(trim_mark_key(self.chat))
        if mark:
            for number in mark.split():
                if int(number) > 0:
                    points |= {int(number) - 1, int(number), int(number) + 1}
        return {p for p in points if p > 0} | {0}

    def check(self, store: MessageStore) -> int:
        """Every cursor, both directions: the flag follows the rule. Returns
        how many pulls were checked."""
        present = self.present()
        gone = sorted(set(self.written) - set(present))
        wrong: list[str] = []
        checked = 0
        for cursor in sorted(self.cursors()):
            for reverse in (False, True):
                for limit in (1000, 1):
                    page = store.read(self.chat, cursor, limit, reverse)
                    if reverse:
                        reached = [g for g in gone if cursor == 0 or g <= cursor]
                        want = not page.has_more and bool(reached)
                    else:
                        want = any(cursor == 0 or g >= cursor for g in gone)
                    checked += 1
                    if page.truncated != want:
                        wrong.append(
                            f"cursor={cursor} reverse={reverse} limit={limit} has_more={page.has_more}: "
                            f"history_truncated={page.truncated}, want {want}"
                        )
        assert not wrong, (
            f"written {self.written}\npresent {present}\nmark {self.redis.get(trim_mark_key(self.chat))!r}\n"
            + "\n".join(wrong)
        )
        return checked


@pytest.fixture
def log(stack: Stack) -> Chatlog:
    return Chatlog(stack)


def test_never_written(log: Chatlog) -> None:
    assert log.check(log.store(max_age_s=1, max_messages=3)) > 0


def test_written_without_retention(log: Chatlog) -> None:
    store = log.store()
    log.send(store, 5)
    log.check(store)


def test_trimmed_partly_by_count_on_send(log: Chatlog) -> None:
    store = log.store(max_messages=3)
    log.send(store, 40)
    assert 3 <= len(log.present()) < 40
    log.check(store)


def test_trimmed_partly_by_age_on_send(log: Chatlog) -> None:
    log.plant_old([30, 20, 10])
    store = log.store(max_age_s=15)
    log.send(store, 2)
    assert log.present() == log.written[2:]
    log.check(store)


def test_every_older_message_trimmed_by_a_send(log: Chatlog) -> None:
    """Retention on send never empties a chat (the new message is the
    newest, never trimmed): the nearest state is every other message gone."""
    log.plant_old([30, 20, 10])
    store = log.store(max_age_s=5)
    log.send(store)
    assert log.present() == log.written[-1:]
    log.check(store)


def test_trimmed_partly_by_the_sweep(log: Chatlog) -> None:
    log.plant_old([30, 20, 10, 1])
    store = log.store(max_age_s=15)
    assert store.apply_retention(log.chat) == 2
    log.check(store)


def test_emptied_by_the_sweep(log: Chatlog) -> None:
    log.plant_old([30, 20, 10])
    store = log.store(max_age_s=5)
    assert store.apply_retention(log.chat) == 3
    assert log.present() == []
    log.check(store)


def test_emptied_by_the_sweep_then_the_next_sends(log: Chatlog) -> None:
    log.plant_old([30, 20, 10])
    store = log.store(max_age_s=5)
    store.apply_retention(log.chat)
    log.send(store)
    log.check(store)
    log.send(store, 2)
    log.check(store)


def test_emptied_twice_by_the_sweep(log: Chatlog) -> None:
    log.plant_old([30, 20])
    store = log.store(max_age_s=5)
    store.apply_retention(log.chat)
    log.plant_old([15, 10])
    store.apply_retention(log.chat)
    assert log.present() == []
    log.check(store)


def test_trimmed_by_count_then_by_age(log: Chatlog) -> None:
    log.plant_old([50, 40, 30, 20, 10])
    store = log.store(max_messages=3)
    log.send(store)
    log.check(store)
    aged = log.store(max_age_s=25, max_messages=3)
    aged.apply_retention(log.chat)
    log.check(aged)


def test_deleted_chat_starts_anew(log: Chatlog, stack: Stack) -> None:
    log.plant_old([30, 20, 10])
    store = log.store(max_age_s=5)
    store.apply_retention(log.chat)
    log.redis.delete(stream_key(log.chat), trim_mark_key(log.chat))  # as the admin deletion does
    log.written = []
    log.send(store, 2)
    log.check(store)


def test_a_mark_left_by_an_older_version_for_an_emptied_chat(log: Chatlog) -> None:
    """Older versions wrote "-1" when the sweep emptied a chat."""
    log.plant_old([30, 20, 10])
    log.redis.xtrim(stream_key(log.chat), maxlen=0)
    log.redis.set(trim_mark_key(log.chat), "-1")
    store = log.store(max_age_s=5)
    last = log.written[-1]
    assert store.read(log.chat, last + 1, 10, reverse=False).truncated is False
    assert store.read(log.chat, last, 10, reverse=False).truncated is True
    assert store.read(log.chat, 0, 10, reverse=True).truncated is True


def test_over_http_an_ascending_pull_past_the_last_message_of_a_swept_chat(own_stack: Stack) -> None:
    """The issue's reproduction, end to end: `python -m rpc_server.tools.sweep`
    empties a chat; a pull from past its last message lost nothing. (A
    stack of its own: the sweep trims every chat of its Redis.)"""
    stack = own_stack
    log = Chatlog(stack)
    log.plant_old([30, 20, 10])
    environment = {"PATH": "/usr/bin:/bin", "REDIS_URL": stack.redis.url, "RETENTION_MAX_AGE_S": "5"}
    swept = subprocess.run(
        [sys.executable, "-m", "rpc_server.tools.sweep"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["messages_trimmed"] >= 3
    api = Api(stack.http.url)
    last = log.written[-1]
    assert api.pull_ok(log.chat.id, cursor=last + 1)["history_truncated"] is False
    assert api.pull_ok(log.chat.id, cursor=last)["history_truncated"] is True
    assert api.pull_ok(log.chat.id)["history_truncated"] is True
    sent = api.send_ok(log.chat.id, "back", log.chat.first)
    page = api.pull_ok(log.chat.id, cursor=last + 1)
    assert [m["send_time"] for m in page["messages"]] == [sent] and page["history_truncated"] is False
    assert api.pull_ok(log.chat.id, reverse=True)["history_truncated"] is True


def test_count_retention_trims_at_most_a_batch_per_send_and_the_sweep_finishes(tmp_path: Path) -> None:
    """A chat far over RETENTION_MAX_MESSAGES (retention just turned on): a
    send trims at most 1,000 (bounded work per send); the sweep calls again
    until the chat is down to the count. (A Redis of its own: the sweep
    trims every chat in it.)"""
    server = RedisServer(tmp_path / "redis", extra=["--appendonly", "no"])
    server.start()
    try:
        client = connect_redis(server.url, 5.0, 4, 0.5)
        chat = parse_chat("a:b")
        keep_all = MessageStore(client, 60, pipeline_lanes=0)
        written = [keep_all.append(chat, "a", f"m{i}") for i in range(2500)]
        limited = MessageStore(client, 60, retention_max_messages=10, pipeline_lanes=0)
        written.append(limited.append(chat, "b", "the first send with retention on"))
        raw = server.client()
        assert raw.xlen(stream_key(chat)) == 2501 - 1000
        environment = {"PATH": "/usr/bin:/bin", "REDIS_URL": server.url, "RETENTION_MAX_MESSAGES": "10"}
        argv = [sys.executable, "-m", "rpc_server.tools.sweep"]
        swept = subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
        assert swept.returncode == 0, swept.stderr
        assert json.loads(swept.stdout)["messages_trimmed"] == 1501 - 10
        kept = [int(entry_id.split("-")[0]) for entry_id, _ in raw.xrange(stream_key(chat))]
        assert kept == written[-10:]
        assert raw.get(trim_mark_key(chat)) == f"{written[-11] + 1} {written[0]}"
    finally:
        server.stop()
