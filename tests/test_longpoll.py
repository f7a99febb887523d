"""Long-poll pulls (`wait`, Thrift `WaitMs`) against real servers: woken by a
send on any replica through Redis sharded pub/sub, each waiter gets the
message, waits end empty when the time is up, on shutdown at once, and
survive a Redis restart. Latencies are printed, never asserted."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Api
from tests.servers import HttpServer, RedisServer, RpcServer, Stack, scrape_metrics, signal, thrift_client, wait_until


def _chat() -> str:
    tag = uuid.uuid4().hex[:8]
    return f"w-{tag}:v-{tag}"


def _wait_pull(rpc: Any, port: int, chat: str, wait_ms: int) -> Any:
    """A long-poll Pull from the start of `chat`, on a connection of its own."""
    client = thrift_client(rpc, port)
    try:
        return client.Pull(rpc.PullRequest(Chat=chat, Cursor=0, Limit=10, WaitMs=wait_ms))
    finally:
        client.close()


def _waiting(server: RpcServer, count: int) -> None:
    """Until the server holds `count` pulls waiting for a message (its gauge)."""
    metrics = f"http://127.0.0.1:{server.metrics_port}/metrics"
    wait_until(lambda: scrape_metrics(metrics)["rpc_pulls_waiting"] >= count, 15, f"{count} waiting pulls")


def test_a_waiting_pull_returns_the_message_sent_meanwhile(api: Api, chat: str, stack: Stack) -> None:
    member = chat.split(":")[0]
    last = api.send_ok(chat, "seen already", member)
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        pending = pool.submit(
            requests.get, api.base_url + "/api/pull", params={"chat": chat, "cursor": last + 1, "wait": 10}, timeout=20
        )
        _waiting(stack.rpc, 1)
        sent_at = time.monotonic()
        sent = api.send_ok(chat, "new", member)
        r = pending.result()
        answered_at = time.monotonic()
    assert r.status_code == 200, r.text
    assert [m["send_time"] for m in r.json()["messages"]] == [sent]
    print(f"long-poll answered {1000 * (answered_at - sent_at):.1f} ms after the send ({answered_at - started:.2f} s)")


def test_a_wait_that_runs_out_answers_an_empty_page(api: Api, chat: str) -> None:
    last = api.send_ok(chat, "only", chat.split(":")[0])
    r = requests.get(api.base_url + "/api/pull", params={"chat": chat, "cursor": last + 1, "wait": 1}, timeout=20)
    assert r.status_code == 200
    assert r.json() == {"messages": [], "has_more": False, "next_cursor": 0, "history_truncated": False}


def test_a_wait_with_messages_already_there_answers_at_once(api: Api, chat: str) -> None:
    sent = api.send_ok(chat, "there", chat.split(":")[0])
    r = requests.get(api.base_url + "/api/pull", params={"chat": chat, "wait": 30}, timeout=5)
    assert [m["send_time"] for m in r.json()["messages"]] == [sent]


@pytest.mark.parametrize(
    "params", [{"wait": 5, "reverse": "true"}, {"wait": -1}, {"wait": "soon"}, {"wait": 2**63}], ids=str
)
def test_bad_waits_are_400(api: Api, chat: str, params: dict[str, Any]) -> None:
    r = requests.get(api.base_url + "/api/pull", params={"chat": chat, **params}, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 400


def test_thrift_wait_with_reverse_is_400(stack: Stack, rpc: Any) -> None:
    client = thrift_client(rpc, stack.rpc.port)
    answer = client.Pull(rpc.PullRequest(Chat=_chat(), Cursor=0, Limit=10, Reverse=True, WaitMs=100))
    assert answer.Code == 400 and "reverse" in answer.Msg
    client.close()


def test_every_waiter_of_a_chat_is_woken_and_no_other(stack: Stack, rpc: Any) -> None:
    """100 waiters on one chat and 20 on another, on two RPC replicas: one
    send wakes exactly the first 100, wherever they wait."""
    chat, other = _chat(), _chat()
    sender = thrift_client(rpc, stack.rpc.port)
    start = int(sender.Send(rpc.SendRequest(message=rpc.Message(Chat=chat, Text="0", Sender=chat[:10]))).SendTime)

    def wait(target: str, wait_ms: int) -> list[int]:
        client = thrift_client(rpc, stack.rpc.port)
        try:
            page = client.Pull(rpc.PullRequest(Chat=target, Cursor=start + 1, Limit=10, WaitMs=wait_ms))
            assert page.Code == 0, page.Msg
            return [m.SendTime for m in page.Messages]
        finally:
            client.close()

    with ThreadPoolExecutor(120) as pool:
        woken: list[Future[list[int]]] = [pool.submit(wait, chat, 15000) for _ in range(100)]
        others = [pool.submit(wait, other, 2000) for _ in range(20)]
        _waiting(stack.rpc, 120)
        message = rpc.Message(Chat=chat, Text="wake up", Sender=chat[:10])
        sent = int(sender.Send(rpc.SendRequest(message=message)).SendTime)
        assert [f.result(timeout=30) for f in woken] == [[sent]] * 100
        assert [f.result(timeout=30) for f in others] == [[]] * 20
    sender.close()


def test_a_send_on_another_replica_wakes_the_waiter(stack: Stack, rpc: Any, tmp_path: Path) -> None:
    replica = RpcServer(tmp_path, stack.redis.url)
    replica.start()
    try:
        chat = _chat()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_wait_pull, rpc, stack.rpc.port, chat, 15000)
            _waiting(stack.rpc, 1)
            via_replica = thrift_client(rpc, replica.port)
            message = rpc.Message(Chat=chat, Text="from the replica", Sender=chat[:10])
            sent = int(via_replica.Send(rpc.SendRequest(message=message)).SendTime)
            assert [m.SendTime for m in pending.result(timeout=30).Messages] == [sent]
            via_replica.close()
    finally:
        replica.stop()


@pytest.mark.fault
def test_sigterm_ends_waiting_pulls_at_once(stack: Stack, rpc: Any, tmp_path: Path) -> None:
    server = RpcServer(tmp_path, stack.redis.url)
    server.start()
    try:
        with ThreadPoolExecutor(10) as pool:
            pulls = [pool.submit(_wait_pull, rpc, server.port, _chat(), 30000) for _ in range(10)]
            _waiting(server, 10)
            stopped = time.monotonic()
            server.stop()  # SIGTERM
            answers = [f.result(timeout=30) for f in pulls]
            print(f"10 waiting pulls answered and the server stopped in {time.monotonic() - stopped:.2f} s")
        assert [(a.Code, a.Messages) for a in answers] == [(0, [])] * 10
        assert server.popen is not None and server.popen.returncode == 0
    finally:
        server.stop()


@pytest.mark.fault
def test_waits_survive_a_redis_restart(rpc: Any, tmp_path: Path) -> None:
    """The notification connection fails with Redis: waiters re-read (503 or
    an empty page, never a hang); once Redis is back, redis-py subscribes
    again and a send wakes a new waiter."""
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    server = RpcServer(tmp_path, redis_server.url)
    server.start()
    try:
        chat = _chat()
        with ThreadPoolExecutor(2) as pool:
            during = pool.submit(_wait_pull, rpc, server.port, chat, 20000)
            _waiting(server, 1)
            redis_server.stop()
            answer = during.result(timeout=30)
            assert answer.Code in (0, 503), answer.Msg
            redis_server.start()
            after = pool.submit(_wait_pull, rpc, server.port, chat, 20000)
            _waiting(server, 1)
            sender = thrift_client(rpc, server.port)

            def send_until_woken() -> bool:
                message = rpc.Message(Chat=chat, Text="after the restart", Sender=chat[:10])
                assert sender.Send(rpc.SendRequest(message=message)).Code in (0, 503)
                return after.done()

            wait_until(send_until_woken, 60, "a waiter woken after the restart")
            page = after.result()
            assert page.Code == 0 and [m.Text for m in page.Messages][:1] == ["after the restart"]
            sender.close()
    finally:
        server.stop()
        redis_server.stop()


@pytest.mark.fault
def test_sigterm_of_the_http_server_ends_its_long_polls_at_once(stack: Stack, tmp_path: Path) -> None:
    http = HttpServer(tmp_path, stack.rpc.port, workers=1)
    http.start()
    try:
        with ThreadPoolExecutor(3) as pool:
            params = {"chat": _chat(), "wait": 30}
            polls = [pool.submit(requests.get, http.url + "/api/pull", params=params, timeout=40) for _ in range(3)]
            _waiting(stack.rpc, 3)
            stopped = time.monotonic()
            http.stop(signal.SIGTERM)
            answers = [f.result() for f in polls]
            print(f"3 long-polls answered and the server stopped in {time.monotonic() - stopped:.2f} s")
        assert [(r.status_code, r.json()["messages"]) for r in answers] == [(200, [])] * 3
        assert http.popen is not None and http.popen.returncode == 0
    finally:
        http.stop()


def test_waiting_pulls_beyond_the_limit_get_503(stack: Stack, rpc: Any, tmp_path: Path) -> None:
    server = RpcServer(tmp_path, stack.redis.url, RPC_MAX_WAITERS="1")
    server.start()
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(_wait_pull, rpc, server.port, _chat(), 3000)
            _waiting(server, 1)
            client = thrift_client(rpc, server.port)
            second = client.Pull(rpc.PullRequest(Chat=_chat(), Cursor=0, Limit=10, WaitMs=3000))
            assert second.Code == 503 and "too many waiting calls" in second.Msg
            plain = client.Pull(rpc.PullRequest(Chat=_chat(), Cursor=0, Limit=10))  # not waiting: served
            assert plain.Code == 0
            client.close()
            assert first.result(timeout=10).Code == 0
    finally:
        server.stop()
