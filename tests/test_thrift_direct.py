"""Direct Thrift clients against the RPC server: buffered, framed and
Kitex's TTHeader transports, strict binary, replies as a Kitex server would give them, and
connections that are not Thrift refused without harm to others."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TApplicationException, TMessageType, TType
from thriftpy2.transport import TCyBufferedTransport, TCyMemoryBuffer, TSocket

from rpc_server.wire import ttheader
from tests.conftest import ThriftClientFactory
from tests.servers import RedisServer, RpcServer, Stack, wait_until


def _send(rpc: Any, chat: str, text: Any, sender: str, **extra: Any) -> Any:
    return rpc.SendRequest(message=rpc.Message(Chat=chat, Text=text, Sender=sender), **extra)


@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
def test_send_and_pull_round_trip(thrift_client: ThriftClientFactory, rpc: Any, chat: str, framed: bool) -> None:
    client = thrift_client(framed=framed)
    a, b = chat.split(":")
    texts = ["héllo wörld ✓ 你好 🙂", "y" * 4096, "line\nbreak\0nul"]
    sent = []
    for i, text in enumerate(texts):
        response = client.Send(_send(rpc, chat, text, (a, b)[i % 2]))
        assert (response.Code, response.Msg) == (0, "success")
        sent.append(response.SendTime)
    page = client.Pull(rpc.PullRequest(Chat=chat, Cursor=0, Limit=10))
    assert (page.Code, page.Msg, page.HasMore, page.NextCursor) == (0, "success", False, 0)
    assert [(m.Chat, m.Text, m.Sender, m.SendTime) for m in page.Messages] == [
        (chat, texts[0], a, sent[0]),
        (chat, texts[1], b, sent[1]),
        (chat, texts[2], a, sent[2]),
    ]
    empty = client.Pull(rpc.PullRequest(Chat=chat, Cursor=sent[-1] + 1, Limit=10))
    assert (empty.Code, empty.Messages, empty.HasMore, empty.NextCursor) == (0, [], False, 0)


def test_many_sequential_calls_on_one_connection(thrift_client: ThriftClientFactory, rpc: Any, chat: str) -> None:
    client = thrift_client()
    a = chat.split(":")[0]
    for i in range(200):
        assert client.Send(_send(rpc, chat, f"m{i}", a)).Code == 0
    page = client.Pull(rpc.PullRequest(Chat=chat, Cursor=0, Limit=100, Reverse=True))
    assert [m.Text for m in page.Messages][:3] == ["m199", "m198", "m197"]
    assert page.HasMore is True


def test_concurrent_connections_store_every_send_once(stack: Stack, rpc: Any, chat: str) -> None:
    """1000 sends over 50 connections at once (Kitex-style pooled clients)."""
    from thriftpy2.rpc import make_client

    a, b = chat.split(":")
    start = threading.Barrier(50)
    results: list[int] = []
    errors: list[str] = []

    def client_thread(n: int) -> None:
        client = make_client(rpc.IMService, "127.0.0.1", stack.rpc.port, timeout=10000)
        try:
            start.wait()
            for i in range(20):
                response = client.Send(_send(rpc, chat, f"{n}-{i}", (a, b)[i % 2]))
                if response.Code != 0:
                    errors.append(response.Msg)
                else:
                    results.append(response.SendTime)
        finally:
            client.close()

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1000
    client = make_client(rpc.IMService, "127.0.0.1", stack.rpc.port)
    stored, cursor = [], 0
    while True:
        page = client.Pull(rpc.PullRequest(Chat=chat, Cursor=cursor, Limit=100))
        stored += [m.SendTime for m in page.Messages]
        if not page.HasMore:
            break
        cursor = page.NextCursor
    client.close()
    assert stored == sorted(results)


@pytest.mark.parametrize(
    ("request_fields", "code", "msg"),
    [
        ({"message": None}, 400, "message is required"),
        ({"message": "no-chat"}, 400, "chat is required"),
        ({"message": "bad-utf8"}, 400, "text must be valid UTF-8"),
        ({"IdempotencyKey": ""}, 400, "idempotency key"),
        ({"IdempotencyKey": "k" * 129}, 400, "idempotency key"),
    ],
)
def test_invalid_send_gets_a_code_and_message(
    thrift_client: ThriftClientFactory, rpc: Any, chat: str, request_fields: dict[str, Any], code: int, msg: str
) -> None:
    a = chat.split(":")[0]
    request = _send(rpc, chat, "hello", a)
    if request_fields.get("message") == "no-chat":
        request.message.Chat = None
    elif request_fields.get("message") == "bad-utf8":
        request.message.Text = b"\xff\xfe"
    elif "message" in request_fields:
        request.message = None
    else:
        request.IdempotencyKey = request_fields["IdempotencyKey"]
    response = thrift_client().Send(request)
    assert response.Code == code
    assert msg in response.Msg


def test_invalid_pull_gets_a_code_and_message(thrift_client: ThriftClientFactory, rpc: Any) -> None:
    client = thrift_client()
    assert client.Pull(rpc.PullRequest(Chat=None, Cursor=0, Limit=1)).Code == 400
    assert client.Pull(rpc.PullRequest(Chat="a:b", Cursor=-5, Limit=1)).Code == 400
    response = client.Pull(rpc.PullRequest(Chat="a:b", Cursor=0, Limit=-1))
    assert (response.Code, response.Msg) == (400, "limit must not be negative")
    assert client.Pull(rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).Code == 0  # connection still fine


def _raw_connection(stack: Stack) -> tuple[TSocket, TCyBinaryProtocol]:
    sock = TSocket("127.0.0.1", stack.rpc.port, socket_timeout=5000)
    sock.open()
    return sock, TCyBinaryProtocol(TCyBufferedTransport(sock))


def test_unknown_method_gets_an_exception_and_the_connection_stays_usable(stack: Stack, rpc: Any) -> None:
    sock, proto = _raw_connection(stack)
    try:
        proto.write_message_begin("Nope", TMessageType.CALL, 4242)
        proto.trans.write(bytes([TType.STOP]))  # empty argument struct
        proto.write_message_end()
        proto.trans.flush()
        name, kind, seqid = proto.read_message_begin()
        assert (name, kind, seqid) == ("Nope", TMessageType.EXCEPTION, 4242)
        error = TApplicationException()
        error.read(proto)
        assert error.type == TApplicationException.UNKNOWN_METHOD

        # The same connection answers a real call, echoing its seqid and name.
        proto.write_message_begin("Pull", TMessageType.CALL, 77)
        rpc.IMService.Pull_args(req=rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).write(proto)
        proto.write_message_end()
        proto.trans.flush()
        name, kind, seqid = proto.read_message_begin()
        assert (name, kind, seqid) == ("Pull", TMessageType.REPLY, 77)
        result = rpc.IMService.Pull_result()
        result.read(proto)
        assert result.success.Code == 0 and result.success.Msg == "success"
    finally:
        sock.close()


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.mark.parametrize(
    ("name", "payload", "log_line"),
    [
        (
            "Apache THeader",
            struct.pack(">I", 14) + b"\x0f\xff\x00\x00" + b"\x00" * 10,
            "Apache Thrift's THeader transport is not supported",
        ),
        ("compact", b"\x82\x21\x01\x04Pull\x00\x00\x00\x00", "compact protocol is not supported"),
        ("non-strict binary", b"\x00\x00\x00\x04Pull\x01\x00\x00\x00\x01\x00", "non-strict binary is refused"),
        ("HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not HTTP"),
    ],
)
def test_unsupported_protocols_are_closed_with_a_clear_log_line(
    stack: Stack, thrift_client: ThriftClientFactory, rpc: Any, name: str, payload: bytes, log_line: str
) -> None:
    with socket.create_connection(("127.0.0.1", stack.rpc.port)) as sock:
        sock.sendall(payload)
        assert _closed_by_server(sock)
    wait_until(lambda: log_line in stack.rpc.log(), 5, f"the log line about {name}")
    assert thrift_client().Pull(rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).Code == 0


def _ttheader_call(seq_id: int, payload: bytes, framed: bool, int_info: dict[int, str]) -> bytes:
    """A TTHeader request as Kitex lays it out (written here independently of rpc_server.wire.ttheader)."""
    if framed:
        payload = struct.pack(">I", len(payload)) + payload
    info = b"\x00\x00\x10" + struct.pack(">H", len(int_info))  # binary, no transforms, int key/values
    for key, value in int_info.items():
        info += struct.pack(">HH", key, len(value)) + value.encode()
    info += bytes(-len(info) % 4)
    rest = struct.pack(">HHiH", 0x1000, 0, seq_id, len(info) // 4) + info + payload
    return struct.pack(">I", len(rest)) + rest


def _read_whole(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"connection closed after {len(data)} of {size} bytes"
        data += chunk
    return data


@pytest.mark.parametrize("framed", [False, True], ids=["TTHeader", "TTHeaderFramed"])
def test_kitex_ttheader_calls_are_answered_in_kind_and_logged_with_the_header(
    stack: Stack, rpc: Any, chat: str, framed: bool
) -> None:
    a = chat.split(":")[0]
    header = {3: "test.caller", 12: "1500", 2: f"log-{chat}"}  # FromService, RPCTimeout, LogID
    with socket.create_connection(("127.0.0.1", stack.rpc.port), timeout=10) as sock:
        for seq_id in (5, -6):  # two calls on one connection
            call = TCyMemoryBuffer()
            proto = TCyBinaryProtocol(call)
            proto.write_message_begin("Send", TMessageType.CALL, seq_id)
            rpc.IMService.Send_args(req=_send(rpc, chat, f"via TTHeader {seq_id}", a)).write(proto)
            proto.write_message_end()
            sock.sendall(_ttheader_call(seq_id, call.getvalue(), framed, header))
            size = struct.unpack(">I", _read_whole(sock, 4))[0]
            reply_header, payload = ttheader.decode(struct.pack(">I", size) + _read_whole(sock, size))
            assert reply_header.seq_id == seq_id
            if framed:
                assert struct.unpack(">I", payload[:4])[0] == len(payload) - 4
                payload = payload[4:]
            reply = TCyBinaryProtocol(TCyMemoryBuffer(bytes(payload)))
            assert reply.read_message_begin() == ("Send", TMessageType.REPLY, seq_id)
            result = rpc.IMService.Send_result()
            result.read(reply)
            assert (result.success.Code, result.success.Msg) == (0, "success")
    header_values = {"request_id": f"log-{chat}", "from_service": "test.caller", "timeout_ms": 1500}

    def logged() -> list[dict[str, object]]:
        return [line for line in stack.rpc.log_lines() if header_values.items() <= line.items()]

    wait_until(lambda: len(logged()) == 2, 10, "two call log lines with the header's values")


def test_a_client_vanishing_mid_call_harms_no_one(stack: Stack, thrift_client: ThriftClientFactory, rpc: Any) -> None:
    healthy = thrift_client()
    header = b"\x80\x01\x00\x01" + struct.pack(">I", 4) + b"Pull" + struct.pack(">i", 1)
    for cut in (2, 8, len(header)):
        with socket.create_connection(("127.0.0.1", stack.rpc.port)) as sock:
            sock.sendall(header[:cut])
        assert healthy.Pull(rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).Code == 0


def test_a_ttheader_rpc_timeout_is_the_calls_deadline(tmp_path: Path, rpc: Any) -> None:
    """A Kitex caller's RPC timeout (int key 12) bounds the call as a
    TimeoutMs would. The server's own default deadline and Redis cap are a minute, and
    Redis holds every write until the test lets go: only the header's 500 ms
    can end the call, with a 503, while Redis is still held."""
    redis_server = RedisServer(tmp_path / "redis")
    server = RpcServer(
        tmp_path, redis_server.url, RPC_WORKERS="1", RPC_DEFAULT_TIMEOUT_MS="60000", REDIS_TIMEOUT_MS="60000"
    )
    call = TCyMemoryBuffer()
    proto = TCyBinaryProtocol(call)
    proto.write_message_begin("Send", TMessageType.CALL, 7)
    rpc.IMService.Send_args(req=_send(rpc, "a:b", "held", "a")).write(proto)
    proto.write_message_end()
    try:
        redis_server.start()
        server.start()
        redis_server.client().execute_command("CLIENT", "PAUSE", 120_000, "WRITE")
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(_ttheader_call(7, call.getvalue(), False, {12: "500"}))
            try:
                size = struct.unpack(">I", _read_whole(sock, 4))[0]
            except TimeoutError:
                pytest.fail("no answer in 30 s: the TTHeader's RPC timeout did not bound the call")
            _, payload = ttheader.decode(struct.pack(">I", size) + _read_whole(sock, size))
        reply = TCyBinaryProtocol(TCyMemoryBuffer(bytes(payload)))
        assert reply.read_message_begin() == ("Send", TMessageType.REPLY, 7)
        result = rpc.IMService.Send_result()
        result.read(reply)
        assert result.success.Code == 503, result.success
        assert result.success.Msg.endswith(("not stored", "outcome unknown")), result.success
    finally:
        redis_server.client().execute_command("CLIENT", "UNPAUSE")
        server.stop()
        redis_server.stop()
