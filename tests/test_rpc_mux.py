"""Several calls in flight on one Thrift connection (http_server.rpc_mux,
RPC_MUX_CONNECTIONS) and the RPC server serving them concurrently
(rpc_server.wire.concurrent_calls): each call gets its own reply, matched
by seqid; a reply that comes after its call timed out is dropped, never
handed to another call; a failed connection fails its calls and is
replaced."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
from gevent.server import StreamServer
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TMessageType
from thriftpy2.transport import TCyMemoryBuffer

from http_server.endpoints import Endpoints, static
from http_server.rpc_mux import MuxClient
from http_server.rpc_pool import RpcUnavailable
from tests.servers import Stack

_FRAME = struct.Struct(">i")


def mux_client(rpc: Any, port: int, connections: int = 1, timeout_s: float = 20.0) -> MuxClient:
    endpoints = Endpoints(static(f"127.0.0.1:{port}"), float("inf"), 5)
    return MuxClient(rpc.IMService, endpoints, connections, connect_timeout_s=5, call_timeout_s=timeout_s)


def test_many_calls_in_flight_on_one_connection_each_get_their_own_reply(stack: Stack, rpc: Any) -> None:
    client = mux_client(rpc, stack.rpc.port)
    chat = "mux-a:mux-b"

    def send(i: int) -> int:
        request = rpc.SendRequest(message=rpc.Message(Chat=chat, Text=f"message {i}", Sender="mux-a"))
        response = client.call("Send", request)
        assert response.Code == 0, (response.Code, response.Msg)
        return int(response.SendTime)

    calls = [gevent.spawn(send, i) for i in range(100)]
    gevent.joinall(calls, raise_error=True)
    times = {call.value: i for i, call in enumerate(calls)}
    assert len(times) == 100, "every send got a send_time of its own"
    page = client.call("Pull", rpc.PullRequest(Chat=chat, Cursor=0, Limit=100))
    stored = {m.SendTime: m.Text for m in page.Messages}
    assert stored == {t: f"message {i}" for t, i in times.items()}, "each reply belongs to its own call"


def test_a_call_is_answered_while_an_earlier_one_on_the_connection_still_waits(stack: Stack, rpc: Any) -> None:
    client = mux_client(rpc, stack.rpc.port)
    client.call("Health", rpc.HealthRequest(SkipStorage=True))  # one connection, open
    chat = "mux-wait-a:mux-wait-b"
    waiting = gevent.spawn(client.call, "Pull", rpc.PullRequest(Chat=chat, Cursor=0, Limit=10, WaitMs=20000))
    gevent.sleep(0)  # its call is written
    # Behind the waiting pull, on the same connection: answered now, not after the wait.
    health = client.call("Health", rpc.HealthRequest(SkipStorage=True))
    assert health.Code == 0 and not waiting.ready(), "the Health reply came back before the waiting Pull's"
    sent = client.call("Send", rpc.SendRequest(message=rpc.Message(Chat=chat, Text="wake", Sender="mux-wait-a")))
    assert sent.Code == 0, sent.Msg
    page = waiting.get(timeout=30)
    assert [m.Text for m in page.Messages] == ["wake"]


# --- against a scripted server ------------------------------------------------------


def _reply(rpc: Any, method: str, seqid: int, msg: str) -> bytes:
    buffer = TCyMemoryBuffer()
    protocol = TCyBinaryProtocol(buffer)
    protocol.write_message_begin(method, TMessageType.REPLY, seqid)
    result = getattr(rpc.IMService, method + "_result")()
    result.success = rpc.HealthResponse(Code=0, Msg=msg)
    result.write(protocol)
    protocol.write_message_end()
    payload: bytes = buffer.getvalue()
    return _FRAME.pack(len(payload)) + payload


def _calls(sock: Any) -> Iterator[tuple[str, int]]:
    """(method, seqid) of each framed call the client sends."""
    buffer = b""
    while True:
        while len(buffer) < 4 or len(buffer) < 4 + _FRAME.unpack_from(buffer)[0]:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
        size = _FRAME.unpack_from(buffer)[0]
        name, _, seqid = TCyBinaryProtocol(TCyMemoryBuffer(buffer[4 : 4 + size])).read_message_begin()
        buffer = buffer[4 + size :]
        yield name, seqid


@pytest.fixture
def scripted_server() -> Iterator[Callable[[Callable[[Any], None]], int]]:
    servers: list[StreamServer] = []

    def start(handle: Callable[[Any], None]) -> int:
        server = StreamServer(("127.0.0.1", 0), lambda sock, _: handle(sock))
        server.start()
        servers.append(server)
        return int(server.server_port)

    yield start
    for server in servers:
        server.stop(timeout=1)


def test_a_late_reply_to_a_timed_out_call_is_not_taken_for_the_next_calls(
    rpc: Any, scripted_server: Callable[[Callable[[Any], None]], int]
) -> None:
    def handle(sock: Any) -> None:
        calls = _calls(sock)
        first = next(calls)  # not answered until the next call comes
        second = next(calls)
        sock.sendall(_reply(rpc, first[0], first[1], "late answer to the first call"))
        sock.sendall(_reply(rpc, second[0], second[1], "answer to the second call"))
        for _ in calls:
            pass

    client = mux_client(rpc, scripted_server(handle), timeout_s=0.2)
    with pytest.raises(RpcUnavailable, match="timed out"):
        client.call("Health", rpc.HealthRequest())
    answer = client.call("Health", rpc.HealthRequest(), timeout_s=20)
    assert answer.Msg == "answer to the second call"


def test_a_failed_connection_fails_its_calls_and_the_next_call_reconnects(
    rpc: Any, scripted_server: Callable[[Callable[[Any], None]], int]
) -> None:
    connections = 0

    def handle(sock: Any) -> None:
        nonlocal connections
        connections += 1
        for method, seqid in _calls(sock):
            if connections == 1:
                sock.close()  # the first connection dies with its calls in flight
                return
            sock.sendall(_reply(rpc, method, seqid, "answered"))

    client = mux_client(rpc, scripted_server(handle), timeout_s=20)
    first = [gevent.spawn(client.call, "Health", rpc.HealthRequest()) for _ in range(3)]
    gevent.joinall(first)
    for call in first:
        assert isinstance(call.exception, RpcUnavailable), call.exception or call.value
    assert client.call("Health", rpc.HealthRequest()).Msg == "answered"
    assert connections == 2
