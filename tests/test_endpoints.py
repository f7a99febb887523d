"""RPC endpoint choice in the HTTP server: pure logic with a fake clock,
then DNS discovery and a replica killed under load, on real processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from http_server.endpoints import Endpoints, dns, static
from tests.conftest import Api
from tests.load import SendLoad
from tests.servers import HttpServer, RpcServer, Stack, signal

A, B, C = ("10.0.0.1", 8888), ("10.0.0.2", 8888), ("10.0.0.3", 8888)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_static_list_is_parsed() -> None:
    assert static("10.0.0.1:8888, [::1]:9000,:7")() == [A, ("::1", 9000), ("127.0.0.1", 7)]


def test_round_robin_over_healthy_endpoints() -> None:
    endpoints = Endpoints(lambda: [A, B, C], refresh_s=float("inf"), eject_s=5, clock=Clock())
    assert [endpoints.order()[0] for _ in range(4)] == [A, B, C, A]


def test_a_failed_endpoint_is_tried_last_until_its_probe_time() -> None:
    clock = Clock()
    endpoints = Endpoints(lambda: [A, B, C], refresh_s=float("inf"), eject_s=5, clock=clock)
    endpoints.failed(A)
    assert all(endpoints.order()[-1] == A for _ in range(6))  # ejected: last, still tried as a last resort
    clock.now += 5  # its probe time: back in the rotation
    assert any(endpoints.order()[0] == A for _ in range(3))
    endpoints.failed(A)
    assert all(endpoints.order()[-1] == A for _ in range(3))
    endpoints.succeeded(A)  # a successful connect makes it healthy at once
    assert any(endpoints.order()[0] == A for _ in range(3))


def test_all_ejected_are_still_tried() -> None:
    endpoints = Endpoints(lambda: [A, B], refresh_s=float("inf"), eject_s=5, clock=Clock())
    endpoints.failed(A)
    endpoints.failed(B)
    assert sorted(endpoints.order()) == [A, B]


def test_the_source_is_read_again_after_the_refresh_period_and_kept_on_failure() -> None:
    clock = Clock()
    answers: list[list[tuple[str, int]] | OSError] = [[A], [A, B], OSError("DNS down")]

    def source() -> list[tuple[str, int]]:
        answer = answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    endpoints = Endpoints(source, refresh_s=5, eject_s=5, clock=clock)
    assert endpoints.order() == [A]
    assert endpoints.order() == [A]  # not read again yet
    clock.now += 5
    assert sorted(endpoints.order()) == [A, B]
    clock.now += 5
    assert sorted(endpoints.order()) == [A, B]  # DNS failed: kept


def test_dns_gives_every_address_of_a_name() -> None:
    addresses = dns("localhost:8888")()
    assert ("127.0.0.1", 8888) in addresses
    assert all(port == 8888 for _, port in addresses)


def test_the_http_server_finds_rpc_servers_through_dns(tmp_path: Path, stack: Stack, chat: str) -> None:
    http = HttpServer(tmp_path, stack.rpc.port, workers=1, RPC_DNS=f"localhost:{stack.rpc.port}")
    http.start()
    try:
        api = Api(http.url)
        for i in range(20):  # ::1, if localhost has it, refuses: ejected, and the call goes to 127.0.0.1
            api.send_ok(chat, f"m{i}", chat.split(":")[0])
        assert len(api.pull_all(chat)) == 20
    finally:
        http.stop()


@pytest.mark.fault
def test_a_replica_killed_under_load_stops_causing_errors(tmp_path: Path, stack: Stack) -> None:
    survivor, victim = RpcServer(tmp_path, stack.redis.url), RpcServer(tmp_path, stack.redis.url)
    survivor.start()
    victim.start()
    http = HttpServer(tmp_path, survivor.port, RPC_ADDR=f"127.0.0.1:{survivor.port},127.0.0.1:{victim.port}")
    http.start()
    try:
        with SendLoad(http.url, "replica-a:replica-b") as load:
            load.errors_stop_after(lambda: victim.stop(signal.SIGKILL))  # ejected, then never chosen
        outcome = load.verify(Api(http.url))
        print(f"\nreplica kill -9: {outcome}")
        assert set(load.errors) <= {"http 503"}
    finally:
        http.stop()
        survivor.stop()
