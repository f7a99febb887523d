"""Service registration and discovery through a real etcd, in Kitex's
registry-etcd format, so that Kitex clients find our servers and our HTTP
server finds any server registered that way."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from etcd3gw.client import Etcd3Client

from tests.conftest import Api
from tests.load import SendLoad
from tests.servers import EtcdServer, HttpServer, RpcServer, Stack, signal, thrift_client, wait_until

PREFIX = "kitex/registry-etcd/demo.rpc.server/"


def _registered(etcd: EtcdServer) -> dict[str, tuple[str, str]]:
    """key -> (value, lease id)."""
    client = Etcd3Client(host="127.0.0.1", port=etcd.port)
    return {meta["key"].decode(): (value.decode(), meta.get("lease", "0")) for value, meta in client.get_prefix(PREFIX)}


def _rpc(tmp_path: Path, stack: Stack, etcd: EtcdServer, **env: str) -> RpcServer:
    server = RpcServer(tmp_path, stack.redis.url, ETCD_ENDPOINTS=etcd.url, **env)
    server.env["RPC_ADVERTISE_ADDR"] = f"127.0.0.1:{server.port}"
    return server


def test_registration_is_kitex_registry_etcd_exactly(tmp_path: Path, stack: Stack, etcd: EtcdServer) -> None:
    server = _rpc(tmp_path, stack, etcd)
    server.start()
    key = f"{PREFIX}127.0.0.1:{server.port}"
    try:
        wait_until(lambda: key in _registered(etcd), 60, "the registration")
        value, lease = _registered(etcd)[key]
        # Go's encoding/json output for Kitex's registry info: no spaces, this field order.
        assert value == f'{{"network":"tcp","address":"127.0.0.1:{server.port}","weight":10,"tags":{{}}}}'
        assert json.loads(value)["weight"] == 10
        client = Etcd3Client(host="127.0.0.1", port=etcd.port)
        ttl = client.post(client.get_url("/kv/lease/timetolive"), json={"ID": lease})
        assert 0 < int(ttl["TTL"]) <= 60 and int(ttl["grantedTTL"]) == 60
    finally:
        server.stop()
    assert key not in _registered(etcd)  # revoked on shutdown, not left to expire


def test_one_registration_for_a_server_with_workers(tmp_path: Path, stack: Stack, etcd: EtcdServer) -> None:
    server = _rpc(tmp_path, stack, etcd, RPC_WORKERS="2")
    server.start()
    try:
        wait_until(lambda: f"{PREFIX}127.0.0.1:{server.port}" in _registered(etcd), 60, "the registration")
        assert [k for k in _registered(etcd) if k.endswith(f":{server.port}")] == [f"{PREFIX}127.0.0.1:{server.port}"]
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.fault
def test_the_http_server_finds_replicas_in_etcd_and_survives_losing_one(
    tmp_path: Path, stack: Stack, etcd: EtcdServer
) -> None:
    survivor, victim = _rpc(tmp_path, stack, etcd), _rpc(tmp_path, stack, etcd)
    survivor.start()
    victim.start()
    wait_until(
        lambda: (
            len([k for k in _registered(etcd) if k.rsplit(":", 1)[1] in {str(survivor.port), str(victim.port)}]) == 2
        ),
        60,
        "both registrations",
    )
    http = HttpServer(tmp_path, survivor.port, RPC_ETCD=etcd.url, RPC_REFRESH_S="1")
    http.start()
    try:
        with SendLoad(http.url, "etcd-a:etcd-b") as load:
            # Its key stays until the lease expires: ejection covers that.
            load.errors_stop_after(lambda: victim.stop(signal.SIGKILL))
        outcome = load.verify(Api(http.url))
        print(f"\netcd replica kill -9: {outcome}")
        assert set(load.errors) <= {"http 503"}
    finally:
        http.stop()
        survivor.stop()


def test_the_http_server_sees_registration_changes_at_once_through_its_watch(
    tmp_path: Path, stack: Stack, etcd: EtcdServer, chat: str
) -> None:
    """With an hour between re-reads, only the watch can tell the HTTP server
    that its only RPC server left and another one came."""
    first = _rpc(tmp_path, stack, etcd)
    first.start()
    wait_until(lambda: f"{PREFIX}127.0.0.1:{first.port}" in _registered(etcd), 60, "the first registration")
    http = HttpServer(tmp_path, first.port, workers=1, RPC_ETCD=etcd.url, RPC_REFRESH_S="3600")
    http.start()
    second = _rpc(tmp_path, stack, etcd)
    try:
        api = Api(http.url)
        a = chat.split(":")[0]
        api.send_ok(chat, "via the first", a)
        second.start()
        first.stop()  # deregisters, then stops
        wait_until(lambda: api.send(chat, "via the second", a).status_code == 200, 60, "a send through the second")
        assert api.pull_all(chat)[0]["text"] == "via the first"
    finally:
        http.stop()
        second.stop()


STOP_CASES = [("etcd", 1), ("etcd", 2), ("static", 2), ("dns", 2)]


@pytest.mark.parametrize(("discovery", "workers"), STOP_CASES, ids=[f"{d}-{w}-workers" for d, w in STOP_CASES])
def test_sigterm_stops_the_http_server_after_requests_whatever_the_discovery(
    tmp_path: Path, stack: Stack, etcd: EtcdServer, chat: str, discovery: str, workers: int
) -> None:
    """gunicorn's graceful stop must end with every worker gone by itself,
    whatever finds the RPC servers (etcd's watch stream is read in a thread).
    At the end of its graceful timeout gunicorn kills the workers left and
    exits 0 all the same, so that timeout is set far beyond the deadline
    waited for here: a worker that hangs after "Worker exiting" fails the
    test instead of being killed."""
    server = _rpc(tmp_path, stack, etcd)
    server.start()
    wait_until(lambda: f"{PREFIX}127.0.0.1:{server.port}" in _registered(etcd), 15, "the registration")
    found_by = {"etcd": {"RPC_ETCD": etcd.url}, "dns": {"RPC_DNS": f"localhost:{server.port}"}, "static": {}}
    http = HttpServer(tmp_path, server.port, workers=workers, HTTP_GRACEFUL_TIMEOUT_S="600", **found_by[discovery])
    http.start()
    try:
        api = Api(http.url)
        a = chat.split(":")[0]
        for i in range(4 * workers):  # (each worker's first call starts its watch)
            api.send_ok(chat, f"before the stop {i}", a)
            with requests.Session() as fresh:  # a new connection, so another worker may take it
                assert fresh.get(http.url + "/ping", timeout=10).status_code == 200
        api.session.close()
        assert http.popen is not None
        started = time.monotonic()
        http.popen.send_signal(signal.SIGTERM)
        try:
            status = http.popen.wait(60)  # generous: a clean stop takes about a second
        except subprocess.TimeoutExpired:
            pytest.fail(f"gunicorn still running 60 s after SIGTERM; its log:\n{_server_lines(http.log())}")
        print(f"\ngunicorn ({discovery}, {workers} workers) exited {time.monotonic() - started:.1f} s after SIGTERM")
        assert status == 0, f"gunicorn exit status {status}; its log:\n{_server_lines(http.log())}"
        assert http.log().count("Worker exiting") == workers
    finally:
        http.stop()
        server.stop()


def _server_lines(log: str) -> str:
    """The log without its per-request lines."""
    return "\n".join(line for line in log.splitlines() if "http_server.access" not in line)[-3000:]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_clean_stop_with_idle_connections_logs_no_warning(
    tmp_path: Path, stack: Stack, etcd: EtcdServer, rpc: Any, workers: str
) -> None:
    """SIGTERM to an RPC server registered in etcd, with idle pooled client
    connections (some after a call, some that never sent a byte): it
    deregisters, closes them and exits 0, and a normal stop logs no warning."""
    server = _rpc(tmp_path, stack, etcd, RPC_WORKERS=workers)
    server.start()
    key = f"{PREFIX}127.0.0.1:{server.port}"
    wait_until(lambda: key in _registered(etcd), 15, "the registration")
    clients = [thrift_client(rpc, server.port) for _ in range(6)]
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    try:
        for client in clients:
            assert client.Pull(rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).Code == 0
        assert server.popen is not None
        server.popen.send_signal(signal.SIGTERM)
        try:
            status = server.popen.wait(60)  # generous: idle connections are closed at once
        except subprocess.TimeoutExpired:
            pytest.fail(f"rpc_server still running 60 s after SIGTERM; its log:\n{server.log()[-3000:]}")
        log = server.log()
        assert status == 0, f"exit status {status}; its log:\n{log[-3000:]}"
        complaints = [line for line in log.splitlines() if '"level": "WARNING"' in line or '"level": "ERROR"' in line]
        assert not complaints and "Traceback" not in log, "\n".join(complaints) or log[-3000:]
        assert key not in _registered(etcd)
    finally:
        for client in clients:
            client.close()
        for sock in silent:
            sock.close()
        server.stop()
