"""A real browser's EventSource keeps receiving across restarts of the HTTP
server: Debian's chromium, driven by Playwright (the PyPI package) with the
system browser, no browser download.

A page served from another origin (a tiny static server on another port)
subscribes cross-origin (SSE_ALLOWED_ORIGINS) and records every message it
receives. Messages are sent through the API (the session's own HTTP server,
up throughout) during and after each of: a graceful restart of the workers
(HUP to gunicorn's master), a full stop and start of the HTTP server on the
same port, and a kill -9 of the worker holding the stream. The page must
have received every message exactly once, in order, and must have
reconnected at each event (else the test proved nothing)."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import HttpServer, Stack, free_port, wait_until

pytestmark = pytest.mark.fault  # restarts, stops and kills the HTTP server under the page

_PAGE = b"""<!doctype html>
<title>subscriber</title>
<script>
  const params = new URLSearchParams(location.search);
  window.received = [];
  window.events = [];
  const source = new EventSource(params.get("stream"));
  source.onmessage = (e) => window.received.push({id: e.lastEventId, message: JSON.parse(e.data)});
  source.onopen = () => window.events.push("open");
  source.onerror = () => window.events.push("error " + source.readyState);
  source.addEventListener("unavailable", (e) => window.events.push("unavailable " + e.data));
</script>
"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_PAGE)))
        self.end_headers()
        self.wfile.write(_PAGE)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def page_origin() -> Iterator[str]:
    """A static server for the page, on a port (so an origin) of its own."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CHROMIUM") or shutil.which("chromium")
    assert executable, "needs Debian's chromium (scripts/test.sh installs it), or CHROMIUM=/path/to/chrome"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            browser.close()


class Sender:
    """Sends numbered messages through the API, in the background or at once;
    `sent` holds their send_times, in order (one sender: they increase)."""

    def __init__(self, url: str, chat: str) -> None:
        self.url, self.chat = url, chat
        self.sent: list[int] = []
        self.texts: list[str] = []
        self._session = requests.Session()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, count: int = 1) -> None:
        for _ in range(count):
            text = f"message {len(self.sent)}"
            body = {"chat": self.chat, "text": text, "sender": self.chat.split(":")[0]}
            r = self._session.post(self.url + "/api/send", json=body, timeout=10)
            assert r.status_code == 200, r.text
            self.sent.append(r.json()["send_time"])
            self.texts.append(text)

    def __enter__(self) -> Sender:
        """Sends a message every 50 ms until the block ends."""
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(0.05):
                self.send()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(15)


def _worker_pids(master: int) -> set[int]:
    with open(f"/proc/{master}/task/{master}/children") as f:
        return {int(pid) for pid in f.read().split()}


def _holder_of_the_connection(port: int, pids: set[int]) -> int | None:
    """The process, among `pids`, holding the one established TCP connection
    on local port `port` (None unless there is exactly one)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                    inodes.add(fields[9])
    if len(inodes) != 1:
        return None
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    return None


def test_a_browser_keeps_receiving_across_restarts_kills_and_stops(
    stack: Stack, tmp_path: Path, page_origin: str, browser: Any
) -> None:
    port = free_port()
    env = {"SSE_ALLOWED_ORIGINS": page_origin}

    def http_server() -> HttpServer:
        return HttpServer(tmp_path, stack.rpc.port, port=port, workers=2, **env)

    target = http_server()
    target.start()
    tag = uuid.uuid4().hex[:8]
    chat = f"page-{tag}:peer-{tag}"
    sender = Sender(stack.http.url, chat)  # another HTTP server: up throughout
    page = browser.new_page()
    try:
        sender.send(3)  # the backlog
        page.goto(f"{page_origin}/?stream={target.url}/api/subscribe?chat={chat}")

        def opens() -> int:
            return sum(1 for e in page.evaluate("window.events") if e == "open")

        def receives_all(what: str) -> None:
            def exact() -> bool:
                return len(page.evaluate("window.received")) >= len(sender.sent)

            with contextlib.suppress(TimeoutError):  # the assertion below says what is missing
                wait_until(exact, 60, f"the page to receive every message {what}")
            received = page.evaluate("window.received")
            ids = [int(r["id"]) for r in received]
            assert ids == sender.sent, (
                f"{what}: the page received {len(ids)} messages, {len(set(ids))} distinct, "
                f"for {len(sender.sent)} sent; missing {sorted(set(sender.sent) - set(ids))[:5]}, "
                f"events {page.evaluate('window.events')}; server log:\n{target.log()[-2000:]}"
            )
            assert [r["message"]["text"] for r in received] == sender.texts

        def reconnected_since(before: int, what: str) -> None:
            try:
                wait_until(lambda: opens() > before, 60, f"the page to reconnect after {what}")
            except TimeoutError:
                state = page.evaluate("[window.events, source.readyState]")
                raise AssertionError(f"no reconnect after {what}: page events, readyState {state}") from None

        wait_until(lambda: opens() == 1, 30, "the page's stream to open")
        receives_all("before anything happens")

        # (a) a graceful restart of the workers: HUP to gunicorn's master
        before, old_workers = opens(), _worker_pids(target.pid)
        with sender:
            assert target.popen is not None
            target.popen.send_signal(signal.SIGHUP)
            wait_until(lambda: not (old_workers & _worker_pids(target.pid)), 60, "the old workers to exit")
            wait_until(lambda: len(_worker_pids(target.pid)) == 2, 60, "two new workers")
            reconnected_since(before, "the graceful restart")
        sender.send(3)
        receives_all("across a graceful restart (HUP)")

        # (b) a full stop and start of the HTTP server on the same port
        before = opens()
        with sender:
            target.stop(signal.SIGTERM, timeout=30)
            assert target.popen is not None and target.popen.returncode == 0, target.log()[-2000:]
            errors = page.evaluate("window.events.length")

            def failed_to_connect() -> bool:  # the stream's end, then at least one refused connect
                return sum(e.startswith("error") for e in page.evaluate("window.events")[errors - 1 :]) >= 2

            wait_until(failed_to_connect, 30, "the page to try to reconnect while nothing listens")
            target = http_server()
            target.start()
            reconnected_since(before, "the stop and start")
        sender.send(3)
        receives_all("across a stop and start of the server")

        # (c) a kill -9 of the worker holding the stream
        before = opens()

        def holder() -> int | None:
            return _holder_of_the_connection(port, _worker_pids(target.pid))

        wait_until(lambda: holder() is not None, 30, "a worker to hold the page's stream, its one connection")
        victim = holder()
        assert victim is not None
        with sender:
            os.kill(victim, signal.SIGKILL)
            reconnected_since(before, "the kill -9 of its worker")
        sender.send(3)
        receives_all("across a kill -9 of the worker")
        print(
            f"{len(sender.sent)} messages received once each, in order, across 3 events; "
            f"page events: {page.evaluate('window.events')}"
        )
    finally:
        page.close()
        target.stop()
