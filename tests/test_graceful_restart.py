"""A stopping HTTP worker keeps no connection alive, and never refuses a
stream in a way a browser cannot recover from: raw sockets, as curl (or a
browser's connection pool) would use them, against a real gunicorn stopped
(TERM) or restarting its workers (HUP).

A browser's EventSource reconnects over a kept-alive connection when its
stream ends; if that reaches the stopping worker and gets a non-200, the
page never receives another message. (tests/test_browser_sse.py does the
same with a real browser.)"""

from __future__ import annotations

import json
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.servers import HttpServer, Stack, free_port, scrape_metrics, wait_until


def _chat() -> str:
    tag = uuid.uuid4().hex[:8]
    return f"g-{tag}:r-{tag}"


class RawConnection:
    """One client TCP connection, reading HTTP/1.1 responses by hand."""

    def __init__(self, port: int, timeout_s: float = 30) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def get(self, path: str, *headers: str) -> None:
        self.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n{''.join(h + chr(13) + chr(10) for h in headers)}\r\n".encode())

    def head(self) -> tuple[int, dict[str, str]]:
        status = self.file.readline()
        assert status.startswith(b"HTTP/1.1 "), f"no response, got {status!r}"
        headers = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status.split()[1]), headers

    def chunks(self) -> Iterator[bytes]:
        """A chunked body, chunk by chunk, until its last (empty) chunk."""
        while True:
            size = int(self.file.readline().strip(), 16)
            chunk = self.file.read(size + 2)[:-2]
            if not size:
                return
            yield chunk

    def body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding") == "chunked":
            return b"".join(self.chunks())
        return self.file.read(int(headers.get("content-length", "0")))

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status, headers = self.head()
        return status, headers, self.body(headers)

    def closed_by_server(self) -> bool:
        """True once the server has closed this connection (EOF or reset);
        raises socket.timeout if it keeps it open for the socket's timeout."""
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True


@pytest.fixture
def server(stack: Stack, tmp_path: Path) -> Iterator[HttpServer]:
    """One worker; keep-alive and grace long enough that nothing here ends by
    a timeout: a connection closed at once is closed on purpose."""
    http = HttpServer(tmp_path, stack.rpc.port, workers=1, HTTP_KEEPALIVE_S="60", HTTP_GRACEFUL_TIMEOUT_S="60")
    http.start()
    try:
        yield http
    finally:
        http.stop()


def _stop_workers(server: HttpServer, how: str) -> None:
    """HUP: a graceful restart (new workers, the old ones TERMed); TERM: a stop."""
    assert server.popen is not None
    server.popen.send_signal(signal.SIGHUP if how == "HUP" else signal.SIGTERM)


def _refusal(body: bytes) -> dict[str, str]:
    """The fields of a refusal stream: `retry:` and an `unavailable` event."""
    fields = dict(line.split(": ", 1) for line in body.decode().splitlines() if line and not line.startswith(":"))
    assert set(fields) == {"retry", "event", "data"} and fields["event"] == "unavailable", body
    assert int(fields["retry"]) > 0
    return fields


@pytest.mark.parametrize("how", ["HUP", "TERM"])
def test_a_stream_ended_by_a_stopping_worker_takes_its_connection_with_it(server: HttpServer, how: str) -> None:
    """The issue's reproduction: a second request on the connection of a
    stream that a stopping worker ended got 503 "too many streams". Now the
    connection is closed after the stream; a request that still gets through
    is never answered with a non-200 status."""
    conn = RawConnection(server.port)
    try:
        conn.get(f"/api/subscribe?chat={_chat()}", "Accept: text/event-stream")
        status, headers = conn.head()
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        stream = conn.chunks()
        assert next(stream).startswith(b": stream of")
        _stop_workers(server, how)
        assert [chunk for chunk in stream if b"id: " in chunk] == []  # the stream ends, cleanly
        try:
            conn.get(f"/api/subscribe?chat={_chat()}", "Accept: text/event-stream")  # EventSource's reconnect
            status, headers, body = conn.response()
        except (ConnectionError, AssertionError):  # closed before (or instead of) an answer: a browser reconnects
            return
        assert status == 200, f"{status} {body!r}: an EventSource would never reconnect"
        _refusal(body)
    finally:
        conn.close()


@pytest.mark.parametrize("how", ["HUP", "TERM"])
def test_a_stopping_worker_closes_the_connection_after_a_stream(server: HttpServer, how: str) -> None:
    conn = RawConnection(server.port)
    try:
        conn.get(f"/api/subscribe?chat={_chat()}")
        assert conn.head()[0] == 200
        stream = conn.chunks()
        next(stream)
        _stop_workers(server, how)
        list(stream)
        assert conn.closed_by_server()  # (socket.timeout after 30 s if kept alive)
    finally:
        conn.close()


def test_a_response_in_flight_when_the_worker_stops_says_connection_close(server: HttpServer, stack: Stack) -> None:
    """A long-poll ends at once when its worker stops; its answer closes the connection."""
    conn = RawConnection(server.port)
    try:
        conn.get(f"/api/pull?chat={_chat()}&wait=25")
        wait_until(lambda: _waiting_pulls(stack) >= 1, 15, "the long-poll to be waiting")
        _stop_workers(server, "HUP")
        status, headers, body = conn.response()
        assert status == 200 and json.loads(body)["messages"] == []
        assert headers.get("connection") == "close", headers
        assert conn.closed_by_server()
    finally:
        conn.close()


def _waiting_pulls(stack: Stack) -> float:
    """Long-polls waiting in the RPC server."""
    return scrape_metrics(f"http://127.0.0.1:{stack.rpc.metrics_port}/metrics")["rpc_pulls_waiting"]


def test_an_idle_kept_alive_connection_is_closed_when_the_worker_stops(server: HttpServer) -> None:
    """Not kept for keep-alive's 60 s: the stopping worker would take no
    request on it (and the graceful stop would wait for it)."""
    conn = RawConnection(server.port)
    try:
        conn.get("/ping")
        status, headers, _ = conn.response()
        assert status == 200 and headers.get("connection") != "close"
        _stop_workers(server, "HUP")
        assert conn.closed_by_server()  # (socket.timeout after 30 s if kept alive)
    finally:
        conn.close()


def test_a_subscription_reaching_a_stopping_worker_gets_a_200_that_says_reconnect(
    server: HttpServer, stack: Stack
) -> None:
    """Its head arrives whole only once the worker is stopping (its last
    byte is held back until a long-poll on the same worker has ended, which
    it does when the worker stops)."""
    chat = _chat()
    late = RawConnection(server.port)
    poll = RawConnection(server.port)
    try:
        late.send(f"GET /api/subscribe?chat={chat} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n".encode())
        poll.get(f"/api/pull?chat={chat}&wait=25")
        wait_until(lambda: _waiting_pulls(stack) >= 1, 15, "the long-poll to be waiting")
        _stop_workers(server, "HUP")
        assert poll.response()[0] == 200  # the worker is stopping
        late.send(b"\r\n")
        status, headers, body = late.response()
        assert status == 200, f"{status} {body!r}: an EventSource would never reconnect"
        assert headers["content-type"].startswith("text/event-stream") and headers.get("connection") == "close"
        assert "stopping" in json.loads(_refusal(body)["data"])["msg"]
        assert late.closed_by_server()
    finally:
        late.close()
        poll.close()


def test_a_subscription_while_the_rpc_server_is_down_is_a_200_that_says_why(tmp_path: Path) -> None:
    """A 503 before the stream would end an EventSource for good; the reason is the real one."""
    http = HttpServer(tmp_path, free_port(), workers=1)  # nothing listens on its RPC port
    http.start()
    try:
        r = requests.get(http.url + "/api/subscribe", params={"chat": _chat()}, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream"), r.text
        error = json.loads(_refusal(r.content)["data"])
        assert error["code"] == 503 and "cannot connect" in error["msg"], error
        pull = requests.get(http.url + "/api/pull", params={"chat": _chat()}, timeout=10)
        assert pull.status_code == 503 and pull.json()["msg"] == error["msg"]  # the same reason, as JSON
    finally:
        http.stop()
