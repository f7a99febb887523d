"""imctl, the command-line client, against the live stack: HTTP and --rpc."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.conftest import Api
from tests.servers import HttpServer, Stack, wait_until

IMCTL = str(Path(sys.executable).with_name("imctl"))
ZONE = "Asia/Singapore"  # not the machine's zone (UTC here): proves local time is used


def imctl(stack: Stack, *args: str, rpc: bool = False) -> subprocess.CompletedProcess[str]:
    transport = ["--rpc", f"127.0.0.1:{stack.rpc.port}"] if rpc else ["--url", stack.http.url]
    return subprocess.run(
        [IMCTL, *transport, *args], capture_output=True, text=True, timeout=30, env={**os.environ, "TZ": ZONE}
    )


def _shown(send_time: int) -> str:
    moment = datetime.fromtimestamp(send_time / 1e6, ZoneInfo(ZONE))
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} +0800"


@pytest.mark.parametrize("rpc", [False, True], ids=["http", "rpc"])
def test_send_then_pull_shows_local_times(stack: Stack, api: Api, chat: str, rpc: bool) -> None:
    a, b = chat.split(":")
    sent = imctl(stack, "send", "--chat", chat, "--sender", a, "--text", "héllo from the CLI", rpc=rpc)
    assert sent.returncode == 0, sent.stderr
    [stored] = api.pull_all(chat)
    assert sent.stdout.strip() == f"sent at {_shown(stored['send_time'])} (send_time {stored['send_time']})"
    api.send_ok(chat, "second", b)
    page = imctl(stack, "pull", "--chat", chat, "--reverse", "--limit", "20", rpc=rpc)
    assert page.returncode == 0, page.stderr
    times = [m["send_time"] for m in api.pull_all(chat)]
    assert page.stdout.splitlines() == [
        f"{_shown(times[1])}  {b}: second",
        f"{_shown(times[0])}  {a}: héllo from the CLI",
    ]


@pytest.mark.parametrize("rpc", [False, True], ids=["http", "rpc"])
def test_json_output_is_the_api_page(stack: Stack, api: Api, chat: str, rpc: bool) -> None:
    a = chat.split(":")[0]
    for i in range(3):
        api.send_ok(chat, f"m{i}", a)
    result = imctl(stack, "--json", "pull", "--chat", chat, "--limit", "2", rpc=rpc)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == api.pull_ok(chat, limit=2)
    more = imctl(stack, "pull", "--chat", chat, "--limit", "2", rpc=rpc)
    next_cursor = api.pull_ok(chat, limit=2)["next_cursor"]
    assert more.stdout.splitlines()[-1] == f"-- more: --cursor {next_cursor}"


@pytest.mark.parametrize("rpc", [False, True], ids=["http", "rpc"])
def test_errors_go_to_stderr_with_a_non_zero_exit(stack: Stack, chat: str, rpc: bool) -> None:
    result = imctl(stack, "send", "--chat", chat, "--sender", "mallory", "--text", "x", rpc=rpc)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error 400" in result.stderr and "not a member" in result.stderr


def test_unreachable_server_is_reported(stack: Stack) -> None:
    from tests.servers import free_port

    result = subprocess.run(
        [IMCTL, "--url", f"http://127.0.0.1:{free_port()}", "pull", "--chat", "a:b"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "error 503" in result.stderr and "cannot reach" in result.stderr


@pytest.mark.parametrize("rpc", [False, True], ids=["http", "rpc"])
def test_tail_prints_the_last_messages_then_new_ones(stack: Stack, api: Api, chat: str, rpc: bool) -> None:
    a, b = chat.split(":")
    for i in range(3):
        api.send_ok(chat, f"old {i}", a)
    transport = ["--rpc", f"127.0.0.1:{stack.rpc.port}"] if rpc else ["--url", stack.http.url]
    argv = [IMCTL, *transport, "tail", "--chat", chat, "--last", "2", "--wait", "10", "--count", "2"]
    tail = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = _read_lines(tail, 2, timeout=15)  # the last two old messages come first
        sender = threading.Thread(target=lambda: [api.send_ok(chat, f"new {i}", b) for i in range(2)])
        sender.start()
        rest, err = tail.communicate(timeout=30)  # exits by itself after --count 2 new messages
        sender.join()
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    lines = (first + rest).decode().splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [f"{a}: old 1", f"{a}: old 2", f"{b}: new 0", f"{b}: new 1"]


def _read_lines(process: subprocess.Popen[bytes], count: int, timeout: float) -> bytes:
    """Read from the process's stdout until `count` lines arrived, or fail at the deadline."""
    assert process.stdout is not None
    data, deadline = b"", time.monotonic() + timeout
    while data.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {data!r} printed within {timeout}s"
        if select.select([process.stdout], [], [], remaining)[0]:
            chunk = os.read(process.stdout.fileno(), 4096)
            assert chunk, f"the process ended after printing {data!r}"
            data += chunk
    return data


@pytest.mark.parametrize("rpc", [False, True], ids=["http", "rpc"])
def test_health_is_a_probe(stack: Stack, rpc: bool) -> None:
    result = imctl(stack, "health", rpc=rpc)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ready:") and "storage ok" in result.stdout


def test_health_fails_when_nothing_answers() -> None:
    from tests.servers import free_port

    result = subprocess.run([IMCTL, "--rpc", f"127.0.0.1:{free_port()}", "health"], capture_output=True, text=True)
    assert result.returncode == 1 and "error 503" in result.stderr


def test_tail_waits_out_a_refused_subscription_then_follows(stack: Stack, api: Api, chat: str, tmp_path: Path) -> None:
    """A subscription refused for now (here: the worker's only stream is
    taken) is a 200 stream with an `unavailable` event, not a message:
    imctl tail waits and reconnects until it is served."""
    http = HttpServer(tmp_path, stack.rpc.port, workers=1, SSE_MAX_STREAMS="1")
    http.start()
    tail = None
    try:
        held = requests.get(http.url + "/api/subscribe", params={"chat": chat}, stream=True, timeout=30)
        assert held.status_code == 200
        argv = [IMCTL, "--url", http.url, "tail", "--chat", chat, "--last", "1", "--wait", "10", "--count", "1"]
        tail = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def refused_twice() -> bool:
            return http.log().count('"route": "/api/subscribe"') >= 3 or tail.poll() is not None

        wait_until(refused_twice, 30, "imctl to be refused twice (the held stream, then 2 refusals)")
        assert tail.poll() is None, tail.communicate(timeout=5)  # it did not give up
        held.close()
        api.send_ok(chat, "after the refusals", chat.split(":")[0])
        out, err = tail.communicate(timeout=60)  # exits by itself after --count 1
        assert tail.returncode == 0, err
        assert out.decode().split("  ", 1)[1].strip() == f"{chat.split(':')[0]}: after the refusals"
    finally:
        if tail is not None:
            tail.kill()
        http.stop()
