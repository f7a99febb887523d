"""GET /api/subscribe (Server-Sent Events) against real servers: every
message of the chat exactly once and in order, for 1000 subscribers at
once; resumption with Last-Event-ID; heartbeats, limits, CORS; streams end
at once on SIGTERM; a Redis restart loses nothing for a client that
reconnects. Latencies are printed, never asserted."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bench import sse_delivery
from tests.conftest import Api
from tests.servers import HttpServer, RedisServer, RpcServer, Stack, wait_until


def _chat() -> str:
    tag = uuid.uuid4().hex[:8]
    return f"s-{tag}:t-{tag}"


def _events(response: requests.Response) -> Iterator[dict[str, Any]]:
    """Events (with their id) and comments of an open event stream."""
    event: dict[str, Any] = {}
    for raw in response.iter_lines(decode_unicode=True):
        if raw == "":
            if event:
                yield event
            event = {}
        elif raw.startswith(":"):
            yield {"comment": raw[1:].strip()}
        else:
            field, _, value = raw.partition(": ")
            event[field] = value


def _subscribe(base_url: str, chat: str, **headers: str) -> requests.Response:
    return requests.get(
        base_url + "/api/subscribe", params={"chat": chat}, headers=headers, stream=True, timeout=(5, 40)
    )


@pytest.fixture
def stream_server(stack: Stack, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[HttpServer]:
    """An HTTP server of this test's own on the session's RPC server (env from the parameter)."""
    env = dict(getattr(request, "param", {}))
    server = HttpServer(tmp_path, stack.rpc.port, workers=int(env.pop("workers", 2)), **env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_a_subscriber_gets_the_backlog_then_each_new_message_once(api: Api, chat: str) -> None:
    a, b = chat.split(":")
    old = [api.send_ok(chat, f"old {i}", a) for i in range(3)]
    with _subscribe(api.base_url, chat) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = _events(r)
        assert next(events) == {"comment": f"stream of {chat}"}
        received = [next(events) for _ in range(3)]
        assert [int(e["id"]) for e in received] == old
        assert json.loads(received[0]["data"]) == {"chat": chat, "text": "old 0", "sender": a, "send_time": old[0]}
        new = [api.send_ok(chat, f"new {i}", b) for i in range(2)]
        later = [e for e in (next(events) for _ in range(3)) if "id" in e][:2]  # a heartbeat may come between
        assert [int(e["id"]) for e in later] == new


def test_last_event_id_resumes_right_after_that_event(api: Api, chat: str) -> None:
    sent = [api.send_ok(chat, f"m{i}", chat.split(":")[0]) for i in range(6)]
    with _subscribe(api.base_url, chat) as r:
        events = (e for e in _events(r) if "id" in e)
        first = [int(next(events)["id"]) for _ in range(2)]
    assert first == sent[:2]
    with _subscribe(api.base_url, chat, **{"Last-Event-ID": str(first[-1])}) as r:
        events = (e for e in _events(r) if "id" in e)
        rest = [int(next(events)["id"]) for _ in range(4)]
    assert rest == sent[2:]


@pytest.mark.parametrize("stream_server", [{"SSE_HEARTBEAT_S": "1"}], indirect=True)
def test_an_idle_stream_gets_heartbeats(stream_server: HttpServer) -> None:
    with _subscribe(stream_server.url, _chat()) as r:
        comments = (e["comment"] for e in _events(r) if "comment" in e)
        assert [next(comments) for _ in range(3)][1:] == ["heartbeat", "heartbeat"]


def test_bad_subscriptions_are_400_before_any_stream(api: Api, chat: str) -> None:
    for params, headers in [({}, {}), ({"chat": "a:b:c"}, {}), ({"chat": chat}, {"Last-Event-ID": "soon"})]:
        r = requests.get(api.base_url + "/api/subscribe", params=params, headers=headers, timeout=10)
        assert r.status_code == 400, (params, headers, r.text)
        assert r.json()["code"] == 400


@pytest.mark.parametrize("stream_server", [{"SSE_MAX_STREAMS": "1", "workers": 1}], indirect=True)
def test_streams_beyond_the_limit_are_refused_with_a_stream_that_says_retry(stream_server: HttpServer) -> None:
    """Not a 503: a browser's EventSource would never reconnect after it."""
    with _subscribe(stream_server.url, _chat()) as first:
        assert first.status_code == 200
        next(_events(first))  # open
        with _subscribe(stream_server.url, _chat()) as second:
            assert second.status_code == 200 and second.headers["Content-Type"].startswith("text/event-stream")
            events = list(_events(second))  # and it ends
        assert len(events) == 1 and events[0]["event"] == "unavailable" and int(events[0]["retry"]) > 0, events
        assert json.loads(events[0]["data"]) == {"code": 503, "msg": "too many streams on this server (1); retry"}


@pytest.mark.parametrize("stream_server", [{"SSE_ALLOWED_ORIGINS": "https://app.example"}], indirect=True)
def test_allowed_origins_get_cors_headers(stream_server: HttpServer) -> None:
    chat = _chat()
    with _subscribe(stream_server.url, chat, Origin="https://app.example") as r:
        assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    with _subscribe(stream_server.url, chat, Origin="https://evil.example") as r:
        assert "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.fault
def test_sigterm_ends_streams_at_once(stack: Stack, tmp_path: Path) -> None:
    server = HttpServer(tmp_path, stack.rpc.port, workers=1)
    server.start()
    try:
        responses = [_subscribe(server.url, _chat()) for _ in range(5)]
        for r in responses:
            next(_events(r))  # each stream is open
        stopped = time.monotonic()
        server.stop(__import__("signal").SIGTERM)
        for r in responses:
            assert [e for e in _events(r) if "id" in e] == []  # the stream ends, cleanly
            r.close()
        print(f"5 streams ended and the server stopped in {time.monotonic() - stopped:.2f} s")
        assert server.popen is not None and server.popen.returncode == 0
    finally:
        server.stop()


def _reconnecting_subscriber(base_url: str, chat: str, want: int, got: list[int], deadline: float) -> None:
    """Subscribe; whenever the stream ends or fails, reconnect with Last-Event-ID."""
    while len(got) < want and time.monotonic() < deadline:
        headers = {"Last-Event-ID": str(got[-1])} if got else {}
        try:
            with _subscribe(base_url, chat, **headers) as r:
                if r.status_code != 200:
                    time.sleep(0.2)
                    continue
                for event in _events(r):
                    if event.get("event") == "unavailable":  # refused for now (Redis down): retry later
                        time.sleep(int(event["retry"]) / 1000)
                    if "id" in event:
                        got.append(int(event["id"]))
                        if len(got) >= want:
                            return
        except requests.RequestException:
            time.sleep(0.2)


@pytest.mark.fault
def test_a_redis_restart_loses_nothing_for_a_reconnecting_client(rpc: Any, tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    rpc_server = RpcServer(tmp_path, redis_server.url)
    rpc_server.start()
    http = HttpServer(tmp_path, rpc_server.port, workers=1)
    http.start()
    try:
        chat, stored = _chat(), []
        sender = chat.split(":")[0]

        def send(text: str) -> None:
            r = requests.post(http.url + "/api/send", json={"chat": chat, "text": text, "sender": sender}, timeout=10)
            if r.status_code == 200:
                stored.append(r.json()["send_time"])

        got: list[int] = []
        for i in range(5):
            send(f"before {i}")
        reader = threading.Thread(
            target=_reconnecting_subscriber, args=(http.url, chat, 10, got, time.monotonic() + 60)
        )
        reader.start()
        wait_until(lambda: len(got) >= 5, 60, "the first events")
        redis_server.stop()
        redis_server.start()

        def sent_ten() -> bool:
            if len(stored) < 10:
                send("after")  # 503 while Redis loads: tried again
            return len(stored) >= 10

        wait_until(sent_ten, 30, "ten messages stored")
        reader.join(60)
        assert got == stored[:10]
        assert len(set(got)) == len(got)
    finally:
        http.stop()
        rpc_server.stop()
        redis_server.stop()


@pytest.mark.slow
def test_a_thousand_subscribers_get_every_message_once_in_order(stack: Stack, tmp_path: Path) -> None:
    """1000 subscribers on one chat and 100 on 100 others, while 5 writers
    send 200 messages to the first: each subscriber receives exactly its
    chat's messages, each once, in send_time order (bench.sse_delivery,
    which the benchmark runs with 2000)."""
    http = HttpServer(
        tmp_path, stack.rpc.port, SSE_MAX_STREAMS="2000", RPC_WAIT_POOL_SIZE="2500", HTTP_WORKER_CONNECTIONS="3000"
    )
    http.start()
    try:
        result = sse_delivery.run(http.url, 1000)
        received = result["received"]
        main = received[result["main"]]
        assert main["errors"] == []
        assert len(main["ids"]) == 1000
        for ids in main["ids"]:
            assert ids == result["main_sent"]  # every message, once, in send_time order
        assert len(result["main_sent"]) == 200
        for chat, sent in result["other_sent"].items():
            assert received[chat]["errors"] == []
            assert received[chat]["ids"] == [[sent]]
        latency = f"delivery p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms"
        print(f"1000 subscribers: {latency}; {result['resumed']} resumed")
    finally:
        http.stop()


@pytest.mark.parametrize(
    "stream_server", [{"HTTP_KEEPALIVE_S": "1", "SSE_MAX_STREAMS": "1", "workers": 1}], indirect=True
)
def test_a_consumer_that_stops_reading_is_dropped_not_buffered(stream_server: HttpServer) -> None:
    """With room for one stream, a second one is refused until the stalled
    consumer is dropped (its socket write times out): then it opens."""
    chat = _chat()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        sock.connect(("127.0.0.1", stream_server.port))
        sock.sendall(f"GET /api/subscribe?chat={chat} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        session, text, opened = requests.Session(), "x" * 4000, []

        def stalled_stream_dropped() -> bool:
            for _ in range(50):  # 200 KB more that this client never reads
                body = {"chat": chat, "text": text, "sender": chat[:10]}
                session.post(stream_server.url + "/api/send", json=body, timeout=10)
            with _subscribe(stream_server.url, _chat()) as other:
                first = next(_events(other))  # ": stream of …", or a refusal (`unavailable`)
                opened.append(first.get("comment", "").startswith("stream of"))
                return opened[-1]

        wait_until(stalled_stream_dropped, 60, "the stalled stream to be dropped")
        assert opened[0] is False  # it did hold the only slot, until it was dropped
