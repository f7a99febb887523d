"""Start-up failures of the real server processes: a bad setting, a port in
use (by anything, or by another of our servers, one process or a supervisor
of several), a metrics port in use, a file that cannot be read. Each is one
line on stderr naming what to change, and exit status 2; never a traceback,
never a server that runs anyway. Redis (or a Redis Cluster) that is down at
start is not a failure."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests

from tests.servers import (
    ROOT,
    HttpServer,
    Process,
    RedisCluster,
    RpcServer,
    Stack,
    free_port,
    thrift_client,
    wait_until,
)

GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def _run(argv: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a server that must fail at once; a server that serves instead is killed at `timeout`."""
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    try:
        return subprocess.run(argv, env=environ, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{argv} still running after {timeout} s; its stderr:\n{e.stderr!r}") from None


def _assert_one_line(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit status 2 and a single line on stderr holding every one of `words`."""
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1, f"exit {done.returncode}, stderr:\n{done.stderr}"
    assert done.stdout == "", done.stdout
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _rpc(port: int, workers: int, *flags: str) -> list[str]:
    argv = [sys.executable, "-m", "rpc_server", "--host", "127.0.0.1", "--port", str(port)]
    return [*argv, "--workers", str(workers), "--metrics-port", str(free_port()), *flags]


def _http(port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "http_server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *flags]


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder.getsockname()[1]


# --- rpc_server -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_rpc_bad_settings(workers: int) -> None:
    port = free_port()
    done = _run(_rpc(port, workers), IDEMPOTENCY_TTL_S="0")
    _assert_one_line(done, "IDEMPOTENCY_TTL_S", "'0'", "1..31536000")
    done = _run(_rpc(port, workers, "--redis-wait-timeout-ms", "0"))
    _assert_one_line(done, "--redis-wait-timeout-ms", "'0'", "1..600000")
    done = _run(_rpc(port, workers), LOG_LEVEL="verbose")
    _assert_one_line(done, "LOG_LEVEL", "'verbose'", "DEBUG, INFO, WARNING, ERROR")
    done = _run(_rpc(port, workers, "--no-such-flag"))
    _assert_one_line(done, "--no-such-flag")


@pytest.mark.parametrize("workers", [1, 2])
def test_rpc_port_in_use(held_port: int, workers: int) -> None:
    done = _run(_rpc(held_port, workers))
    _assert_one_line(done, "RPC_PORT", str(held_port), "in use")


@pytest.mark.parametrize("workers", [1, 2])
def test_rpc_metrics_port_in_use(held_port: int, workers: int) -> None:
    done = _run([*_rpc(free_port(), workers), "--metrics-port", str(held_port)])
    _assert_one_line(done, "RPC_METRICS_PORT", str(held_port), "in use")


@pytest.mark.parametrize(("first", "second"), [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_a_second_rpc_server_on_the_same_port_fails(
    tmp_path: Path, stack: Stack, rpc: Any, first: int, second: int
) -> None:
    """Whatever runs each (one process, or a supervisor of two): only the first serves."""
    server = RpcServer(tmp_path, stack.redis.url, RPC_WORKERS=str(first))
    server.start()
    try:
        done = _run(_rpc(server.port, second), REDIS_URL=stack.redis.url, timeout=30)
        _assert_one_line(done, "RPC_PORT", str(server.port), "in use")
        for _ in range(10):  # new connections, each to a worker the kernel picks: all the first server's
            client = thrift_client(rpc, server.port)
            try:
                assert client.Pull(rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).Code == 0
            finally:
                client.close()
        assert server.alive()
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_rpc_unreadable_or_malformed_redis_settings(tmp_path: Path, workers: int) -> None:
    missing = tmp_path / "missing-ca.pem"
    done = _run(_rpc(free_port(), workers), REDIS_URL="rediss://127.0.0.1:1/0", REDIS_TLS_CA_FILE=str(missing))
    _assert_one_line(done, "REDIS_TLS_CA_FILE", str(missing))
    done = _run(_rpc(free_port(), workers), REDIS_URL="redis://127.0.0.1:port/0")
    _assert_one_line(done, "REDIS_URL")
    done = _run(_rpc(free_port(), workers), REDIS_CLUSTER_NODES="127.0.0.1")
    _assert_one_line(done, "REDIS_CLUSTER_NODES")


def test_a_worker_that_cannot_start_stops_its_supervisor(tmp_path: Path) -> None:
    """A setting the supervisor found good but its worker cannot use (here a CA
    file that changed in between: a FIFO giving a CA bundle once, then junk)
    would fail each worker started in its place: the supervisor exits 2."""
    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)
    contents = [Path(certifi.where()).read_bytes()]  # the supervisor's read

    def serve_fifo() -> None:
        while not done.is_set():
            with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as f:  # blocks until the next reader
                f.write(contents.pop(0) if contents else b"not a certificate\n")

    done = threading.Event()
    writer = threading.Thread(target=serve_fifo, daemon=True)
    writer.start()
    try:
        result = _run(_rpc(free_port(), 2), REDIS_URL="rediss://127.0.0.1:1/0", REDIS_TLS_CA_FILE=str(fifo))
    finally:
        done.set()
        with contextlib.suppress(OSError):  # release the writer if it waits for a reader
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(5)
    assert result.returncode == 2, result.stderr
    assert f"rpc_server: REDIS_TLS_CA_FILE {fifo}" in result.stderr  # the worker's line
    assert "could not start" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_rpc_idl_dir_without_the_idl(tmp_path: Path) -> None:
    done = _run(_rpc(free_port(), 1), IDL_DIR=str(tmp_path))
    _assert_one_line(done, "IDL_DIR", str(tmp_path))


@pytest.mark.parametrize(
    "tool", ["rpc_server.tools.sweep", "rpc_server.tools.reindex", "rpc_server.tools.migrate_seed"]
)
def test_the_tools_that_read_the_rpc_settings_fail_the_same_way(tool: str) -> None:
    done = _run([sys.executable, "-m", tool], REDIS_URL="redis://127.0.0.1:1/0", REDIS_POOL_SIZE="0")
    assert _assert_one_line(done, "REDIS_POOL_SIZE", "'0'", "1..100000").startswith(tool + ": ")


@pytest.mark.slow
@pytest.mark.fault
def test_rpc_server_waits_for_a_redis_cluster_that_is_down_at_start(tmp_path: Path, rpc: Any) -> None:
    """Not a start-up failure: the server waits for the cluster, then serves."""
    cluster = RedisCluster(tmp_path / "cluster")  # its ports are chosen now; nothing runs yet
    server = RpcServer(tmp_path, "redis://unused:1/0", REDIS_CLUSTER_NODES=cluster.addresses)
    Process.start(server)
    try:
        wait_until(lambda: "not reachable" in server.log(), 30, "the server to say it waits for the cluster")
        assert server.alive(), server.log()
        cluster.start()

        def served() -> bool:
            client = thrift_client(rpc, server.port, timeout_ms=3000)
            try:
                return bool(client.Pull(rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).Code == 0)
            finally:
                client.close()

        wait_until(served, 60, "the server to serve once the cluster is up")
        assert "Traceback" not in server.log()
    finally:
        server.stop()
        cluster.stop()


# --- http_server ----------------------------------------------------------------------------------


def test_http_port_in_use(held_port: int) -> None:
    done = _run(_http(held_port), RPC_ADDR="127.0.0.1:1")
    _assert_one_line(done, "HTTP_PORT", str(held_port), "in use")


def test_a_second_http_server_on_the_same_port_fails(tmp_path: Path, stack: Stack) -> None:
    done = _run(_http(stack.http.port), RPC_ADDR=f"127.0.0.1:{stack.rpc.port}")
    _assert_one_line(done, "HTTP_PORT", str(stack.http.port), "in use")
    assert stack.http.alive()


@pytest.mark.parametrize(
    ("env", "flags", "words"),
    [
        ({"HTTP_WORKER_CONNECTIONS": "0"}, [], ["HTTP_WORKER_CONNECTIONS", "'0'", "1..1000000"]),
        ({}, ["--keepalive-s", "0"], ["--keepalive-s", "'0'", "1..3600"]),
        ({"RPC_TIMEOUT_MS": "1s"}, [], ["RPC_TIMEOUT_MS", "'1s'", "1..3600000"]),
        ({"AUTH_MODE": "bogus"}, [], ["AUTH_MODE", "'bogus'"]),
        ({"RPC_ADDR": "127.0.0.1"}, [], ["RPC_ADDR", "host:port"]),
        ({"AUTH_MODE": "jwt", "JWT_PUBLIC_KEY_FILE": "/nonexistent.pem"}, [], ["JWT_PUBLIC_KEY_FILE", "cannot read"]),
        ({"LOG_LEVEL": "chatty"}, [], ["LOG_LEVEL", "'chatty'"]),
    ],
    ids=["worker-connections", "keepalive-flag", "rpc-timeout", "auth-mode", "rpc-addr", "jwt-key", "log-level"],
)
def test_http_bad_settings(env: dict[str, str], flags: list[str], words: list[str]) -> None:
    done = _run(_http(free_port(), *flags), **env)
    _assert_one_line(done, *words)


def test_gunicorn_run_directly_fails_the_same_way(held_port: int) -> None:
    """`gunicorn --config python:http_server.gunicorn_conf` (the README's other way to run it)."""
    argv = [GUNICORN, "--config", "python:http_server.gunicorn_conf", "http_server.app:get_app()"]
    done = _run(argv, HTTP_HOST="127.0.0.1", HTTP_PORT=str(held_port), HTTP_WORKERS="1")
    _assert_one_line(done, "HTTP_PORT", str(held_port), "in use")
    done = _run(argv, HTTP_HOST="127.0.0.1", HTTP_PORT=str(free_port()), HTTP_KEEPALIVE_S="0")
    _assert_one_line(done, "HTTP_KEEPALIVE_S", "'0'")


def test_http_server_still_starts_and_serves(tmp_path: Path, stack: Stack) -> None:
    """The pre-bound listening socket is the one gunicorn's workers serve on."""
    http = HttpServer(tmp_path, stack.rpc.port, workers=2)
    http.start()
    try:
        assert requests.get(http.url + "/api/pull", params={"chat": "a:b"}, timeout=10).status_code == 200
        assert "Traceback" not in http.log()
    finally:
        http.stop()
