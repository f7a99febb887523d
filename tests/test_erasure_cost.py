"""What the admin calls cost with a big database (issue 12, item 9).

Deleting a chat must cost what the chat holds, not the size of the
database: with a million unrelated keys in Redis, `DELETE
/api/admin/chats/{chat}` issues no SCAN and answers 200 under the normal
1 s RPC deadline, and the chat's idempotency records are gone. Erasing a
user may still scan (a chat missing from a lagging conversation list must
be erased too), so it runs in bounded batches under a deadline of its own,
and a repeated call resumes where the last one stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from rpc_server.chat_id import parse_chat
from rpc_server.storage.erasure import SCAN_COUNT, Erasure
from rpc_server.storage.keys import (
    erasure_progress_key,
    idempotency_index_key,
    idempotency_key,
    stream_key,
    user_chat_keys_pattern,
    user_chats_key,
)
from rpc_server.storage.redis_client import connect_redis
from rpc_server.storage.store import MessageStore
from tests.conftest import Api
from tests.servers import ADMIN_TOKEN, ROOT, HttpServer, RedisServer, RpcServer, Stack, thrift_client

UNRELATED_KEYS = 1_000_000
LOAD_SCRIPT = """
for i = ARGV[1], ARGV[2] do
  redis.call('SET', 'im:v1:{o' .. i .. ':p' .. i .. '}:k:key-' .. i, '1796085016232904 0123456789abcdef')
end
return 0
"""


class BigStack:
    """Redis holding a million unrelated keys (other chats' idempotency
    records, the keys that pile up: one per keyed send for 24 h), an RPC
    server with ADMIN_TOKEN, and gunicorn with the default 1 s RPC deadline."""

    def __init__(self, directory: Path) -> None:
        # No AOF: loading a million keys is then quick; nothing here is about persistence.
        self.redis = RedisServer(directory / "redis", extra=["--appendonly", "no"])
        self.rpc = RpcServer(directory, self.redis.url, ADMIN_TOKEN=ADMIN_TOKEN)
        self.http = HttpServer(directory, self.rpc.port, workers=1, ADMIN_ERASE_TIMEOUT_S="1")

    def start(self) -> BigStack:
        self.redis.start()
        client = self.redis.client()
        step = 100_000
        for first in range(0, UNRELATED_KEYS, step):
            client.eval(LOAD_SCRIPT, 0, first, first + step - 1)
        assert client.dbsize() >= UNRELATED_KEYS
        self.rpc.start()
        self.http.start()
        return self

    def stop(self) -> None:
        for server in (self.http, self.rpc, self.redis):
            server.stop()

    def client(self) -> redis.Redis:
        return self.redis.client()

    def send(self, chat: str, sender: str, text: str, key: str | None = None) -> int:
        headers = {"Idempotency-Key": key} if key else {}
        body = {"chat": chat, "text": text, "sender": sender}
        r = requests.post(self.http.url + "/api/send", json=body, headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        return int(r.json()["send_time"])

    def delete(self, path: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return requests.delete(self.http.url + path, headers=headers, timeout=60)

    def command_calls(self, command: str) -> int:
        stats: dict[str, Any] = self.client().info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigStack]:
    stack = BigStack(tmp_path_factory.mktemp("big"))
    try:
        yield stack.start()
    finally:
        stack.stop()


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def test_deleting_a_chat_issues_no_scan_and_answers_within_the_rpc_deadline(big: BigStack) -> None:
    a, b = f"a-{_tag()}", f"b-{_tag()}"
    chat = parse_chat(f"{a}:{b}")
    keys = [f"key-{i}" for i in range(5)]
    for i, key in enumerate(keys):
        big.send(chat.id, a if i % 2 else b, f"keyed {i}", key=key)
    big.send(chat.id, a, "not keyed")
    client = big.client()
    assert all(client.exists(idempotency_key(chat, key)) for key in keys)
    client.config_resetstat()

    r = big.delete(f"/api/admin/chats/{chat.id}")

    assert r.status_code == 200, r.text  # the HTTP tier's RPC deadline is the default 1 s
    assert r.json() == {"chats_deleted": 1, "messages_deleted": 6}
    assert big.command_calls("scan") == 0, client.info("commandstats")
    assert big.command_calls("keys") == 0
    assert [key for key in keys if client.exists(idempotency_key(chat, key))] == []
    assert client.keys(f"im:v1:{{{chat.id}}}*") == []  # nothing of the chat is left
    assert client.exists(stream_key(chat)) == 0
    assert client.zscore(user_chats_key(a), chat.id) is None
    assert client.dbsize() >= UNRELATED_KEYS  # and nothing else went


def test_records_written_before_the_index_existed_are_indexed_by_a_one_off_command(stack: Stack) -> None:
    """An older version kept no per-chat index of idempotency records:
    `python -m rpc_server.tools.index_records` adds them (or they expire). (The
    session's stack: the one-off goes through every record of its Redis.)"""
    api = Api(stack.http.url)
    a, b = f"a-{_tag()}", f"b-{_tag()}"
    chat = parse_chat(f"{a}:{b}")
    assert api.send(chat.id, "hello", a, key="new-layout").status_code == 200
    client = stack.redis.client()
    old = idempotency_key(chat, "old-layout")
    client.set(old, "1796085016232904 0123456789abcdef", ex=3600)  # as the older send.lua wrote it
    forever = f"im:v1:{{{chat.id}}}:k:not-ours"
    client.set(forever, "x")  # never expires: not a record of ours, left alone

    environment = {"PATH": "/usr/bin:/bin", "REDIS_URL": stack.redis.url}
    argv = [sys.executable, "-m", "rpc_server.tools.index_records"]
    done = subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["records_indexed"] >= 2 and counts["records_seen"] >= 3, counts
    assert client.zscore(idempotency_index_key(chat), "not-ours") is None
    now = int(client.time()[0])
    assert now + 3590 <= (client.zscore(idempotency_index_key(chat), "old-layout") or 0) <= now + 3601
    assert client.ttl(idempotency_index_key(chat)) > 3600  # the index lives as long as its last record

    before = _scans(client)
    r = requests.delete(
        f"{stack.http.url}/api/admin/chats/{chat.id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    )
    assert r.status_code == 200, r.text
    assert _scans(client) == before
    assert client.exists(old, idempotency_key(chat, "new-layout")) == 0


def _scans(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


def _scan_calls_for_one_pass(client: redis.Redis, match: str, count: int) -> int:
    calls, cursor = 0, 0
    while True:
        cursor, _ = client.scan(cursor, match=match, count=count)
        calls += 1
        if cursor == 0:
            return calls


def test_erasing_a_user_runs_in_batches_and_a_repeated_call_resumes(big: BigStack) -> None:
    """ADMIN_ERASE_TIMEOUT_S=1 here: one HTTP call cannot scan a million
    keys; it answers 202 (not done), and the next call goes on from there."""
    e, x, t = f"e-{_tag()}", f"x-{_tag()}", _tag()
    listed, lagging, other = f"{e}:{x}", f"{e}:z-{t}", f"{x}:y-{t}"
    big.send(listed, e, "listed", key="k1")
    big.send(lagging, e, "missing from the list", key="k2")
    big.send(other, x, "stays")
    client = big.client()
    client.zrem(user_chats_key(e), lagging)  # as if the list update had been lost
    one_pass = _scan_calls_for_one_pass(client, user_chat_keys_pattern(e), SCAN_COUNT)
    client.config_resetstat()

    answers = []
    while len(answers) < 50:
        r = big.delete(f"/api/admin/users/{e}")
        assert r.status_code in (200, 202), r.text
        answers.append(r.json())
        if r.status_code == 200:
            break
    assert answers[-1]["done"] is True and all(a["done"] is False for a in answers[:-1])
    assert len(answers) >= 2, "one call scanned everything: the test no longer tests resuming"
    assert sum(a["chats_deleted"] for a in answers) == 2
    assert sum(a["messages_deleted"] for a in answers) == 2
    scans = big.command_calls("scan")
    # Resuming: one pass in all (a call that started over would add a pass each).
    assert scans <= one_pass + len(answers), (scans, one_pass, len(answers))
    for chat in (listed, lagging):
        assert client.keys(f"im:v1:{{{parse_chat(chat).id}}}*") == [], chat
    assert client.exists(user_chats_key(e)) == 0
    assert client.xlen(stream_key(parse_chat(other))) == 1
    assert client.keys(f"im:v1:u:{{{e}}}*") == []  # the progress record is gone too


# --- the record index, and erasure steps, on the session's Redis --------------


@pytest.fixture
def store(stack: Stack) -> MessageStore:
    return MessageStore(connect_redis(stack.redis.url, 2.0, 4, 0.5), idempotency_ttl_s=600)


def test_a_keyed_send_indexes_its_record_and_prunes_expired_ones(stack: Stack, store: MessageStore) -> None:
    chat = parse_chat(f"r-{_tag()}:s-{_tag()}")
    client = stack.redis.client()
    index = idempotency_index_key(chat)
    assert index == f"im:v1:{{{chat.id}}}:k"  # the chat's hash tag: its slot in a cluster
    first = store.append(chat, chat.first, "one", key="k1")
    store.append(chat, chat.first, "unkeyed")
    assert store.append(chat, chat.first, "one", key="k1") == first  # a replay adds nothing
    now = int(client.time()[0])
    assert client.zrange(index, 0, -1) == ["k1"]
    assert now + 598 <= (client.zscore(index, "k1") or 0) <= now + 600
    assert 600 < client.ttl(index) <= 660  # it outlives its last record, by a minute at most
    client.zadd(index, {"long-gone": now - 5, "just-now": now})  # records that expired
    store.append(chat, chat.second, "two", key="k2")
    assert len(client.zrange(index, 0, -1)) == 4  # pruned at most once a minute
    client.expireat(index, now + 30)  # as a minute later: the index's expiry is due for renewal
    store.append(chat, chat.second, "three", key="k3")
    assert sorted(client.zrange(index, 0, -1)) == ["just-now", "k1", "k2", "k3"]  # only the ones over a second ago go
    assert 600 < client.ttl(index) <= 661


def test_deleting_a_chat_deletes_its_records_in_batches(stack: Stack, store: MessageStore) -> None:
    chat = parse_chat(f"r-{_tag()}:s-{_tag()}")
    client = stack.redis.client()
    keys = [f"key-{i}" for i in range(2500)]  # more than one RECORD_BATCH
    for key in keys:
        store.append(chat, chat.first, key, key=key)
    assert client.zcard(idempotency_index_key(chat)) == len(keys)
    erased = Erasure(store).delete_chat(chat)
    assert (erased.chats, erased.messages, erased.done) == (1, len(keys), True)
    assert client.keys(f"im:v1:{{{chat.id}}}*") == []


class StepClock:
    """A clock that moves a second each time it is read: with a budget under
    a second, each erase_user call does exactly one step."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_erase_user_steps_resume_from_the_stored_cursor(stack: Stack, store: MessageStore) -> None:
    client = stack.redis.client()
    user = f"e-{_tag()}"
    listed = [parse_chat(f"{user}:l{i}-{_tag()}") for i in range(3)]
    lagging = parse_chat(f"{user}:z-{_tag()}")
    for chat in [*listed, lagging]:
        store.append(chat, chat.second, "hi", key="k")
    client.zrem(user_chats_key(user), lagging.id)  # as if its list update had been lost
    client.set(f"im:v1:{{{lagging.id}}}:k:older-layout", "1 x", ex=600)  # a record in no index
    erasure = Erasure(store, clock=StepClock())

    answers = []
    while len(answers) < 10_000:
        answers.append(erasure.erase_user(user, budget_s=0.5))
        if answers[-1].done:
            break
        if len(answers) > len(listed):  # the list is done: the scan's progress is stored
            progress = json.loads(client.get(erasure_progress_key(user)) or "{}")
            assert set(progress["cursors"]) == {""} and progress["cursors"][""] > 0
    assert [a.chats for a in answers[: len(listed)]] == [1, 1, 1]  # a listed chat a step
    assert sum(a.chats for a in answers) == 4 and answers[-1].done
    for chat in [*listed, lagging]:
        assert client.keys(f"im:v1:{{{chat.id}}}*") == [], chat
    assert client.keys(f"im:v1:u:{{{user}}}*") == []
    # A scan step looks at SCAN_COUNT keys: about one pass over the database in all.
    assert len(answers) - len(listed) <= client.dbsize() // SCAN_COUNT * 2 + 10


def test_an_erasure_whose_nodes_changed_starts_over(stack: Stack, store: MessageStore) -> None:
    client = stack.redis.client()
    user = f"e-{_tag()}"
    chat = parse_chat(f"{user}:z-{_tag()}")
    store.append(chat, chat.second, "hi")
    client.set(erasure_progress_key(user), json.dumps({"cursors": {"10.0.0.9:6379": 12345}}), ex=60)
    erased = Erasure(store).erase_user(user, budget_s=60)
    assert (erased.chats, erased.done) == (1, True)


@pytest.mark.parametrize("budget_ms", [-1, 60_001])
def test_an_erase_budget_out_of_range_is_a_400(stack: Stack, rpc: Any, budget_ms: int) -> None:
    client = thrift_client(rpc, stack.rpc.port)
    answer = client.EraseUser(rpc.EraseUserRequest(User="nobody", AdminToken=ADMIN_TOKEN, BudgetMs=budget_ms))
    client.close()
    assert answer.Code == 400 and "BudgetMs" in answer.Msg
