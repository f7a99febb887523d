"""Hostile input on the Thrift port: none of it may crash the server, block
other clients, or grow its memory without bound. Each case is followed by a
normal call that must succeed."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.transport import TCyBufferedTransportFactory

from tests.servers import RpcServer, Stack, wait_until

MESSAGE_TIMEOUT_S = 2  # short, so the slow cases end quickly


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[RpcServer]:
    rpc = RpcServer(tmp_path_factory.mktemp("hostile"), stack.redis.url, RPC_MESSAGE_TIMEOUT_S=str(MESSAGE_TIMEOUT_S))
    rpc.start()
    yield rpc
    rpc.stop()


def _normal_call(server: RpcServer, rpc: Any) -> None:
    client = make_client(
        rpc.IMService,
        "127.0.0.1",
        server.port,
        timeout=2000,
        proto_factory=TCyBinaryProtocolFactory(),
        trans_factory=TCyBufferedTransportFactory(),
    )
    try:
        response = client.Pull(rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1))
        assert response.Code == 0
    finally:
        client.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server closes the connection within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def _call_header(name: bytes = b"Pull") -> bytes:
    return b"\x80\x01\x00\x01" + struct.pack(">i", len(name)) + name + struct.pack(">i", 1)


def _args_with_unknown_field(field_type: int, payload: bytes) -> bytes:
    return _call_header() + bytes([field_type]) + struct.pack(">h", 9) + payload


def _ttheader(info: bytes, payload: bytes, words: int | None = None, length: int | None = None) -> bytes:
    """A Kitex TTHeader message around `payload`, with the info blocks given."""
    info = b"\x00\x00" + info  # binary, no transforms
    info += bytes(-len(info) % 4)
    rest = struct.pack(">HHiH", 0x1000, 0, 1, len(info) // 4 if words is None else words) + info + payload
    return struct.pack(">I", len(rest) if length is None else length) + rest


_PULL = _call_header() + b"\x00"  # Pull with an empty argument struct

HOSTILE = {
    "random bytes": os.urandom(4096),
    "string length 2 GiB": _args_with_unknown_field(11, struct.pack(">i", 2**31 - 1) + b"x" * 100),
    "frame length 2 GiB": struct.pack(">i", 2**31 - 1) + _call_header(),
    "container length 1e9 (list<bool>)": _args_with_unknown_field(15, b"\x02" + struct.pack(">i", 10**9)),
    "container length 1e9 (list<void>)": _args_with_unknown_field(15, b"\x01" + struct.pack(">i", 10**9)),
    "map length 1e9": _args_with_unknown_field(13, b"\x08\x08" + struct.pack(">i", 10**9)),
    "nested 1000 deep": _args_with_unknown_field(12, b"\x0c\x00\x01" * 1000),
    "negative string length": _args_with_unknown_field(11, struct.pack(">i", -5)),
    "method name 1 GiB": b"\x80\x01\x00\x01" + struct.pack(">i", 2**30),
    "TTHeader: random bytes after the magic": b"\x00\x00\x10\x00\x10\x00\x00\x00" + os.urandom(4092),
    "TTHeader: length 2 GiB": _ttheader(b"", _PULL, length=2**31 - 1),
    "TTHeader: length shorter than its header": _ttheader(b"", _PULL, length=12),
    "TTHeader: header size past the message": _ttheader(b"", _PULL, words=0xFFFF),
    "TTHeader: unknown info id": _ttheader(b"\x20\x00\x01", _PULL),
    "TTHeader: info value past the header": _ttheader(b"\x10\x00\x01\x00\x0c\xff\xff", _PULL),
    "TTHeader: 65535 string pairs announced": _ttheader(b"\x01\xff\xff", _PULL),
    "TTHeader: compact payload": _ttheader(b"", b"\x82\x21\x01\x04Pull\x00"),
    "TTHeader: garbage payload": _ttheader(b"", os.urandom(64)),
    "TTHeader: string length 2 GiB in the payload": _ttheader(b"", _args_with_unknown_field(11, b"\x7f\xff\xff\xff")),
    "TTHeaderFramed: frame length 2 GiB": _ttheader(b"", struct.pack(">i", 2**31 - 1) + _PULL),
    "TTHeaderFramed: frame shorter than its message": _ttheader(b"", struct.pack(">i", 4) + _PULL),
    "TTHeader: two messages in one": _ttheader(b"", _PULL + _PULL),
}


@pytest.mark.parametrize("payload", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_bytes_close_only_their_connection(server: RpcServer, rpc: Any, payload: bytes) -> None:
    rss_before = _rss_kib(server.pid)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(payload)
        assert _closed_by_server(sock, within=MESSAGE_TIMEOUT_S + 3)
    _normal_call(server, rpc)
    assert server.alive()
    assert _rss_kib(server.pid) - rss_before < 20_000  # KiB: nothing near the 2 GiB asked for


def test_a_malformed_ttheader_is_closed_with_a_log_line_saying_why(server: RpcServer, rpc: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_ttheader(b"\x20\x00\x01", _PULL))
        assert _closed_by_server(sock, within=MESSAGE_TIMEOUT_S + 3)
    wait_until(lambda: "TTHeader: unknown info id 0x20" in server.log(), 10, "the log line")
    _normal_call(server, rpc)


def test_a_truncated_message_blocks_no_one_and_is_dropped_at_the_deadline(server: RpcServer, rpc: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_call_header() + b"\x0c\x00\x02\x0b\x00\x01")  # stops inside the request struct
        _normal_call(server, rpc)  # others are served meanwhile
        assert _closed_by_server(sock, within=MESSAGE_TIMEOUT_S + 3)
    _normal_call(server, rpc)


def test_slow_loris_is_cut_off_at_the_message_deadline(server: RpcServer, rpc: Any) -> None:
    """One byte a second: the connection is closed once the message deadline
    passes, however patiently the bytes keep coming."""
    message = _call_header() + b"\x0c\x00\x02\x0b\x00\x01" + struct.pack(">i", 3) + b"a:b" + b"\x00\x00"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        closed = False
        for byte in message:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            _normal_call(server, rpc)
            if _closed_by_server(sock, within=1.0):
                closed = True
                break
        assert closed, "the server waited for the whole slow message"  # (about 30 s at this pace)
    _normal_call(server, rpc)


def test_an_idle_pooled_connection_outlives_the_message_deadline(server: RpcServer, rpc: Any) -> None:
    """The idle timeout between calls is long (pooled clients idle for
    minutes); only a message that has begun is on the short clock."""
    client = make_client(rpc.IMService, "127.0.0.1", server.port, timeout=5000)
    try:
        assert client.Pull(rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).Code == 0
        time.sleep(MESSAGE_TIMEOUT_S + 1)  # idle for longer than a message may take
        assert client.Pull(rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).Code == 0
    finally:
        client.close()


def test_2000_idle_connections(server: RpcServer, rpc: Any) -> None:
    rss_before = _rss_kib(server.pid)
    sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2000)]
    try:
        wait_until(lambda: _metric(server, "rpc_connections_open") >= 2000, 30, "2000 open connections")
        _normal_call(server, rpc)
        grown = _rss_kib(server.pid) - rss_before
        print(f"\n2000 idle connections: RSS grew by {grown} KiB ({grown / 2000:.1f} KiB each)")
        assert grown < 200_000
    finally:
        for sock in sockets:
            sock.close()
    wait_until(lambda: _metric(server, "rpc_connections_open") < 10, 30, "the connections to close")
    _normal_call(server, rpc)


def _metric(server: RpcServer, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")
