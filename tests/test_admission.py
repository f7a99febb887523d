"""Admission control against real servers: under a burst past the limit the
HTTP tier and the RPC server refuse at once (503 with Retry-After, Code 503
with RetryAfterMs, an event stream's 200 with `retry:`), nothing refused is
stored, and once the burst is over requests are admitted again.

A burst is made certain, not hoped for: the tier behind is held still
(SIGSTOP of the RPC server, CLIENT PAUSE of Redis) so that the admitted
requests stay in flight, and filling the limit does not depend on how fast
this machine is. Every wait is on a condition, with a generous deadline."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import HttpServer, RedisServer, RpcServer, scrape_metrics, thrift_client, wait_until

BURST = 12


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _chat() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"a-{tag}:b-{tag}", f"a-{tag}"


def _stored_texts(redis_server: RedisServer, chat: str) -> set[str]:
    """The texts of the chat's stream, read from Redis itself."""
    a, b = sorted(chat.split(":"))
    entries = redis_server.client().xrange(f"im:v1:{{{a}:{b}}}:m")
    return {fields["t"] for _, fields in entries}


def _answered(futures: list[Future[Any]], at_least: int, what: str) -> list[Any]:
    wait_until(lambda: sum(f.done() for f in futures) >= at_least, 60, what)
    return [f.result() for f in futures if f.done()]


def _limited_stack(tmp_path: Path, redis_server: RedisServer, **env: str) -> tuple[RpcServer, HttpServer]:
    """An RPC server, and one HTTP worker with a limit of at most 4 (its RPC
    connections) whose calls wait for a stopped RPC server; both started."""
    rpc = RpcServer(tmp_path, redis_server.url)
    http = HttpServer(tmp_path, rpc.port, workers=1, RPC_POOL_SIZE="4", RPC_TIMEOUT_MS="120000", **env)
    rpc.start()
    http.start()
    return rpc, http


def _sender(http: HttpServer, chat: str, sender: str) -> Callable[[str], requests.Response]:
    def send(text: str) -> requests.Response:
        body = {"chat": chat, "text": text, "sender": sender}
        return requests.post(http.url + "/api/send", json=body, timeout=120)

    return send


def test_the_http_limit_engages_under_a_burst_and_releases_after_it(tmp_path: Path, redis_server: RedisServer) -> None:
    rpc, http = _limited_stack(tmp_path, redis_server)
    chat, sender = _chat()
    session = requests.Session()
    send = _sender(http, chat, sender)

    try:
        assert send("before").status_code == 200
        texts = [f"burst {i}" for i in range(BURST)]
        os.kill(rpc.pid, signal.SIGSTOP)  # the admitted sends stay in flight
        try:
            with ThreadPoolExecutor(BURST) as threads:
                futures = [threads.submit(send, text) for text in texts]
                refused = _answered(futures, BURST - 4, "the sends past the limit to be refused")
                for r in refused:
                    assert r.status_code == 503, (r.status_code, r.text)
                    assert r.headers.get("Retry-After") == "1", r.headers
                    assert r.headers.get("X-Request-ID"), r.headers
                    body = r.json()
                    assert body["code"] == 503 and "not stored" in body["msg"], body
                # On one keep-alive connection: each refusal leaves it ready for the next request.
                for i in range(2):
                    body = {"chat": chat, "text": f"refused on a kept connection {i}", "sender": sender}
                    kept = session.post(http.url + "/api/send", json=body, headers={"X-Request-ID": f"probe-{i}"})
                    assert kept.status_code == 503 and kept.headers["X-Request-ID"] == f"probe-{i}", kept.headers
                    assert "not stored" in kept.json()["msg"], kept.text
                # While the limit is full, an event stream is refused as EventSource recovers from: 200, retry:, end.
                stream = session.get(http.url + "/api/subscribe", params={"chat": chat}, timeout=30)
                assert stream.status_code == 200, (stream.status_code, stream.text)
                assert stream.headers["Content-Type"].startswith("text/event-stream"), stream.headers
                assert stream.text.startswith("retry: 1000\n") and "event: unavailable\n" in stream.text, stream.text
                event = json.loads(stream.text.split("data: ", 1)[1])
                assert event["code"] == 503, event
                # The other routes that call the RPC server are refused too.
                pull = session.get(http.url + "/api/pull", params={"chat": chat}, timeout=30)
                assert pull.status_code == 503 and pull.headers.get("Retry-After") == "1", pull.text
                # Those that do not are served.
                assert session.get(http.url + "/ping", timeout=30).status_code == 200
                os.kill(rpc.pid, signal.SIGCONT)  # before the with block ends: it waits for every send
        finally:
            os.kill(rpc.pid, signal.SIGCONT)
        answers = [f.result() for f in futures]
        admitted = [t for t, r in zip(texts, answers, strict=True) if r.status_code == 200]
        refused_texts = [t for t, r in zip(texts, answers, strict=True) if r.status_code == 503]
        assert len(refused_texts) >= BURST - 4 and len(admitted) + len(refused_texts) == BURST, answers
        stored = _stored_texts(redis_server, chat)
        assert stored == {"before", *admitted}, "stored: the admitted sends, and none of the refused"
        metrics = scrape_metrics(http.url + "/metrics")
        assert metrics['http_admission_refused_total{route="/api/send"}'] == len(refused_texts) + 2, metrics
        # After the burst: admitted again.
        for i in range(10):
            r = send(f"after {i}")
            assert r.status_code == 200, (i, r.status_code, r.text)
        assert {f"after {i}" for i in range(10)} <= _stored_texts(redis_server, chat)
    finally:
        http.stop()
        rpc.stop()


def test_requests_past_the_http_limit_wait_for_a_slot_and_are_served_when_one_frees(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The waiting room: a burst past the limit that a slot frees in time for
    (as a closed-loop client population larger than the limit) is queued,
    first come first served, not refused. With HTTP_ADMISSION_QUEUE_MS=0 the
    same burst is refused (the test above), so this fails without the wait."""
    rpc, http = _limited_stack(tmp_path, redis_server, HTTP_ADMISSION_QUEUE_MS="60000")
    chat, sender = _chat()
    send = _sender(http, chat, sender)

    try:
        assert send("before").status_code == 200
        texts = [f"queued {i}" for i in range(BURST)]
        os.kill(rpc.pid, signal.SIGSTOP)  # 4 sends hold the 4 slots; the other 8 must wait
        try:
            with ThreadPoolExecutor(BURST) as threads:
                futures = [threads.submit(send, text) for text in texts]
                seen: list[dict[str, float]] = [{}]

                def waiting() -> float | None:
                    seen[0] = scrape_metrics(http.url + "/metrics")
                    return seen[0].get("http_admission_waiting")

                try:
                    wait_until(lambda: waiting() == BURST - 4, 60, "8 sends waiting for a slot")
                except TimeoutError:
                    admission = {k: v for k, v in seen[0].items() if "admission" in k}
                    done = [(f.result().status_code, f.result().text) for f in futures if f.done()]
                    raise AssertionError(f"admission metrics {admission}; answered {done}") from None
                assert not any(f.done() for f in futures), [f.result().text for f in futures if f.done()]
                os.kill(rpc.pid, signal.SIGCONT)  # the slots free one by one: each wakes a waiter
        finally:
            os.kill(rpc.pid, signal.SIGCONT)
        answers = [f.result() for f in futures]
        assert [r.status_code for r in answers] == [200] * BURST, [(r.status_code, r.text) for r in answers]
        assert _stored_texts(redis_server, chat) == {"before", *texts}
        metrics = scrape_metrics(http.url + "/metrics")
        assert metrics.get('http_admission_refused_total{route="/api/send"}', 0) == 0, metrics
        assert metrics["http_admission_waiting"] == 0, metrics
    finally:
        http.stop()
        rpc.stop()


def test_the_rpc_limit_engages_under_a_burst_and_releases_after_it(
    tmp_path: Path, redis_server: RedisServer, rpc: Any
) -> None:
    # A limit of 2 calls at once; Redis's timeout longer than the pause, so the admitted sends wait it out.
    server = RpcServer(tmp_path, redis_server.url, RPC_MAX_IN_FLIGHT="2", REDIS_TIMEOUT_MS="120000")
    server.start()
    chat, sender = _chat()

    def send(text: str) -> Any:
        client = thrift_client(rpc, server.port, timeout_ms=120_000)
        try:
            message = rpc.Message(Chat=chat, Text=text, Sender=sender)
            return client.Send(rpc.SendRequest(message=message))
        finally:
            client.close()

    try:
        assert send("before").Code == 0
        texts = [f"burst {i}" for i in range(BURST)]
        admin = redis_server.client()
        admin.execute_command("CLIENT", "PAUSE", "120000", "WRITE")  # the admitted sends stay in flight
        try:
            with ThreadPoolExecutor(BURST) as threads:
                futures = [threads.submit(send, text) for text in texts]
                refused = _answered(futures, BURST - 2, "the calls past the limit to be refused")
                for answer in refused:
                    assert answer.Code == 503 and "not stored" in answer.Msg, answer
                    assert answer.RetryAfterMs and answer.RetryAfterMs > 0, answer
                # Health is not limited: a probe still says whether the server works.
                probe = thrift_client(rpc, server.port, timeout_ms=30_000)
                try:
                    assert probe.Health(rpc.HealthRequest(SkipStorage=True)).Code == 0
                finally:
                    probe.close()
                admin.execute_command("CLIENT", "UNPAUSE")
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
        answers = [f.result() for f in futures]
        admitted = [t for t, a in zip(texts, answers, strict=True) if a.Code == 0]
        refused_texts = [t for t, a in zip(texts, answers, strict=True) if a.Code == 503]
        assert len(admitted) <= 2 and len(admitted) + len(refused_texts) == BURST, answers
        assert _stored_texts(redis_server, chat) == {"before", *admitted}, "none of the refused is stored"
        metrics = scrape_metrics(f"http://127.0.0.1:{server.metrics_port}/metrics")
        assert metrics['rpc_calls_refused_total{method="Send"}'] == len(refused_texts), metrics
        for i in range(10):  # after the burst: admitted again
            answer = send(f"after {i}")
            assert answer.Code == 0, (i, answer)
    finally:
        server.stop()
