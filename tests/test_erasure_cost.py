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
from rpc_server.store import idempotency_key, stream_key, user_chats_key
from tests.servers import ADMIN_TOKEN, ROOT, HttpServer, RedisServer, RpcServer

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


def test_records_written_before_the_index_existed_are_indexed_by_a_one_off_command(big: BigStack) -> None:
    """An older version kept no per-chat index of idempotency records:
    `python -m rpc_server.index_records` adds them (or they expire)."""
    a, b = f"a-{_tag()}", f"b-{_tag()}"
    chat = parse_chat(f"{a}:{b}")
    big.send(chat.id, a, "hello", key="new-layout")
    client = big.client()
    old = idempotency_key(chat, "old-layout")
    client.set(old, "1796085016232904 0123456789abcdef", ex=3600)  # as the older send.lua wrote it

    environment = {"PATH": "/usr/bin:/bin", "REDIS_URL": big.redis.url}
    done = subprocess.run(
        [sys.executable, "-m", "rpc_server.index_records"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert '"records_indexed": ' in done.stdout

    client.config_resetstat()
    r = big.delete(f"/api/admin/chats/{chat.id}")
    assert r.status_code == 200, r.text
    assert big.command_calls("scan") == 0
    assert client.exists(old, idempotency_key(chat, "new-layout")) == 0


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
    from rpc_server.erasure import SCAN_COUNT, scan_pattern

    one_pass = _scan_calls_for_one_pass(client, scan_pattern(e), SCAN_COUNT)
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
