"""Data lifecycle against real servers: retention and the HistoryTruncated
flag, conversation lists, deleting a chat, erasing a user, the reindex
command, and the Caller checks of the Thrift service."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from rpc_server.chat_id import parse_chat
from rpc_server.errors import StorageUnavailable
from rpc_server.storage.conversations import Conversations
from rpc_server.storage.keys import idempotency_key, stream_key, user_chats_key
from rpc_server.storage.redis_client import connect_redis
from rpc_server.storage.store import MessageStore
from tests.conftest import Api
from tests.servers import ADMIN_TOKEN, ROOT, HttpServer, RpcServer, Stack, thrift_client, wait_until


def _tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def retention_rpc(stack: Stack, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RpcServer]:
    """An RPC server with the retention settings of the test's parameter,
    on the session's Redis."""
    server = RpcServer(tmp_path, stack.redis.url, **request.param)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _send(client: Any, rpc: Any, chat: str, sender: str, text: str) -> int:
    answer = client.Send(rpc.SendRequest(message=rpc.Message(Chat=chat, Text=text, Sender=sender)))
    assert answer.Code == 0, answer.Msg
    return int(answer.SendTime)


def _pull(client: Any, rpc: Any, chat: str, cursor: int = 0, limit: int = 100, reverse: bool = False) -> Any:
    page = client.Pull(rpc.PullRequest(Chat=chat, Cursor=cursor, Limit=limit, Reverse=reverse))
    assert page.Code == 0, page.Msg
    return page


# --- retention -------------------------------------------------------------


@pytest.mark.parametrize("retention_rpc", [{"RETENTION_MAX_MESSAGES": "5"}], indirect=True)
def test_count_retention_keeps_the_newest_and_says_history_was_truncated(
    stack: Stack, retention_rpc: RpcServer, rpc: Any
) -> None:
    client = thrift_client(rpc, retention_rpc.port)
    chat = f"a-{_tag()}:b-{_tag()}"
    times = [_send(client, rpc, chat, chat.split(":")[0], f"m{i}") for i in range(250)]
    kept = stack.redis.client().xlen(stream_key(parse_chat(chat)))
    assert kept == 5  # trimmed back to exactly 5 once over by a tenth (0 here)

    # Ascending from the start: the page begins after a gap, and says so.
    page = _pull(client, rpc, chat)
    assert page.HistoryTruncated is True
    assert [m.SendTime for m in page.Messages] == times[-kept:]
    # From a cursor after the trimmed part: nothing was skipped.
    assert _pull(client, rpc, chat, cursor=times[-kept]).HistoryTruncated is False
    # Reverse: pages say nothing until the last one, which reaches the gap.
    first = _pull(client, rpc, chat, limit=kept - 1, reverse=True)
    assert first.HasMore is True and first.HistoryTruncated is False
    last = _pull(client, rpc, chat, cursor=first.NextCursor, limit=kept, reverse=True)
    assert last.HasMore is False and last.HistoryTruncated is True
    # send_times still increase after trimming.
    assert _send(client, rpc, chat, chat.split(":")[0], "after") > times[-1]
    client.close()


@pytest.mark.parametrize("retention_rpc", [{"RETENTION_MAX_AGE_S": "1"}], indirect=True)
def test_age_retention_trims_older_messages_on_the_next_send(stack: Stack, retention_rpc: RpcServer, rpc: Any) -> None:
    client = thrift_client(rpc, retention_rpc.port)
    chat = f"a-{_tag()}:b-{_tag()}"
    old = _send(client, rpc, chat, chat.split(":")[0], "old")
    assert [m.Text for m in _pull(client, rpc, chat).Messages] == ["old"]
    wait_until(lambda: time.time() * 1e6 > old + 1.2e6, 60, "the first message to be older than 1 s")
    new = _send(client, rpc, chat, chat.split(":")[1], "new")
    page = _pull(client, rpc, chat)
    assert [m.SendTime for m in page.Messages] == [new]
    assert page.HistoryTruncated is True
    assert _pull(client, rpc, chat, cursor=new).HistoryTruncated is False
    client.close()


def test_without_retention_nothing_is_truncated(api: Api, chat: str) -> None:
    member = chat.split(":")[0]
    for i in range(3):
        api.send_ok(chat, f"m{i}", member)
    assert api.pull_ok(chat)["history_truncated"] is False
    assert api.pull_ok(chat, reverse=True)["history_truncated"] is False


# --- conversation lists ----------------------------------------------------


def _chats(api: Api, user: str, **fields: Any) -> dict[str, Any]:
    r = requests.get(api.base_url + "/api/chats", params={"user": user, **fields}, timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _all_chats(api: Api, user: str, limit: int) -> list[str]:
    listed: list[str] = []
    cursor = 0
    while True:
        page = _chats(api, user, cursor=cursor, limit=limit)
        listed += [c["chat"] for c in page["chats"]]
        if not page["has_more"]:
            return listed
        cursor = page["next_cursor"]


def test_chats_lists_a_users_chats_most_recent_first_with_the_last_message(api: Api) -> None:
    u, t = f"u-{_tag()}", _tag()
    peers = [f"p{i}-{t}" for i in range(3)]
    for peer in peers:
        api.send_ok(f"{u}:{peer}", f"hello {peer}", u)
    last = api.send_ok(f"{peers[0]}:{u}", "back to you", peers[0])  # the first chat becomes the most recent
    api.send_ok(f"{peers[1]}:{peers[2]}", "not u's chat", peers[1])

    page = _chats(api, u.upper())  # user names are case-insensitive
    expected = [":".join(sorted((u, p))) for p in (peers[0], peers[2], peers[1])]
    assert [c["chat"] for c in page["chats"]] == expected
    assert page["has_more"] is False and page["next_cursor"] == 0
    top = page["chats"][0]
    assert top["last_send_time"] == last
    assert top["last_message"] == {"chat": expected[0], "text": "back to you", "sender": peers[0], "send_time": last}
    # Paging one at a time yields each chat once, in the same order.
    assert _all_chats(api, u, limit=1) == expected
    # The peer sees the chat too; a note to self is listed once.
    assert [c["chat"] for c in _chats(api, peers[2])["chats"]] == [f"{peers[1]}:{peers[2]}", expected[1]]
    api.send_ok(f"{u}:{u}", "note", u)
    assert _chats(api, u)["chats"][0]["chat"] == f"{u}:{u}"
    assert _chats(api, f"nobody-{_tag()}") == {"chats": [], "has_more": False, "next_cursor": 0}


def test_chats_bad_input_is_400(api: Api) -> None:
    for params in ({}, {"user": "a:b"}, {"user": "x", "cursor": "-1"}, {"user": "x", "limit": "-1"}, {"usr": "x"}):
        r = requests.get(api.base_url + "/api/chats", params=params, timeout=10)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["code"] == 400


def test_paging_chats_with_tied_send_times_repeats_and_skips_nothing(stack: Stack) -> None:
    """Chats active in the same microsecond (possible across shards): the
    page boundary never splits a tie."""
    store = MessageStore(connect_redis(stack.redis.url, 1.0, 4, 0.5), idempotency_ttl_s=60)
    conversations = Conversations(store)
    user, t = f"tie-{_tag()}", _tag()
    chats = [parse_chat(f"{user}:q{i}-{t}") for i in range(7)]
    for chat in chats:
        store.append(chat, user, "hi")
    scores = [100, 90, 90, 90, 80, 80, 70]  # rewritten scores, with ties
    client = stack.redis.client()
    client.delete(user_chats_key(user))
    client.zadd(user_chats_key(user), {chat.id: score for chat, score in zip(chats, scores, strict=True)})
    for limit in (1, 2, 3, 4):
        seen, cursor, pages = [], 0, 0
        while True:
            page = conversations.list(user, cursor, limit)
            assert page.items, "a page with more to come is never empty"
            seen += [s.chat.id for s in page.items]
            pages += 1
            if not page.has_more:
                break
            cursor = page.next_cursor
        assert sorted(seen) == sorted(c.id for c in chats), limit
        assert len(seen) == len(set(seen)), limit


# --- deletion and erasure --------------------------------------------------


def _delete(api: Api, path: str, token: str | None = ADMIN_TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.delete(api.base_url + path, headers=headers, timeout=10)


def test_admin_routes_need_the_admin_token(api: Api, chat: str) -> None:
    api.send_ok(chat, "keep me", chat.split(":")[0])
    for token in (None, "wrong", ADMIN_TOKEN + "x"):
        r = _delete(api, f"/api/admin/chats/{chat}", token)
        assert r.status_code == 401, r.text
        assert r.json()["code"] == 401 and "token" in r.json()["msg"]
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert token is None or token not in r.text
    assert len(api.pull_ok(chat)["messages"]) == 1


def test_a_deleted_chat_disappears_from_pulls_and_both_lists(api: Api, stack: Stack) -> None:
    a, b, t = f"a-{_tag()}", f"b-{_tag()}", _tag()
    chat, other = f"{a}:{b}", f"{a}:c-{t}"
    r = api.send(chat, "first", a, key="k-1")
    assert r.status_code == 200
    api.send_ok(chat, "second", b)
    api.send_ok(other, "stays", a)

    r = _delete(api, f"/api/admin/chats/{b.upper()}:{a}")
    assert r.status_code == 200, r.text
    assert r.json() == {"chats_deleted": 1, "messages_deleted": 2}
    assert api.pull_ok(chat)["messages"] == []
    assert [c["chat"] for c in _chats(api, a)["chats"]] == [other]
    assert _chats(api, b)["chats"] == []
    redis = stack.redis.client()
    assert redis.exists(idempotency_key(parse_chat(chat), "k-1")) == 0
    # Deleting again deletes nothing; the chat can start anew, and an old key is not a replay.
    assert _delete(api, f"/api/admin/chats/{chat}").json() == {"chats_deleted": 0, "messages_deleted": 0}
    again = api.send(chat, "first", a, key="k-1")
    assert again.status_code == 200
    assert [m["text"] for m in api.pull_ok(chat)["messages"]] == ["first"]


def test_an_idempotency_record_of_a_deleted_chat_is_not_a_replay(stack: Stack) -> None:
    """Even one that outlived the deletion (say, written by a send that raced it)."""
    store = MessageStore(connect_redis(stack.redis.url, 1.0, 4, 0.5), idempotency_ttl_s=60)
    chat = parse_chat(f"r-{_tag()}:s-{_tag()}")
    first = store.append(chat, chat.first, "hi", key="k")
    stack.redis.client().delete(stream_key(chat))  # the chat is gone, its record is not
    second = store.append(chat, chat.first, "hi", key="k")
    assert second != first
    assert [m.send_time for m in store.read(chat, 0, 10, reverse=False).items] == [second]


def test_erasing_a_user_deletes_every_chat_they_are_in(api: Api, stack: Stack) -> None:
    e, x, y, t = f"e-{_tag()}", f"x-{_tag()}", f"y-{_tag()}", _tag()
    api.send_ok(f"{e}:{x}", "to x", e)
    api.send_ok(f"{y}:{e}", "from y", y)
    api.send_ok(f"{e}:{e}", "note to self", e)
    api.send_ok(f"{e}:z-{t}", "missing from the list", e)
    api.send_ok(f"{x}:{y}", "x and y stay", x)
    redis = stack.redis.client()
    redis.zrem(user_chats_key(e), f"{e}:z-{t}")  # as if the list update had been lost

    r = _delete(api, f"/api/admin/users/{e}")
    assert r.status_code == 200, r.text
    assert r.json() == {"chats_deleted": 4, "messages_deleted": 4, "done": True}
    for chat in (f"{e}:{x}", f"{y}:{e}", f"{e}:{e}", f"{e}:z-{t}"):
        assert api.pull_ok(chat)["messages"] == [], chat
    assert redis.exists(user_chats_key(e)) == 0
    assert [c["chat"] for c in _chats(api, x)["chats"]] == [f"{x}:{y}"]
    assert [c["chat"] for c in _chats(api, y)["chats"]] == [f"{x}:{y}"]
    assert [m["text"] for m in api.pull_ok(f"{x}:{y}")["messages"]] == ["x and y stay"]


def test_imctl_admin_commands_and_chats(api: Api, stack: Stack) -> None:
    a, b = f"a-{_tag()}", f"b-{_tag()}"
    api.send_ok(f"{a}:{b}", "hello", a)

    def imctl(*argv: str, token: str | None = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", **({"ADMIN_TOKEN": token} if token else {})}
        command = [sys.executable, "-m", "imctl", "--url", api.base_url, "--json", *argv]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)

    listed = imctl("chats", "--user", a)
    assert listed.returncode == 0, listed.stderr
    assert [c["chat"] for c in json.loads(listed.stdout)["chats"]] == [f"{a}:{b}"]
    refused = imctl("delete-chat", "--chat", f"{a}:{b}", token="nope")
    assert refused.returncode == 1 and "401" in refused.stderr
    deleted = imctl("delete-chat", "--chat", f"{a}:{b}")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {"chats_deleted": 1, "messages_deleted": 1}
    rpc_listed = subprocess.run(
        [sys.executable, "-m", "imctl", "--rpc", f"127.0.0.1:{stack.rpc.port}", "--json", "chats", "--user", a],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(rpc_listed.stdout)["chats"] == []
    erased = imctl("erase-user", "--user", b)
    assert erased.returncode == 0 and json.loads(erased.stdout)["chats_deleted"] == 0


# --- the repair command ----------------------------------------------------


def test_reindex_rebuilds_lost_lists_and_drops_stale_entries(api: Api, stack: Stack) -> None:
    a, b, c = f"a-{_tag()}", f"b-{_tag()}", f"c-{_tag()}"
    api.send_ok(f"{a}:{b}", "ab", a)
    last = api.send_ok(f"{a}:{c}", "ac", c)
    redis = stack.redis.client()
    redis.delete(user_chats_key(a))  # lost
    redis.zadd(user_chats_key(b), {f"{b}:gone-{_tag()}": 1})  # stale: no such chat

    result = subprocess.run(
        [sys.executable, "-m", "rpc_server.tools.reindex"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": stack.redis.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["chats"] >= 2 and counts["entries_removed"] >= 1
    page = _chats(api, a)
    assert [ch["chat"] for ch in page["chats"]] == [f"{a}:{c}", f"{a}:{b}"]
    assert page["chats"][0]["last_send_time"] == last
    assert [ch["chat"] for ch in _chats(api, b)["chats"]] == [f"{a}:{b}"]


# --- Caller checks (the RPC side of AUTH_MODE) -----------------------------


def test_caller_must_be_the_sender_and_a_member(stack: Stack, rpc: Any, thrift_client: Any) -> None:
    client = thrift_client()
    a, b = f"a-{_tag()}", f"b-{_tag()}"
    chat = f"{a}:{b}"
    message = rpc.Message(Chat=chat, Text="hi", Sender=a)
    assert client.Send(rpc.SendRequest(message=message, Caller=b)).Code == 403
    assert client.Send(rpc.SendRequest(message=message, Caller=a.upper())).Code == 0
    assert client.Send(rpc.SendRequest(message=message, Caller="not valid!")).Code == 400
    assert client.Pull(rpc.PullRequest(Chat=chat, Cursor=0, Limit=10, Caller=f"z-{_tag()}")).Code == 403
    assert len(client.Pull(rpc.PullRequest(Chat=chat, Cursor=0, Limit=10, Caller=b)).Messages) == 1
    assert client.ListChats(rpc.ListChatsRequest(User=a, Caller=b)).Code == 403
    assert [c.Chat for c in client.ListChats(rpc.ListChatsRequest(User=a, Caller=a)).Chats] == [chat]


def test_with_auth_the_caller_acts_only_as_itself_in_its_own_chats(stack: Stack, tmp_path: Path) -> None:
    """AUTH_MODE=header end to end: the HTTP tier names the caller, the RPC
    service enforces membership and identity (403), and /api/chats defaults
    to the caller's own list."""
    http = HttpServer(tmp_path, stack.rpc.port, workers=1, AUTH_MODE="header")
    http.start()
    try:
        a, b, c = f"a-{_tag()}", f"b-{_tag()}", f"c-{_tag()}"
        chat = f"{a}:{b}"

        def call(method: str, path: str, user: str | None, **kwargs: Any) -> requests.Response:
            headers = {"X-User-Id": user} if user else {}
            return requests.request(method, http.url + path, headers=headers, timeout=10, **kwargs)

        send = {"chat": chat, "text": "hi", "sender": a}
        assert call("POST", "/api/send", None, json=send).status_code == 401
        forged = call("POST", "/api/send", b, json=send)
        assert forged.status_code == 403 and forged.json()["code"] == 403
        assert call("POST", "/api/send", a.upper(), json=send).status_code == 200
        assert call("GET", "/api/pull", c, params={"chat": chat}).status_code == 403
        pulled = call("GET", "/api/pull", b, params={"chat": chat})
        assert [m["text"] for m in pulled.json()["messages"]] == ["hi"]
        mine = call("GET", "/api/chats", b)
        assert [x["chat"] for x in mine.json()["chats"]] == [chat]
        assert call("GET", "/api/chats", c, params={"user": b}).status_code == 403
        assert call("GET", "/ping", None).status_code == 200
    finally:
        http.stop()


@pytest.mark.parametrize("retention_rpc", [{"RETENTION_MAX_AGE_S": "600"}], indirect=True)
def test_sweep_applies_retention_to_chats_nobody_writes_to(stack: Stack, retention_rpc: RpcServer, rpc: Any) -> None:
    """The old message is dated an hour back (imported as the seed's data), the
    fresh one now, and the limit is ten minutes: however slowly the machine
    runs the sweep, which one it trims is not a race."""
    client = thrift_client(rpc, retention_rpc.port)
    idle, busy = f"i-{_tag()}:j-{_tag()}", f"k-{_tag()}:l-{_tag()}"
    hour_ago = int(time.time()) - 3600
    seed_row = json.dumps({"sender": idle.split(":")[0], "message": "idle and old", "timestamp": hour_ago})
    stack.redis.client().zadd(idle, {seed_row: hour_ago})

    def tool(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", module, *args]
        environment = {"PATH": "/usr/bin:/bin", "REDIS_URL": stack.redis.url, **env}
        return subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)

    imported = tool("rpc_server.tools.migrate_seed", "--match", idle)
    assert imported.returncode == 0, imported.stderr
    old = hour_ago * 10**6
    fresh = _send(client, rpc, busy, busy.split(":")[0], "fresh")
    assert [m.SendTime for m in _pull(client, rpc, idle).Messages] == [old]  # no send: not trimmed yet

    assert tool("rpc_server.tools.sweep").returncode == 2  # no retention configured: refuses to guess
    result = tool("rpc_server.tools.sweep", RETENTION_MAX_AGE_S="600")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["messages_trimmed"] >= 1, result.stdout
    page = _pull(client, rpc, idle)
    assert page.Messages == [] and page.HistoryTruncated is True
    assert [m.SendTime for m in _pull(client, rpc, busy).Messages] == [fresh]
    later = _send(client, rpc, idle, idle.split(":")[1], "back")  # the chat goes on, send_times still increase
    assert later > old
    assert [m.Text for m in _pull(client, rpc, idle).Messages] == ["back"]
    client.close()


def test_on_one_redis_the_send_script_updates_the_lists(stack: Stack) -> None:
    """Atomic with the append: no separate step that a crash could cut."""
    store = MessageStore(connect_redis(stack.redis.url, 1.0, 4, 0.5), idempotency_ttl_s=60, pipeline_lanes=0)
    assert store.updates_lists_on_append
    chat = parse_chat(f"o-{_tag()}:p-{_tag()}")
    send_time = store.append(chat, chat.first, "hi")  # the store alone: Conversations.touch is not called
    redis = stack.redis.client()
    assert redis.zscore(user_chats_key(chat.first), chat.id) == send_time
    assert redis.zscore(user_chats_key(chat.second), chat.id) == send_time


def test_sweep_trims_nothing_while_redis_is_full(stack: Stack) -> None:
    """XTRIM is allowed when Redis is full, but writing the trim mark is not:
    the sweep must not trim without recording it."""
    client = connect_redis(stack.redis.url, 1.0, 4, 0.5)
    chat = parse_chat(f"f-{_tag()}:g-{_tag()}")
    without_retention = MessageStore(client, 60)
    for i in range(300):
        without_retention.append(chat, chat.first, f"m{i}")
    store = MessageStore(client, 60, retention_max_messages=1)
    redis = stack.redis.client()
    before = redis.xlen(stream_key(chat))
    configured = redis.config_get("maxmemory")["maxmemory"]
    redis.config_set("maxmemory", "1")
    try:
        with pytest.raises(StorageUnavailable, match="storage full"):
            store.apply_retention(chat)
    finally:
        redis.config_set("maxmemory", configured)
    assert redis.xlen(stream_key(chat)) == before
    assert store.apply_retention(chat) > 0  # room again: it trims, and marks
    assert store.read(chat, 0, 10, reverse=False).truncated is True
