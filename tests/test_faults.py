"""Faults injected into real processes under a steady stream of sends:
no acknowledged message is lost or stored twice, clients get fast errors
instead of hangs, and service resumes without restarting anything else.
Run with `scripts/test.sh --fast` to skip these while iterating."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import Api
from tests.load import SendLoad
from tests.servers import HttpServer, Stack, free_port, signal, wait_until

pytestmark = pytest.mark.fault


def _report(name: str, outcome: dict[str, int]) -> None:
    print(f"\n{name}: {outcome}")


def test_redis_killed_and_restarted_under_load(own_stack: Stack) -> None:
    api = Api(own_stack.http.url)
    with SendLoad(own_stack.http.url, "a:b", thrift_port=own_stack.rpc.port) as load:
        load.wait_for_acks(200)
        own_stack.redis.stop(signal.SIGKILL)
        load.wait_for_errors(30)  # clients see the outage...
        own_stack.redis.start()  # ...then Redis comes back on its port, with its AOF
        load.wait_for_acks(200)  # and sends resume, our servers untouched
    outcome = load.verify(api)
    _report("redis kill -9", outcome)
    assert set(load.errors) <= {"http 503", "thrift 503"}, load.errors  # fast 503s, no hangs


def test_rpc_server_killed_and_restarted_under_load(own_stack: Stack) -> None:
    api = Api(own_stack.http.url)
    with SendLoad(own_stack.http.url, "a:b") as load:
        load.wait_for_acks(200)
        own_stack.rpc.stop(signal.SIGKILL)
        load.wait_for_errors(30)
        own_stack.rpc.start()
        load.wait_for_acks(200)  # the HTTP server reconnects by itself
    outcome = load.verify(api)
    _report("rpc_server kill -9", outcome)
    assert set(load.errors) <= {"http 503"}, load.errors
    for _ in range(5):  # no stale pooled connection answers wrongly afterwards
        assert api.pull_ok("a:b", limit=1)["messages"][0]["chat"] == "a:b"


def _workers(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def test_gunicorn_worker_killed_under_load(own_stack: Stack) -> None:
    api = Api(own_stack.http.url)
    workers = _workers(own_stack.http.pid)
    assert len(workers) == 2
    victim = min(workers)
    with SendLoad(own_stack.http.url, "a:b") as load:
        load.wait_for_acks(200)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(_workers(own_stack.http.pid) - {victim}) == 2, 30, "the master to replace the worker")
        load.wait_for_acks(200)
    outcome = load.verify(api)
    _report("gunicorn worker kill -9", outcome)
    # Requests in flight on the killed worker get a broken connection (outcome
    # unknown, never acknowledged); nothing else.
    assert set(load.errors) <= {"connection"}, load.errors


def test_a_connect_failure_is_retried_on_the_next_endpoint(tmp_path: Path, stack: Stack, chat: str) -> None:
    dead = free_port()  # nothing listens there: connects fail at once
    http = HttpServer(tmp_path, stack.rpc.port, workers=1, RPC_ADDR=f"127.0.0.1:{dead},127.0.0.1:{stack.rpc.port}")
    http.start()
    try:
        api = Api(http.url)
        a = chat.split(":")[0]
        results: list[int] = []

        def send(i: int) -> None:
            r = requests.post(http.url + "/api/send", json={"chat": chat, "text": f"m{i}", "sender": a}, timeout=10)
            results.append(r.status_code)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]  # concurrent: many connects
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 20
        assert len(api.pull_all(chat)) == 20
    finally:
        http.stop()


class ReplyDropper:
    """A TCP proxy in front of the RPC server that can swallow one reply
    (the request reaches the server, the answer never comes back)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.drop_next_reply = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self.drop_next_reply:
                    self.drop_next_reply = False
                    break  # swallow it and cut the connection
                target.sendall(data)
        except OSError:
            pass
        for s in (source, target):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()


def test_a_client_retry_with_its_key_after_a_dropped_reply_stores_once(tmp_path: Path, stack: Stack, chat: str) -> None:
    proxy = ReplyDropper(stack.rpc.port)
    http = HttpServer(tmp_path, proxy.port, workers=1)
    http.start()
    try:
        api = Api(http.url)
        a = chat.split(":")[0]
        key = uuid.uuid4().hex
        proxy.drop_next_reply = True
        first = api.send(chat, "exactly once", a, key=key)
        assert first.status_code == 503  # stored, but the reply was lost: outcome unknown to the client
        stored = api.pull_all(chat)
        assert [m["text"] for m in stored] == ["exactly once"]  # not retried by the HTTP server
        retry = api.send(chat, "exactly once", a, key=key)
        assert retry.status_code == 200
        assert retry.json()["send_time"] == stored[0]["send_time"]
        assert api.pull_all(chat) == stored
    finally:
        http.stop()
        proxy.close()


def test_healthz_names_the_failing_part(own_stack: Stack) -> None:
    api = Api(own_stack.http.url)
    assert api.session.get(api.base_url + "/healthz").json() == {"status": "ok", "rpc": "ok", "storage": "ok"}
    own_stack.redis.stop(signal.SIGKILL)
    r = api.session.get(api.base_url + "/healthz", timeout=5)
    assert r.status_code == 503
    assert r.json()["rpc"] == "ok" and r.json()["storage"].startswith("unavailable")
    assert r.json()["msg"].startswith("storage")
    own_stack.rpc.stop(signal.SIGKILL)
    r = api.session.get(api.base_url + "/healthz", timeout=5)
    assert r.status_code == 503
    assert r.json()["rpc"] == "unavailable" and r.json()["msg"].startswith("rpc")
    own_stack.redis.start()
    own_stack.rpc.start()
    wait_until(lambda: api.session.get(api.base_url + "/healthz").status_code == 200, 60, "readiness")
