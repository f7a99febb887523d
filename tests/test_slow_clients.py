"""Slow HTTP clients against a real gunicorn: a request head or body sent a
byte at a time is dropped at its deadline, however regularly the bytes come,
and a worker with hundreds of such clients connected still serves others.

Every wait is on a condition (the server closed the socket, a request was
answered) with a generous deadline; how long it took is printed, never
asserted."""

from __future__ import annotations

import selectors
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.servers import HttpServer, Stack, wait_until

_HEAD = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Padding: "  # then padding, a byte at a time, never ending


def _body_head(length: int) -> bytes:
    """A send's head, whole; its body of `length` bytes then comes a byte at a time."""
    return (
        f"POST /api/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


class Tricklers:
    """`count` clients, each sending `head` at once, then one byte every
    `interval_s` for ever, all from one thread. Records which connections the
    server closed and what it answered on them."""

    def __init__(self, port: int, count: int, head: bytes, interval_s: float = 0.8) -> None:
        self.port, self.count, self.head, self.interval_s = port, count, head, interval_s
        self.answers: dict[int, bytes] = {}
        self.closed_after: dict[int, float] = {}  # client -> seconds from its connect to the server's close
        self.bytes_sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._socks: list[socket.socket] = []
        self._connected: list[float] = []

    def __enter__(self) -> Tricklers:
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            sock.sendall(self.head)
            sock.setblocking(False)
            self._socks.append(sock)
            self._connected.append(time.monotonic())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self._socks:
            sock.close()

    @property
    def open(self) -> int:
        return self.count - len(self.closed_after)

    def _closed(self, i: int, selector: selectors.BaseSelector) -> None:
        self.closed_after[i] = time.monotonic() - self._connected[i]
        selector.unregister(self._socks[i])

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for i, sock in enumerate(self._socks):
            selector.register(sock, selectors.EVENT_READ, i)
        next_byte = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            if time.monotonic() >= next_byte:
                next_byte += self.interval_s
                for i, sock in enumerate(self._socks):
                    if i not in self.closed_after:
                        try:
                            self.bytes_sent += sock.send(b"a")
                        except BlockingIOError:
                            pass
                        except OSError:
                            self._closed(i, selector)
            for key, _ in selector.select(timeout=0.05):
                i = key.data
                try:
                    data = self._socks[i].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self.answers[i] = self.answers.get(i, b"") + data
                else:
                    self._closed(i, selector)


@pytest.fixture
def slow_server(stack: Stack, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[HttpServer]:
    """An HTTP server of this test's own, one worker, keep-alive 2 s (plus the parameter's settings)."""
    env = {"HTTP_KEEPALIVE_S": "2", **getattr(request, "param", {})}
    server = HttpServer(tmp_path, stack.rpc.port, workers=1, **env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _wait_all_closed(clients: Tricklers, deadline_s: float, what: str) -> None:
    started = time.monotonic()
    try:
        wait_until(lambda: clients.open == 0, deadline_s, f"the server to close every {what}")
    except TimeoutError:
        raise AssertionError(
            f"{clients.open} of {clients.count} ({what}) still connected after {deadline_s} s "
            f"({clients.bytes_sent} bytes trickled in all)"
        ) from None
    times = sorted(clients.closed_after.values())
    print(
        f"{clients.count} ({what}) dropped {time.monotonic() - started:.1f} s after the wait began; "
        f"each connected {times[0]:.1f}-{times[-1]:.1f} s"
    )


def test_a_request_head_sent_a_byte_at_a_time_is_dropped(slow_server: HttpServer) -> None:
    """Keep-alive 2 s bounds each read, not the request: a byte every 0.8 s
    kept a connection for ever. Now the head has HTTP_HEADER_TIMEOUT_S (10 s)."""
    with Tricklers(slow_server.port, 1, _HEAD) as client:
        _wait_all_closed(client, 40, "client trickling a head")
        assert client.answers.get(0, b"") == b""  # closed without an answer


@pytest.mark.slow
def test_a_body_sent_a_byte_at_a_time_is_dropped_and_nothing_is_stored(slow_server: HttpServer, stack: Stack) -> None:
    chat = f"slow-{uuid.uuid4().hex[:8]}:body"
    body_start = f'{{"chat": "{chat}", "sender": "body", "text": "'.encode()
    with Tricklers(slow_server.port, 1, _body_head(1000) + body_start) as client:
        _wait_all_closed(client, 40, "client trickling a body")
        answer = client.answers.get(0, b"")
    assert answer.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in answer, answer[:300]
    print(answer.decode(errors="replace").splitlines()[-1])
    pulled = requests.get(stack.http.url + "/api/pull", params={"chat": chat}, timeout=10)
    assert pulled.status_code == 200 and pulled.json()["messages"] == [], pulled.text


def test_a_request_head_sent_in_pieces_within_its_deadline_is_served(slow_server: HttpServer) -> None:
    """Each piece well within keep-alive, the whole head (2.5 s) well within
    its deadline (10 s): served as before."""
    pieces = [b"GET /pi", b"ng HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: b\r\n", b"\r\n"]
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=10) as sock:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.5)  # pacing the client, not waiting for the server
        response = b""
        while b"pong" not in response:
            chunk = sock.recv(4096)
            assert chunk, f"closed before answering: {response!r}"
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 "), response


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["head", "body"])
def test_a_normal_client_is_served_while_500_slow_clients_are_connected(slow_server: HttpServer, kind: str) -> None:
    head = _HEAD if kind == "head" else _body_head(2000) + b'{"chat": "a:b", "sender": "a", "text": "'
    with Tricklers(slow_server.port, 500, head) as clients:
        wait_until(lambda: clients.bytes_sent >= 500, 30, "every slow client to be trickling")
        session = requests.Session()
        assert session.get(slow_server.url + "/ping", timeout=30).status_code == 200
        r = session.post(slow_server.url + "/api/send", json={"chat": "a:b", "sender": "a", "text": "hi"}, timeout=30)
        assert r.status_code == 200, r.text
        still_open = clients.open
        session.close()
        assert still_open > 0, "served only once the slow clients were gone: the test proves nothing"
        print(f"a normal client served with {still_open} clients trickling a {kind} connected")
        _wait_all_closed(clients, 90, f"client trickling a {kind}")


@pytest.mark.slow
@pytest.mark.parametrize("slow_server", [{"HTTP_WORKER_CONNECTIONS": "20"}], indirect=True)
def test_a_worker_filled_with_slow_clients_serves_again(slow_server: HttpServer) -> None:
    """20 trickling heads take all of a worker's 20 connections: a new client
    waits in the listen queue until they are dropped, then is served."""
    with Tricklers(slow_server.port, 20, _HEAD) as clients:
        wait_until(lambda: clients.bytes_sent >= 20, 30, "every slow client to be trickling")
        started = time.monotonic()
        r = requests.get(slow_server.url + "/ping", timeout=(10, 60))
        assert r.status_code == 200
        print(f"served after {time.monotonic() - started:.1f} s; {clients.open} slow clients still open")
