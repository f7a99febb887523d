"""`python -m rpc_server.tools.migrate_seed` against real redis-servers: the seed's
data (a sorted set per chat, Go's JSON members, scores in seconds) written
exactly as the seed wrote it, migrated, and read back through the HTTP API,
Redis, and a second run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from rpc_server.chat_id import parse_chat
from rpc_server.storage.keys import migrating_key, stream_key, user_chats_key
from rpc_server.storage.seed_import import ImportTarget
from rpc_server.tools.migrate_seed import __main__ as migrate_seed
from rpc_server.tools.migrate_seed.migration import ATTEMPTS
from rpc_server.tools.migrate_seed.parse import SeedMessage
from rpc_server.tools.migrate_seed.plan import make_plan
from rpc_server.tools.migrate_seed.report import Report
from tests.conftest import Api
from tests.servers import ROOT, RedisCluster, RedisServer, Stack

T0 = 1684758444  # the seed's example timestamp (2023-05-22), in seconds

Seed = list[tuple[str, str, int]]  # (sender as the seed stored it, text, timestamp)


def go_json(sender: str, message: str, timestamp: int) -> str:
    """Go's json.Marshal of the seed's Message struct: fields in declaration
    order, no spaces, UTF-8 as is, and <, >, &, U+2028, U+2029 escaped."""
    text = json.dumps(
        {"sender": sender, "message": message, "timestamp": timestamp}, ensure_ascii=False, separators=(",", ":")
    )
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def write_seed(client: redis.Redis, room: str, messages: Seed) -> None:
    """What the seed's SaveMessage did, message by message: ZADD room ts json."""
    for sender, text, timestamp in messages:
        client.zadd(room, {go_json(sender, text, timestamp): timestamp})


def expected(messages: Seed) -> list[tuple[int, str, str]]:
    """(send_time, sender, text) in the seed's ZRANGE order (score, then the
    member's bytes), send_time = timestamp * 10**6 + position in the second."""
    ordered = sorted(messages, key=lambda m: (m[2], go_json(*m).encode()))
    result, second, position = [], None, 0
    for sender, text, timestamp in ordered:
        position = position + 1 if timestamp == second else 0
        second = timestamp
        result.append((timestamp * 10**6 + position, sender.lower(), text))
    return result


def pulled(api: Api, chat: str, reverse: bool = False) -> list[tuple[int, str, str]]:
    return [(m["send_time"], m["sender"], m["text"]) for m in api.pull_all(chat, reverse=reverse, limit=3)]


def stream(client: redis.Redis, chat: str) -> list[tuple[int, str, str]]:
    entries = client.xrange(stream_key(parse_chat(chat)))
    return [(int(entry_id.split("-")[0]), f["s"], f["t"]) for entry_id, f in entries]


def run_subprocess(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    """The command as an operator runs it; (exit status, its JSON report, stderr)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDIS_CLUSTER_NODES")}
    done = subprocess.run(
        [sys.executable, "-m", "rpc_server.tools.migrate_seed", "--json", *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, report, done.stderr


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """run(url, *args): main() in this process with REDIS_URL=url; (exit status, JSON report)."""

    def run(url: str, *args: str, **env: str) -> tuple[int, dict[str, Any]]:
        monkeypatch.setenv("REDIS_URL", url)
        monkeypatch.delenv("REDIS_CLUSTER_NODES", raising=False)
        monkeypatch.delenv("RETENTION_MAX_AGE_S", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = migrate_seed.main(["--json", *args])
        out = capsys.readouterr().out
        return code, json.loads(out)

    return run


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own: whole-database counts are exact."""
    s = RedisServer(tmp_path / "redis")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def snapshot(server: RedisServer) -> dict[bytes, bytes | None]:
    """Every key and its serialized value (DUMP)."""
    raw = redis.Redis(port=server.port)
    return {key: raw.dump(key) for key in raw.scan_iter(count=1000)}


def _tag() -> str:
    return uuid.uuid4().hex[:8]


# --- Through the whole stack ------------------------------------------------


def test_migrated_messages_pull_back_in_order_with_their_send_times(stack: Stack) -> None:
    tag = _tag()
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    chat = f"{alice}:{bob}"
    seed: Seed = [
        (alice, "hello!", T0),
        (bob, "hi <b>&</b>", T0),
        (f"Alice-{tag}", "sorted first: 'A' < 'a'", T0),  # the seed kept the sender as written
        (alice, "hello!", T0 + 1),  # the same text from the same sender, another second
        (alice, "hello!", T0 + 7),
        (bob, "héllo ☃ \u2028 \U0001f600", T0 + 7),
        *[(alice if i % 2 else bob, f"burst {i}", T0 + 100) for i in range(6)],
        (bob, "", T0 + 200),  # the seed had no text limits: kept as they are
        (alice, "x" * 5000, T0 + 200),
    ]
    write_seed(stack.redis.client(), chat, seed)

    code, report, stderr = run_subprocess({"REDIS_URL": stack.redis.url}, "--match", chat)

    assert code == 0, stderr
    assert report["chats_found"] == 1 and report["chats_failed"] == 0
    assert report["messages_added"] == len(seed) == 14
    assert report["messages_already_present"] == 0 and report["messages_invalid"] == 0
    assert "messages added:" in stderr  # the human summary, beside the JSON
    want = expected(seed)
    api = Api(stack.http.url)
    assert pulled(api, chat) == want
    assert pulled(api, chat, reverse=True) == want[::-1]
    # concretely: the seed's order within a second is the members' byte order
    assert want[:3] == [
        (T0 * 10**6, alice, "sorted first: 'A' < 'a'"),
        (T0 * 10**6 + 1, alice, "hello!"),
        (T0 * 10**6 + 2, bob, "hi <b>&</b>"),
    ]
    assert [t for t, _, _ in want[3:6]] == [(T0 + 1) * 10**6, (T0 + 7) * 10**6, (T0 + 7) * 10**6 + 1]
    assert [t for t, _, _ in want[6:12]] == [(T0 + 100) * 10**6 + i for i in range(6)]
    client = stack.redis.client()
    for member in (alice, bob):
        assert client.zscore(user_chats_key(member), chat) == want[-1][0]

    # our service goes on from there: a new message comes after them all
    new = api.send_ok(chat, "now", bob)
    assert new > want[-1][0]
    assert pulled(api, chat)[-1] == (new, bob, "now")

    # the seed's key is left as it was
    assert client.zcard(chat) == len(seed)

    # a second run adds nothing
    code, again, _ = run_subprocess({"REDIS_URL": stack.redis.url}, "--match", chat)
    assert code == 0
    assert again["messages_added"] == 0 and again["messages_already_present"] == 14
    assert again["chats_changed"] == 0 and again["conversation_entries_updated"] == 0
    assert pulled(api, chat) == [*want, (new, bob, "now")]


def test_a_chat_already_in_use_is_merged_with_the_old_messages_first(stack: Stack) -> None:
    tag = _tag()
    ann, ben = f"ann-{tag}", f"ben-{tag}"
    chat = f"{ann}:{ben}"
    api = Api(stack.http.url)
    live = [
        (api.send_ok(chat, f"live {i}", ann if i % 2 else ben), ann if i % 2 else ben, f"live {i}") for i in range(3)
    ]
    second = live[0][0] // 10**6
    seed: Seed = [
        (ann, "old 1", T0),
        (ben, "old 2", T0),
        (ann, "old 3", T0 + 60),
        (ben, "the same second as the first live one", second),
        (ann, "a second after the live ones", live[-1][0] // 10**6 + 1),
    ]
    write_seed(stack.redis.client(), chat, seed)
    key = stream_key(parse_chat(chat))
    before = stack.redis.client().xinfo_stream(key)

    code, report, stderr = run_subprocess({"REDIS_URL": stack.redis.url}, "--match", chat)

    assert code == 0, stderr
    assert report["chats_merged"] == 1 and report["messages_added"] == 5
    messages = pulled(api, chat)
    assert len(messages) == 8
    assert [t for t, _, _ in messages] == sorted({t for t, _, _ in messages})  # strictly increasing
    assert [m for m in messages if m[2].startswith("live")] == live  # their send_times unchanged
    seed_part = [m for m in messages if not m[2].startswith("live")]
    assert seed_part == expected(seed)
    assert messages[:3] == expected(seed)[:3]  # the old ones first
    after = stack.redis.client().xinfo_stream(key)
    assert after["entries-added"] >= before["entries-added"] + 5
    assert not stack.redis.client().exists(migrating_key(parse_chat(chat)))
    assert stack.redis.client().zscore(user_chats_key(ann), chat) == messages[-1][0]

    code, again, _ = run_subprocess({"REDIS_URL": stack.redis.url}, "--match", chat)
    assert code == 0
    assert again["messages_added"] == 0 and again["chats_merged"] == 0
    assert again["messages_already_present"] == 5
    assert pulled(api, chat) == messages
    new = api.send_ok(chat, "after the merge", ann)
    assert new > messages[-1][0]


# --- Against a redis-server of the test's own ---------------------------------


def test_second_run_adds_nothing_and_changes_nothing(server: RedisServer, run: Any) -> None:
    client = server.client()
    seed: Seed = [("a", f"m{i}", T0 + i // 3) for i in range(30)]
    write_seed(client, "a:b", seed)
    write_seed(client, "c:d", [("d", "x", T0), ("c", "x", T0), ("c", "x", T0 + 1)])

    code, first = run(server.url)
    assert code == 0
    assert first["chats_found"] == 2 and first["messages_added"] == 33
    assert first["conversation_entries_updated"] == 4
    assert stream(client, "a:b") == expected(seed)
    state = snapshot(server)

    code, second = run(server.url)
    assert code == 0
    assert second["messages_added"] == 0 and second["messages_already_present"] == 33
    assert second["conversation_entries_updated"] == 0 and second["chats_changed"] == 0
    assert snapshot(server) == state


def test_dry_run_writes_nothing_and_reports_what_a_run_adds(server: RedisServer, run: Any) -> None:
    client = server.client()
    write_seed(client, "a:b", [("a", "one", T0), ("b", "two", T0), ("a", "three", T0 + 5)])
    write_seed(client, "b:c", [("c", "old", T0)])
    # b:c is already in use here, with a newer message: a merge

    client.xadd(stream_key(parse_chat("b:c")), {"s": "b", "t": "new"}, id=f"{(T0 + 10) * 10**6 + 17}-0")
    client.zadd("x:y", {"junk": 1})
    state = snapshot(server)

    code, dry = run(server.url, "--dry-run")

    assert code == 0
    assert snapshot(server) == state
    assert client.dbsize() == len(state)
    assert dry["dry_run"] is True
    assert dry["messages_added"] == 4 and dry["chats_merged"] == 1 and dry["chats_changed"] == 2
    assert dry["messages_invalid"] == 1
    assert dry["conversation_entries_updated"] == 4  # a, b; b, c

    code, real = run(server.url)
    assert code == 0
    for field in (
        "messages_added",
        "chats_merged",
        "chats_changed",
        "messages_invalid",
        "conversation_entries_updated",
    ):
        assert real[field] == dry[field], field
    assert stream(client, "b:c") == [(T0 * 10**6, "c", "old"), ((T0 + 10) * 10**6 + 17, "b", "new")]


def test_invalid_members_are_skipped_and_counted(server: RedisServer, run: Any) -> None:
    client = server.client()
    raw = redis.Redis(port=server.port)
    ts = T0
    members: dict[bytes | str, float] = {
        "not json": ts,
        b"\xff\xfe{}": ts,  # not UTF-8
        "[1, 2, 3]": ts,
        '{"sender":"a","message":"no timestamp"}': ts,
        '{"sender":"a","message":"x","timestamp":"1684758444"}': ts,
        '{"sender":"a","message":"y","timestamp":1684758444.0}': ts,
        '{"sender":"a","message":null,"timestamp":1684758444}': ts,
        go_json("a", "scored elsewhere", ts): ts + 1,
        go_json("a", "zero", 0): 0,
        go_json("a", "negative", -5): -5,
        go_json("c", "an intruder", ts): ts,
        go_json("a b", "no such name", ts): ts,
        '{"sender":"a","message":"\\ud800","timestamp":1684758444}': ts,  # a lone surrogate
        go_json("a", "fine", ts): ts,
        go_json("B", "fine too", ts): ts,
        '{"timestamp":1684758444,"message":"keys in another order","sender":"b","extra":1}': ts,
    }
    raw.zadd("a:b", members)

    code, report = run(server.url)

    assert code == 0
    assert report["messages_read"] == 16
    assert report["invalid_reasons"] == {
        "not_json": 2,
        "not_object": 1,
        "bad_fields": 4,
        "timestamp_mismatch": 1,
        "timestamp_range": 2,
        "sender_not_member": 2,
        "bad_text": 1,
    }
    assert report["messages_invalid"] == 13 and report["messages_added"] == 3
    # ZRANGE order within the second: the members' bytes ('{"sender":"B' < '{"sender":"a' < '{"timestamp')
    assert [(s, t) for _, s, t in stream(client, "a:b")] == [
        ("b", "fine too"),
        ("a", "fine"),
        ("b", "keys in another order"),
    ]
    assert [t for t, _, _ in stream(client, "a:b")] == [ts * 10**6, ts * 10**6 + 1, ts * 10**6 + 2]
    assert raw.zcard("a:b") == 16  # the seed's key as it was


def test_only_seed_chats_are_migrated_and_our_keys_are_never_touched(server: RedisServer, run: Any) -> None:
    client = server.client()
    client.set("foo", "bar")
    client.hset("x:y", "f", "v")  # a chat's name, but not a sorted set
    client.zadd("a:b:c", {"m": 1})
    client.zadd("bad name:x", {"m": 1})
    ours = parse_chat("p:q")
    client.xadd(stream_key(ours), {"s": "p", "t": "ours"}, id="5-0")
    client.zadd(user_chats_key("p"), {"p:q": 5})
    # two keys naming one chat (the seed never wrote "B:a"; the migration takes both)
    write_seed(client, "a:b", [("a", "one", T0), ("b", "two", T0 + 1)])
    write_seed(client, "B:a", [("a", "one", T0), ("b", "zero", T0)])
    raw = redis.Redis(port=server.port)
    untouched = [b"foo", b"x:y", b"a:b:c", b"bad name:x", stream_key(ours).encode(), user_chats_key("p").encode()]
    before = {key: raw.dump(key) for key in untouched}

    code, report = run(server.url)

    assert code == 0
    assert report["chats_found"] == 1 and report["messages_added"] == 3
    assert stream(client, "a:b") == [
        (T0 * 10**6, "a", "one"),
        (T0 * 10**6 + 1, "b", "zero"),
        ((T0 + 1) * 10**6, "b", "two"),
    ]
    assert {key: raw.dump(key) for key in untouched} == before
    assert report["keys_skipped"] == 4
    assert sorted((s["key"], s["reason"]) for s in report["skipped_keys_sample"]) == [
        ("a:b:c", "not a chat name"),
        ("bad name:x", "not a chat name"),
        ("foo", "not a chat name"),
        ("x:y", "a hash, not a sorted set"),
    ]


def test_conversation_lists_get_the_chat_with_its_last_send_time(server: RedisServer, run: Any) -> None:
    client = server.client()
    write_seed(client, "ann:bob", [("ann", "hi", T0), ("bob", "hey", T0 + 3)])
    write_seed(client, "solo:solo", [("solo", "a note to self", T0)])
    later = (T0 + 999) * 10**6
    client.zadd(user_chats_key("bob"), {"ann:bob": later})  # already listed, more recently active

    code, report = run(server.url)

    assert code == 0
    assert client.zscore(user_chats_key("ann"), "ann:bob") == (T0 + 3) * 10**6
    assert client.zscore(user_chats_key("bob"), "ann:bob") == later  # GT: never moved back
    assert client.zrange(user_chats_key("solo"), 0, -1, withscores=True) == [("solo:solo", T0 * 10**6)]
    assert report["conversation_entries_updated"] == 2


def test_trimmed_history_and_retention_are_respected(server: RedisServer, run: Any) -> None:
    """Messages at or before what retention already trimmed from the chat are
    not brought back, nor those older than RETENTION_MAX_AGE_S; the merged
    stream keeps the live one's trimming point."""
    client = server.client()
    key = stream_key(parse_chat("a:b"))
    for i in range(1, 4):
        client.xadd(key, {"s": "a", "t": f"live {i}"}, id=f"{(T0 + 100 * i) * 10**6}-0")
    # Retention took "live 1", as send.lua's trimming does.
    client.xtrim(key, minid=f"{(T0 + 200) * 10**6}", approximate=False)
    before = client.xinfo_stream(key)
    assert (before["entries-added"], before["length"]) == (3, 2)
    write_seed(
        client,
        "a:b",
        [("b", "trimmed long ago", T0), ("b", "at the trimming point", T0 + 100), ("b", "between", T0 + 250)],
    )
    write_seed(client, "a:b", [("b", "after", T0 + 500)])
    now = int(time.time())
    write_seed(client, "c:d", [("c", "too old", now - 7200), ("d", "recent", now - 60)])

    code, report = run(server.url, RETENTION_MAX_AGE_S=str(10 * 365 * 86400))
    assert code == 0
    assert report["messages_expired"] == 2 and report["messages_added"] == 4 and report["chats_merged"] == 1
    assert [t for _, _, t in stream(client, "a:b")] == ["live 2", "between", "live 3", "after"]
    after = client.xinfo_stream(key)
    assert after["entries-added"] - after["length"] == 1  # still says one was trimmed
    assert after["last-generated-id"] == f"{(T0 + 500) * 10**6}-0"

    client.delete(stream_key(parse_chat("c:d")))
    code, report = run(server.url, RETENTION_MAX_AGE_S="3600")
    assert code == 0
    assert report["messages_expired"] == 2 + 1  # a:b's two as before, and "too old"
    assert [t for _, _, t in stream(client, "c:d")] == ["recent"]
    assert report["messages_added"] == 1


def test_a_merge_keeps_the_streams_last_id(server: RedisServer, run: Any) -> None:
    """send.lua never hands out a send_time at or below the stream's
    last-generated-id; the merged copy takes it over."""
    client = server.client()
    key = stream_key(parse_chat("a:b"))
    client.xadd(key, {"s": "a", "t": "live"}, id=f"{(T0 + 10) * 10**6}-0")
    client.execute_command("XSETID", key, f"{(T0 + 50) * 10**6}-0")  # as after a send whose entry is gone
    write_seed(client, "a:b", [("a", "old", T0)])

    code, report = run(server.url)

    assert code == 0 and report["chats_merged"] == 1 and report["messages_added"] == 1
    assert client.xinfo_stream(key)["last-generated-id"] == f"{(T0 + 50) * 10**6}-0"
    assert stream(client, "a:b") == [(T0 * 10**6, "a", "old"), ((T0 + 10) * 10**6, "a", "live")]


def test_a_send_during_the_merge_makes_it_retry_and_keeps_the_send(
    server: RedisServer, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = server.client()
    key = stream_key(parse_chat("a:b"))
    client.xadd(key, {"s": "b", "t": "live"}, id=f"{(T0 + 10) * 10**6}-0")
    write_seed(client, "a:b", [("a", "old", T0)])
    original = ImportTarget.merge
    sends: list[int] = []

    def merge_with_a_send(self: ImportTarget, *args: Any) -> None:
        if len(sends) < 2:  # a send arrives after the stream was read, twice
            sends.append((T0 + 20 + len(sends)) * 10**6)
            client.xadd(key, {"s": "b", "t": f"sent meanwhile {len(sends)}"}, id=f"{sends[-1]}-0")
        original(self, *args)

    monkeypatch.setattr(ImportTarget, "merge", merge_with_a_send)
    code, report = run(server.url)

    assert code == 0 and report["chats_merged"] == 1 and report["messages_added"] == 1
    assert stream(client, "a:b") == [
        (T0 * 10**6, "a", "old"),
        ((T0 + 10) * 10**6, "b", "live"),
        (sends[0], "b", "sent meanwhile 1"),
        (sends[1], "b", "sent meanwhile 2"),
    ]
    assert not client.exists(migrating_key(parse_chat("a:b")))


def test_a_chat_that_keeps_changing_is_reported_failed_and_left_intact(
    server: RedisServer, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = server.client()
    key = stream_key(parse_chat("a:b"))
    client.xadd(key, {"s": "b", "t": "live"}, id=f"{(T0 + 10) * 10**6}-0")
    write_seed(client, "a:b", [("a", "old", T0)])
    write_seed(client, "c:d", [("c", "fine", T0)])
    original = ImportTarget.merge
    sent = iter(range(1, 1000))

    def merge_with_a_send(self: ImportTarget, *args: Any) -> None:
        client.xadd(key, {"s": "b", "t": "busy"}, id=f"{(T0 + 100) * 10**6 + next(sent)}-0")
        original(self, *args)

    monkeypatch.setattr(ImportTarget, "merge", merge_with_a_send)
    code, report = run(server.url)

    assert code == 1
    assert report["chats_failed"] == 1 and report["messages_in_failed_chats"] == 1
    assert report["failed_chats"][0]["chat"] == "a:b"
    assert "kept changing" in report["failed_chats"][0]["error"]
    assert report["messages_added"] == 1  # c:d went on
    assert [t for _, _, t in stream(client, "a:b")] == ["live"] + ["busy"] * ATTEMPTS
    assert not client.exists(migrating_key(parse_chat("a:b")))


def test_an_unreachable_redis_is_reported(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.delenv("REDIS_CLUSTER_NODES", raising=False)
    assert migrate_seed.main(["--timeout-ms", "500"]) == 2
    assert "error: target Redis redis://127.0.0.1:1/0" in capsys.readouterr().err


# --- Redis Cluster --------------------------------------------------------------


def test_cluster_target_with_a_separate_seed_redis(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path / "cluster")
    source = RedisServer(tmp_path / "seed")
    try:
        cluster.start()
        source.start()
        chats = {f"u{i}:v{i}": [("u" + str(i), f"hi {j}", T0 + j // 2) for j in range(5)] for i in range(12)}
        for room, seed in chats.items():
            write_seed(source.client(), room, seed)
        target = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port, decode_responses=True)
        target.xadd(stream_key(parse_chat("u0:v0")), {"s": "v0", "t": "live"}, id=f"{(T0 + 60) * 10**6}-0")
        env = {"REDIS_CLUSTER_NODES": cluster.addresses}

        code, _, stderr = run_subprocess(env)
        assert code == 2 and "--source-url is required" in stderr

        code, report, stderr = run_subprocess(env, "--source-url", source.url)
        assert code == 0, stderr
        assert report["chats_found"] == 12 and report["messages_added"] == 60 and report["chats_merged"] == 1
        for room, seed in chats.items():
            want = expected(seed) + ([((T0 + 60) * 10**6, "v0", "live")] if room == "u0:v0" else [])
            assert stream(target, room) == want
            assert target.zscore(user_chats_key(room.split(":")[0]), room) == want[-1][0]
        code, again, _ = run_subprocess(env, "--source-url", source.url)
        assert code == 0 and again["messages_added"] == 0 and again["messages_already_present"] == 60
    finally:
        source.stop()
        cluster.stop()


# --- The placement rule, without Redis -------------------------------------------


def test_placement_moves_past_other_messages_and_finds_its_own_again() -> None:
    messages = [SeedMessage(100, "a", "x"), SeedMessage(101, "a", "y"), SeedMessage(101, "b", "z")]
    existing = {(100, 0): {"s": "b", "t": "someone else's"}, (101, 0): {"s": "b", "t": "another"}}
    plan = make_plan(messages, existing)
    assert [t for t, _ in plan.missing] == [102, 103, 104]  # past the taken ones, strictly increasing
    assert plan.present == 0 and plan.last_send_time == 104
    after = {**existing, **{(t, 0): {"s": m.sender, "t": m.text} for t, m in plan.missing}}
    again = make_plan(messages, after)
    assert again.missing == [] and again.present == 3 and again.last_send_time == 104


def test_placement_below_the_floor_is_expired_but_still_counts_for_order() -> None:
    messages = [SeedMessage(5, "a", "old"), SeedMessage(10, "a", "new")]
    plan = make_plan(messages, {}, floor=7)
    assert plan.expired == 1 and [t for t, _ in plan.missing] == [10]


def test_wrapper_script() -> None:
    script = ROOT / "scripts" / "migrate-seed-data"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert 'source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"' in text
    assert 'exec "$PY" -m rpc_server.tools.migrate_seed "$@"' in text
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.parametrize("dry_run", [False, True])
def test_every_summary_line_separates_its_label_from_its_value(dry_run: bool) -> None:
    """`updated:2` once ran together in the dry run's longest label."""
    report = Report(dry_run=dry_run)
    for line in report.summary().splitlines()[1:]:
        assert re.fullmatch(r" +[^:]+: +\S.*| +'.*': .*| +\.\.\. .*|  took .*", line), line
