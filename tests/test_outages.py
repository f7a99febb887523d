"""Backends that fail: Redis killed or stalled, the RPC server killed, an RPC
server that answers wrongly or late. Each test owns its processes."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TMessageType
from thriftpy2.transport import TCyBufferedTransport, TSocket

from tests.conftest import Api
from tests.servers import HttpServer, RpcServer, Stack, signal, wait_until

CLIENT_DEADLINE = 5.0  # far above the 1 s RPC timeout: a "hang" fails the test


def _assert_503(r: requests.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["code"] == 503
    assert r.headers.get("Retry-After")


def test_redis_killed_gives_503_then_service_resumes_after_restart(own_stack: Stack, rpc: Any) -> None:
    api = Api(own_stack.http.url)
    before = [api.send_ok("a:b", f"before {i}", "a") for i in range(5)]

    own_stack.redis.stop(signal.SIGKILL)
    for _ in range(3):
        _assert_503(
            api.session.post(
                api.base_url + "/api/send", json={"chat": "a:b", "text": "x", "sender": "a"}, timeout=CLIENT_DEADLINE
            )
        )
        _assert_503(api.session.get(api.base_url + "/api/pull", params={"chat": "a:b"}, timeout=CLIENT_DEADLINE))
    thrift = _thrift_pull(own_stack.rpc.port, rpc)
    assert (thrift.Code, thrift.Msg) == (503, "storage unavailable")

    own_stack.redis.start()  # same port, same data directory; our servers keep running
    wait_until(lambda: api.send("a:b", "after", "b").status_code == 200, 60, "sends to succeed again")
    stored = api.pull_all("a:b")
    assert [m["send_time"] for m in stored[:5]] == before  # acknowledged before the kill: kept
    assert stored[-1]["text"] == "after"


def test_redis_stall_gives_a_fast_503(own_stack: Stack) -> None:
    api = Api(own_stack.http.url)
    api.send_ok("a:b", "warm up", "a")
    admin = own_stack.redis.client()
    admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")  # Redis 7 has no DEBUG SLEEP
    try:
        r = api.session.post(
            api.base_url + "/api/send", json={"chat": "a:b", "text": "x", "sender": "a"}, timeout=CLIENT_DEADLINE
        )
        _assert_503(r)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    wait_until(lambda: api.send("a:b", "after", "a").status_code == 200, 60, "sends to succeed again")


def test_rpc_server_killed_gives_503_and_http_recovers_by_itself(own_stack: Stack) -> None:
    api = Api(own_stack.http.url)
    for i in range(20):  # fill the workers' connection pools
        api.send_ok("a:b", f"m{i}", "a")

    own_stack.rpc.stop(signal.SIGKILL)
    for _ in range(4):
        _assert_503(api.session.get(api.base_url + "/api/pull", params={"chat": "a:b"}, timeout=CLIENT_DEADLINE))

    own_stack.rpc.start()
    wait_until(lambda: api.pull("a:b").status_code == 200, 60, "pulls to succeed again")
    for _ in range(10):  # stale pooled connections never give a wrong answer
        assert [m["text"] for m in api.pull_all("a:b")] == [f"m{i}" for i in range(20)]


def _thrift_pull(port: int, rpc: Any) -> Any:
    sock = TSocket("127.0.0.1", port, socket_timeout=int(CLIENT_DEADLINE * 1000))
    sock.open()
    try:
        proto = TCyBinaryProtocol(TCyBufferedTransport(sock))
        proto.write_message_begin("Pull", TMessageType.CALL, 1)
        rpc.IMService.Pull_args(req=rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).write(proto)
        proto.trans.flush()
        proto.read_message_begin()
        result = rpc.IMService.Pull_result()
        result.read(proto)
        return result.success
    finally:
        sock.close()


# --- A misbehaving RPC server, to test the HTTP server's client pool ----------


class FakeRpcServer(socketserver.ThreadingTCPServer):
    """Answers Pull with one message naming the requested chat, but can
    answer with a wrong seqid, a wrong method name, or late."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, rpc: Any) -> None:
        self.rpc = rpc
        self.mode = "ok"
        self.delay_next = 0.0
        self.connections = 0
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _FakeHandler(socketserver.BaseRequestHandler):
    server: FakeRpcServer

    def handle(self) -> None:
        server = self.server
        server.connections += 1
        sock = TSocket()
        sock.set_handle(self.request)
        proto = TCyBinaryProtocol(TCyBufferedTransport(sock))
        rpc = server.rpc
        try:
            while True:
                name, _, seqid = proto.read_message_begin()
                args = rpc.IMService.Pull_args()
                args.read(proto)
                delay, server.delay_next = server.delay_next, 0.0
                time.sleep(delay)
                if server.mode == "wrong-seqid":
                    seqid += 1
                elif server.mode == "wrong-name":
                    name = "Send"
                message = rpc.Message(Chat=args.req.Chat, Text="reply", Sender="a", SendTime=1)
                reply = rpc.PullResponse(Code=0, Msg="success", Messages=[message], HasMore=False, NextCursor=0)
                proto.write_message_begin(name, TMessageType.REPLY, seqid)
                rpc.IMService.Pull_result(success=reply).write(proto)
                proto.trans.flush()
        except Exception:
            pass


@pytest.fixture
def fake_rpc(rpc: Any) -> Iterator[FakeRpcServer]:
    server = FakeRpcServer(rpc)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def http_on_fake(tmp_path: Path, fake_rpc: FakeRpcServer) -> Iterator[Api]:
    http = HttpServer(tmp_path, fake_rpc.port, workers=1)
    http.start()
    api = Api(http.url)
    yield api
    api.session.close()
    http.stop()


def test_pooled_connections_are_reused(http_on_fake: Api, fake_rpc: FakeRpcServer) -> None:
    for _ in range(5):
        assert http_on_fake.pull_ok("a:b")["messages"][0]["chat"] == "a:b"
    assert fake_rpc.connections == 1


@pytest.mark.parametrize("mode", ["wrong-seqid", "wrong-name"])
def test_a_mismatched_reply_is_refused_and_its_connection_dropped(
    http_on_fake: Api, fake_rpc: FakeRpcServer, mode: str
) -> None:
    fake_rpc.mode = mode
    for i in range(3):
        _assert_503(http_on_fake.pull("a:b"))
        assert fake_rpc.connections == i + 1  # never reused after a bad reply


def test_a_late_reply_is_never_taken_for_the_next_call(http_on_fake: Api, fake_rpc: FakeRpcServer) -> None:
    fake_rpc.delay_next = 1.5  # beyond the 1 s RPC timeout
    _assert_503(http_on_fake.pull("first:chat"))
    # The next call must be answered for its own chat, not with the late reply.
    assert http_on_fake.pull_ok("second:chat")["messages"][0]["chat"] == "second:chat"


def test_unreachable_rpc_server_gives_a_fast_503(tmp_path: Path) -> None:
    from tests.servers import free_port

    http = HttpServer(tmp_path, free_port(), workers=1)  # nothing listens there
    http.start()
    try:
        _assert_503(Api(http.url).pull("a:b"))
    finally:
        http.stop()


def test_rpc_server_starts_before_redis_and_answers_503(tmp_path: Path, rpc: Any) -> None:
    from tests.servers import free_port

    server = RpcServer(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    server.start()
    try:
        assert _thrift_pull(server.port, rpc).Code == 503
    finally:
        server.stop()
