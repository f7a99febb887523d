"""`rpc_server --workers N`: N processes on one port (opened by the
supervisor, a SO_REUSEPORT group of its own: tests/test_startup.py) under a
supervisor that replaces a dead worker, stops them all gracefully, serves
their summed metrics, and leaves no orphan when killed itself."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from thriftpy2.rpc import make_client

from tests.servers import Process, RpcServer, Stack, wait_until


def _workers(supervisor: int) -> set[int]:
    return {int(pid) for pid in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()}


@pytest.fixture
def two_workers(tmp_path: Path, stack: Stack) -> Iterator[RpcServer]:
    server = RpcServer(tmp_path, stack.redis.url, RPC_WORKERS="2")
    server.start()
    try:
        wait_until(lambda: len(_workers(server.pid)) == 2, 60, "two workers")
        # The supervisor opened a socket for each: until a worker serves on its own, connections wait there.
        wait_until(lambda: server.log().count("IMService listening on") == 2, 60, "both workers listening")
        yield server
    finally:
        server.stop()


def _calls(server: RpcServer, rpc: Any, connections: int) -> None:
    for _ in range(connections):  # a new connection each: the kernel picks a worker
        client = make_client(rpc.IMService, "127.0.0.1", server.port, timeout=5000)
        try:
            assert client.Pull(rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).Code == 0
        finally:
            client.close()


def _pids_in_log(server: RpcServer) -> set[int]:
    pids = set()
    for line in server.log().splitlines():
        if line.startswith("{") and '"rpc_server.calls"' in line:
            pids.add(json.loads(line)["pid"])
    return pids


def test_connections_spread_over_the_workers(two_workers: RpcServer, rpc: Any) -> None:
    _calls(two_workers, rpc, 40)
    wait_until(lambda: _pids_in_log(two_workers) == _workers(two_workers.pid), 60, "calls served by both workers")
    with urllib.request.urlopen(f"http://127.0.0.1:{two_workers.metrics_port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    served = sum(
        float(line.rpartition(" ")[2])
        for line in metrics.splitlines()
        if line.startswith('rpc_calls_total{code="0",method="Pull"}')
    )
    assert served >= 40  # both workers' counts, summed by the supervisor


def test_a_dead_worker_is_replaced(two_workers: RpcServer, rpc: Any) -> None:
    before = _workers(two_workers.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(_workers(two_workers.pid) - {victim}) == 2, 60, "a new worker")
    _calls(two_workers, rpc, 10)


def test_sigterm_stops_every_worker_and_exits_0(two_workers: RpcServer) -> None:
    workers = _workers(two_workers.pid)
    assert two_workers.popen is not None
    two_workers.popen.send_signal(signal.SIGTERM)
    assert two_workers.popen.wait(20) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_killed_supervisor_leaves_no_orphan(two_workers: RpcServer) -> None:
    workers = _workers(two_workers.pid)
    two_workers.stop(signal.SIGKILL)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 60, "the workers to stop")


def test_a_supervisor_killed_while_its_workers_start_leaves_no_orphan(tmp_path: Path, stack: Stack) -> None:
    """Killed before its workers are up: they must still know whom to watch."""
    server = RpcServer(tmp_path, stack.redis.url, RPC_WORKERS="2")
    Process.start(server)  # without waiting for the port: the workers are still starting
    wait_until(lambda: len(_workers(server.pid)) == 2, 60, "two workers")
    workers = _workers(server.pid)
    server.stop(signal.SIGKILL)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 60, "the workers to stop")


def test_a_supervisor_removes_the_metrics_folder_it_made(tmp_path: Path, stack: Stack) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR the supervisor makes a temp folder for
    its workers' metrics: it is gone once the server has stopped, and a worker
    that is replaced on the way does not take it with it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = RpcServer(tmp_path, stack.redis.url, RPC_WORKERS="2", TMPDIR=str(tmp))
    server.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server.start()
    try:
        wait_until(lambda: len(_workers(server.pid)) == 2, 60, "two workers")
        made = list(tmp.iterdir())
        assert len(made) == 1 and made[0].name.startswith("im-rpc-metrics-"), made
        victim = next(iter(_workers(server.pid)))
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(_workers(server.pid) - {victim}) == 2, 60, "a new worker")
        assert made[0].is_dir(), "the folder went with the dead worker"
    finally:
        server.stop()
    assert server.popen is not None and server.popen.returncode == 0, server.log()[-3000:]
    assert list(tmp.iterdir()) == [], "the supervisor left its metrics folder behind"
