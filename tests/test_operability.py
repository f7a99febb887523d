"""Operability: graceful shutdown with calls in flight, metrics scraped from
both servers, structured logs carrying the request id (never the text), and
the optional rate limit."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from thriftpy2.rpc import make_client

from tests.conftest import Api
from tests.servers import HttpServer, Stack, scrape_metrics, signal, wait_until

# --- Graceful shutdown ----------------------------------------------------------


@pytest.fixture
def slow_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack whose timeouts leave room for calls held up in Redis."""
    s = Stack(tmp_path)
    s.rpc.env.update(REDIS_TIMEOUT_MS="4000", REDIS_POOL_WAIT_MS="1000")
    s.http.env.update(RPC_TIMEOUT_MS="8000")
    try:
        yield s.start()
    finally:
        s.stop()


def _sends_held_in_flight(stack: Stack, count: int) -> tuple[list[int], list[threading.Thread], Any]:
    """Pause Redis writes, start `count` sends, and wait until the RPC server
    has them all in flight."""
    admin = stack.redis.client()
    admin.execute_command("CLIENT", "PAUSE", "2000", "WRITE")
    statuses: list[int] = []

    def send(i: int) -> None:
        r = requests.post(
            stack.http.url + "/api/send", json={"chat": "a:b", "text": f"in flight {i}", "sender": "a"}, timeout=15
        )
        statuses.append(r.status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    metrics = f"http://127.0.0.1:{stack.rpc.metrics_port}/metrics"
    wait_until(lambda: scrape_metrics(metrics)["rpc_calls_in_flight"] >= count, 10, f"{count} calls in flight")
    return statuses, threads, admin


@pytest.mark.parametrize("server", ["rpc", "http"])
def test_sigterm_finishes_calls_in_flight_then_exits_0(slow_stack: Stack, server: str) -> None:
    statuses, threads, admin = _sends_held_in_flight(slow_stack, 10)
    process = slow_stack.rpc.popen if server == "rpc" else slow_stack.http.popen  # http: gunicorn's master
    assert process is not None
    process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    assert process.wait(20) == 0
    assert statuses == [200] * 10
    assert admin.xlen("im:v1:{a:b}:m") == 10


def test_an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(tmp_path: Path, stack: Stack) -> None:
    """gunicorn's keepalive does not reach gevent's pywsgi by itself; our worker applies it."""
    http = HttpServer(tmp_path, stack.rpc.port, workers=1, HTTP_KEEPALIVE_S="1")
    http.start()
    try:
        with socket.create_connection(("127.0.0.1", http.port), timeout=10) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            response = b""
            while b"pong" not in response:
                response += sock.recv(4096)
            assert sock.recv(4096) == b""  # closed by the server, long before our 10 s timeout
    finally:
        http.stop()


# --- Metrics ---------------------------------------------------------------------


def test_both_servers_expose_prometheus_metrics(stack: Stack, api: Api, chat: str) -> None:
    api.send_ok(chat, "x", chat.split(":")[0])
    api.pull_ok(chat)
    http = scrape_metrics(stack.http.url + "/metrics")
    assert http['http_requests_total{method="POST",route="/api/send",status="200"}'] >= 1
    assert http['http_requests_total{method="GET",route="/api/pull",status="200"}'] >= 1
    assert http['http_request_duration_seconds_count{method="POST",route="/api/send"}'] >= 1
    rpc = scrape_metrics(f"http://127.0.0.1:{stack.rpc.metrics_port}/metrics")
    assert rpc['rpc_calls_total{code="0",method="Send"}'] >= 1
    assert rpc['rpc_calls_total{code="0",method="Pull"}'] >= 1
    assert rpc['rpc_call_duration_seconds_count{method="Send"}'] >= 1
    assert rpc["rpc_connections_open"] >= 1  # the HTTP workers' pooled connections


def test_redis_errors_are_counted(tmp_path: Path) -> None:
    s = Stack(tmp_path).start()
    try:
        s.redis.stop(signal.SIGKILL)
        assert Api(s.http.url).send("a:b", "x", "a").status_code == 503
        rpc = scrape_metrics(f"http://127.0.0.1:{s.rpc.metrics_port}/metrics")
        assert rpc['redis_errors_total{kind="ConnectionError"}'] >= 1
        assert rpc['rpc_calls_total{code="503",method="Send"}'] >= 1
    finally:
        s.stop()


# --- Logs ------------------------------------------------------------------------


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_one_json_line_per_request_with_the_request_id_and_never_the_text(stack: Stack, chat: str) -> None:
    request_id = f"trace-{uuid.uuid4().hex}"
    secret = f"secret text {uuid.uuid4().hex}"
    r = requests.post(
        stack.http.url + "/api/send",
        json={"chat": chat, "text": secret, "sender": chat.split(":")[0]},
        headers={"X-Request-ID": request_id},
        timeout=10,
    )
    assert r.status_code == 200
    assert r.headers["X-Request-ID"] == request_id

    def line_in(log: str) -> dict[str, Any] | None:
        return next((e for e in _json_lines(log) if e.get("request_id") == request_id), None)

    wait_until(lambda: line_in(stack.http.log()) and line_in(stack.rpc.log()), 60, "both log lines")
    http_line, rpc_line = line_in(stack.http.log()), line_in(stack.rpc.log())
    assert http_line is not None and rpc_line is not None
    assert (http_line["route"], http_line["method"], http_line["status"], http_line["chat"]) == (
        "/api/send",
        "POST",
        200,
        chat,
    )
    assert http_line["latency_ms"] > 0
    assert (rpc_line["method"], rpc_line["code"], rpc_line["chat"]) == ("Send", 0, chat)
    assert secret not in stack.http.log() and secret not in stack.rpc.log()


def test_a_request_id_is_generated_when_none_is_given(stack: Stack) -> None:
    first = requests.get(stack.http.url + "/ping", timeout=10).headers["X-Request-ID"]
    second = requests.get(stack.http.url + "/ping", timeout=10).headers["X-Request-ID"]
    assert len(first) == 32 and first != second


# --- Rate limiting (off by default) -----------------------------------------------


@pytest.fixture
def limited_stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    s.rpc.env.update(RATE_LIMIT_PER_S="1", RATE_LIMIT_BURST="3")
    try:
        yield s.start()
    finally:
        s.stop()


def test_rate_limit_per_sender(limited_stack: Stack, rpc: Any) -> None:
    api = Api(limited_stack.http.url)
    for i in range(3):  # the burst
        api.send_ok("a:b", f"burst {i}", "a")
    limited = api.send("a:b", "one too many", "a")
    assert limited.status_code == 429
    assert limited.json()["code"] == 429 and "retry" in limited.json()["msg"]
    assert int(limited.headers["Retry-After"]) >= 1
    client = make_client(rpc.IMService, "127.0.0.1", limited_stack.rpc.port, timeout=5000)
    try:
        response = client.Send(rpc.SendRequest(message=rpc.Message(Chat="a:b", Text="thrift", Sender="a")))
        assert response.Code == 429 and response.RetryAfterMs > 0
    finally:
        client.close()
    api.send_ok("a:b", "another sender is not limited", "b")
    wait_until(lambda: api.send("a:b", "after waiting", "a").status_code == 200, 60, "the rate to allow a send")
    texts = [m["text"] for m in api.pull_all("a:b")]
    assert "one too many" not in texts and "thrift" not in texts


def test_no_rate_limit_by_default(api: Api, chat: str) -> None:
    a = chat.split(":")[0]
    for i in range(50):
        api.send_ok(chat, f"m{i}", a)
