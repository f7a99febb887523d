"""Deadlines end to end (rpc_server.deadline): a call whose deadline has
passed is refused and stores nothing; a command queued past its deadline is
dropped unsent; a stalled Redis gets a 503 by the caller's deadline that
says which kind ("not stored" or "outcome unknown"); over Thrift directly
and through HTTP, against real redis-server, rpc_server and gunicorn.

Redis is held with CLIENT PAUSE WRITE (Redis 7 has no DEBUG SLEEP): a
write sent to it waits, unanswered, until UNPAUSE. No timed assertion:
every wait is on a condition, and the slack allowed is generous."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import requests

from rpc_server.call_context import CallContext, calling
from rpc_server.deadline import DeadlinePolicy
from tests.servers import HttpServer, RedisServer, RpcServer, scrape_metrics, thrift_client, wait_until

SLACK_S = 5.0  # a loaded 2-core machine: far above any scheduling delay, far below "hangs"
NO_TIME = "the call's deadline left no time to reach storage; not stored"
HTTP_DEADLINE_MS = 4000


# --- The policy, pure logic -------------------------------------------------


def test_a_budget_of_zero_or_less_has_passed() -> None:
    policy = DeadlinePolicy(default_timeout_ms=1000, reply_reserve_ms=500)
    assert not policy.for_call(0).can_send()
    assert not policy.for_call(-5).can_send()
    assert policy.for_call(None).can_send()  # absent: the default, 1 s


def test_the_reserve_is_at_most_half_the_budget_and_the_earliest_deadline_wins() -> None:
    policy = DeadlinePolicy(default_timeout_ms=1000, reply_reserve_ms=500)
    with calling(CallContext(received_at=100.0)):
        short = policy.for_call(400)
        assert (short.answer_by, short.send_by) == (100.4, 100.2)  # 200 ms reserved, not 500
        default = policy.for_call(None)
        assert (default.answer_by, default.send_by) == (101.0, 100.5)
        waiting = policy.for_call(None, waits_s=25)  # a long-poll's wait is added to the default only
        assert (waiting.answer_by, waiting.send_by) == (126.0, 125.5)
    with calling(CallContext(received_at=100.0, timeout_ms=300)):  # the transport's (TTHeader) is earlier
        assert policy.for_call(2000).answer_by == 100.3
    with calling(CallContext(received_at=100.0, timeout_ms=3000)):
        assert policy.for_call(2000).answer_by == 102.0


# --- Real servers -----------------------------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, RpcServer, HttpServer]]:
    """One pipeline lane (so that a second command queues behind a held
    one), Redis's cap well above the deadlines used here (they must be what
    ends each wait), and a reply reserve of 1.5 s: a command queued behind
    one held for a 4 s deadline (the HTTP tier's, here) reaches its send-by
    first, unless it came 1.5 s after it."""
    directory = tmp_path_factory.mktemp("deadlines")
    redis_server = RedisServer(directory / "redis")
    rpc = RpcServer(
        directory,
        redis_server.url,
        RPC_WORKERS="1",
        REDIS_PIPELINE_LANES="1",
        REDIS_TIMEOUT_MS="30000",
        REDIS_REPLY_RESERVE_MS="1500",
    )
    http = HttpServer(directory, rpc.port, workers=1, RPC_TIMEOUT_MS=str(HTTP_DEADLINE_MS))
    started: list[Any] = []
    try:
        for server in (redis_server, rpc, http):
            server.start()
            started.append(server)
        yield redis_server, rpc, http
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def chat() -> tuple[str, str]:
    """A fresh chat and one of its members."""
    tag = uuid.uuid4().hex[:8]
    return f"d-{tag}:e-{tag}", f"d-{tag}"


def _send_request(rpc: Any, chat: tuple[str, str], text: str, **fields: Any) -> Any:
    return rpc.SendRequest(message=rpc.Message(Chat=chat[0], Text=text, Sender=chat[1]), **fields)


def _texts(rpc: Any, port: int, chat: tuple[str, str]) -> list[str]:
    client = thrift_client(rpc, port)
    try:
        page = client.Pull(rpc.PullRequest(Chat=chat[0], Cursor=0, Limit=100))
    finally:
        client.close()
    assert page.Code == 0, page
    return [m.Text for m in page.Messages]


def _not_sent(rpc_server: RpcServer, why: str) -> float:
    samples = scrape_metrics(f"http://127.0.0.1:{rpc_server.metrics_port}/metrics")
    return samples.get(f'redis_commands_not_sent_total{{why="{why}"}}', 0.0)


class Paused:
    """Redis holding every write (CLIENT PAUSE WRITE) until the block ends."""

    def __init__(self, server: RedisServer) -> None:
        self.admin = server.client()

    def __enter__(self) -> Paused:
        self.admin.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.admin.execute_command("CLIENT", "UNPAUSE")

    def wait_for_held(self, count: int) -> None:
        """Until `count` clients' commands are held by the pause."""
        wait_until(lambda: int(self.admin.info("clients")["blocked_clients"]) >= count, 30, f"{count} held writes")


def _timed(call: Callable[[], Any]) -> Callable[[], tuple[Any, float]]:
    def run() -> tuple[Any, float]:
        started = time.monotonic()
        result = call()
        return result, time.monotonic() - started

    return run


def test_a_send_whose_deadline_has_passed_is_refused_and_not_stored(
    servers: tuple[RedisServer, RpcServer, HttpServer], rpc: Any, chat: tuple[str, str]
) -> None:
    _, rpc_server, _ = servers
    client = thrift_client(rpc, rpc_server.port)
    try:
        refused = client.Send(_send_request(rpc, chat, "too late", TimeoutMs=0))
        assert (refused.Code, refused.Msg) == (503, NO_TIME)
        in_time = client.Send(_send_request(rpc, chat, "in time", TimeoutMs=5000))
        assert (in_time.Code, in_time.Msg) == (0, "success")
        seed_style = client.Send(_send_request(rpc, chat, "no deadline"))  # the seed's request: the default
        assert (seed_style.Code, seed_style.Msg) == (0, "success")
    finally:
        client.close()
    assert _texts(rpc, rpc_server.port, chat) == ["in time", "no deadline"]


def test_a_send_queued_past_its_deadline_is_not_sent_and_a_held_one_says_outcome_unknown(
    servers: tuple[RedisServer, RpcServer, HttpServer], rpc: Any, chat: tuple[str, str]
) -> None:
    """Send A goes out and Redis holds it; B queues behind A's batch in the
    one lane. B is dropped unsent at its send-by ("not stored"); A is waited
    for until its deadline, then "outcome unknown". Both answer by their
    deadline (plus slack), not at Redis's 30 s cap."""
    redis_server, rpc_server, _ = servers
    dropped_before = _not_sent(rpc_server, "QueuedPastDeadline")

    def send(text: str, timeout_ms: int) -> Callable[[], Any]:
        def call() -> Any:
            client = thrift_client(rpc, rpc_server.port)
            try:
                return client.Send(_send_request(rpc, chat, text, TimeoutMs=timeout_ms))
            finally:
                client.close()

        return call

    with Paused(redis_server) as paused, ThreadPoolExecutor(2) as threads:
        held: Future[tuple[Any, float]] = threads.submit(_timed(send("held", 2000)))
        paused.wait_for_held(1)
        queued: Future[tuple[Any, float]] = threads.submit(_timed(send("queued", 1000)))
        (b, b_took) = queued.result(timeout=60)
        (a, a_took) = held.result(timeout=60)
    assert (b.Code, b.Msg) == (503, NO_TIME), b
    assert b_took < 1.0 + SLACK_S, b_took
    assert (a.Code, a.Msg) == (503, "storage timed out; outcome unknown"), a
    assert a_took < 2.0 + SLACK_S, a_took
    assert _not_sent(rpc_server, "QueuedPastDeadline") == dropped_before + 1
    assert "queued" not in _texts(rpc, rpc_server.port, chat)  # never sent, never stored


def test_through_http_a_send_past_its_deadline_is_not_stored_and_every_503_says_which_kind(
    servers: tuple[RedisServer, RpcServer, HttpServer], rpc: Any, chat: tuple[str, str]
) -> None:
    """Send A's write is held by Redis; send B, with the deadline the HTTP
    tier passed on (TimeoutMs), queues behind it in the RPC server's one
    lane past its send-by, so it is never sent: "not stored". A's 503 says
    "outcome unknown". Both by the HTTP tier's deadline."""
    redis_server, rpc_server, http = servers

    def post(text: str) -> Callable[[], requests.Response]:
        body = {"chat": chat[0], "text": text, "sender": chat[1]}
        return lambda: requests.post(http.url + "/api/send", json=body, timeout=30)

    with Paused(redis_server) as paused, ThreadPoolExecutor(2) as threads:
        held = threads.submit(_timed(post("held")))
        paused.wait_for_held(1)
        waiting = threads.submit(_timed(post("waiting")))
        (b, b_took) = waiting.result(timeout=60)
        (a, a_took) = held.result(timeout=60)
    assert b.status_code == 503 and b.headers.get("Retry-After"), b.text
    assert b.json() == {"code": 503, "msg": NO_TIME}, b.text
    assert a.status_code == 503, a.text
    assert a.json()["msg"].endswith("; outcome unknown"), a.text
    assert max(a_took, b_took) < HTTP_DEADLINE_MS / 1000 + SLACK_S, (a_took, b_took)
    texts = _texts(rpc, rpc_server.port, chat)
    assert "waiting" not in texts, texts


def test_a_send_refused_for_its_deadline_leaves_redis_untouched(
    servers: tuple[RedisServer, RpcServer, HttpServer], rpc: Any, chat: tuple[str, str]
) -> None:
    """Not even the rate-limit or the script is run: Redis sees no command."""
    redis_server, rpc_server, _ = servers
    admin = redis_server.client()
    before = admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    client = thrift_client(rpc, rpc_server.port)
    try:
        answer = client.Send(_send_request(rpc, chat, "late", TimeoutMs=-1))
    finally:
        client.close()
    after = admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert (answer.Code, answer.Msg) == (503, NO_TIME)
    assert after == before
