"""imctl, the command-line client, against the live stack: HTTP and --rpc."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.conftest import Api
from tests.servers import ROOT, HttpServer, Stack, wait_until

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


def run_imctl(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """imctl with exactly these arguments, and these variables added to the environment."""
    return subprocess.run(
        [IMCTL, *args], capture_output=True, text=True, timeout=30, env={**os.environ, "TZ": ZONE, **env}
    )


# --- --rpc without an address ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["--rpc", "pull"], ["--json", "--rpc", "pull"], ["--rpc", "--json", "pull"], ["--rpc=", "pull"]],
    ids=["rpc-first", "after-json", "before-json", "rpc-equals-empty"],
)
def test_rpc_without_an_address_uses_rpc_addr(stack: Stack, api: Api, chat: str, argv: list[str]) -> None:
    """`--rpc` as documented, with no address: the command after it is not taken for one."""
    api.send_ok(chat, "hi", chat.split(":")[0])
    result = run_imctl(*argv, "--chat", chat, RPC_ADDR=f"127.0.0.1:{stack.rpc.port}")
    assert result.returncode == 0, result.stderr
    expected = run_imctl("--url", stack.http.url, *[a for a in argv if a == "--json"], "pull", "--chat", chat)
    assert result.stdout == expected.stdout and "hi" in result.stdout


def test_rpc_with_an_address_still_takes_it(stack: Stack) -> None:
    """The address given wins over RPC_ADDR (which here points at nothing)."""
    from tests.servers import free_port

    nowhere = f"127.0.0.1:{free_port()}"
    for rpc in (["--rpc", f"127.0.0.1:{stack.rpc.port}"], [f"--rpc=127.0.0.1:{stack.rpc.port}"]):
        result = run_imctl(*rpc, "health", RPC_ADDR=nowhere)
        assert result.returncode == 0, result.stderr


# --- AUTH_MODE=header: the gateway's user header ------------------------------------------------


@pytest.fixture(scope="module")
def header_http(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[HttpServer]:
    server = HttpServer(tmp_path_factory.mktemp("header-http"), stack.rpc.port, workers=1, AUTH_MODE="header")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_header_mode_needs_the_user(header_http: HttpServer, chat: str) -> None:
    result = run_imctl("--url", header_http.url, "pull", "--chat", chat)
    assert result.returncode == 1 and "error 401" in result.stderr and "X-User-Id" in result.stderr, result.stderr


def test_header_mode_sends_the_user(header_http: HttpServer, api: Api, chat: str) -> None:
    a, b = chat.split(":")
    sent = run_imctl("--url", header_http.url, "--as", a, "send", "--chat", chat, "--sender", a, "--text", "via gw")
    assert sent.returncode == 0, sent.stderr
    page = run_imctl("--url", header_http.url, "--json", "pull", "--chat", chat, IMCTL_USER=b)  # the variable
    assert page.returncode == 0, page.stderr
    assert [m["text"] for m in json.loads(page.stdout)["messages"]] == ["via gw"]
    chats = run_imctl("--url", header_http.url, "--as", a, "--json", "chats")  # no --user: the caller's own
    assert chats.returncode == 0, chats.stderr
    assert chat in [c["chat"] for c in json.loads(chats.stdout)["chats"]]
    # the server decides with the user sent: another user is refused
    other = run_imctl("--url", header_http.url, "--as", "mallory", "pull", "--chat", chat)
    assert other.returncode == 1 and "error 403" in other.stderr, other.stderr
    # --user-header names the gateway's header; the server here expects X-User-Id
    renamed = run_imctl("--url", header_http.url, "--as", a, "--user-header", "X-Other", "pull", "--chat", chat)
    assert renamed.returncode == 1 and "error 401" in renamed.stderr, renamed.stderr


def test_rpc_sends_the_user_as_caller(stack: Stack, api: Api, chat: str) -> None:
    """Over Thrift, --as is the Caller field: the RPC service checks it as it does for the HTTP tier."""
    a, b = chat.split(":")
    api.send_ok(chat, "hi", a)
    rpc = f"127.0.0.1:{stack.rpc.port}"
    assert run_imctl("--rpc", rpc, "--as", b, "pull", "--chat", chat).returncode == 0
    refused = run_imctl("--rpc", rpc, "--as", "mallory", "pull", "--chat", chat)
    assert refused.returncode == 1 and "error 403" in refused.stderr, refused.stderr
    as_other = run_imctl("--rpc", rpc, "--as", b, "send", "--chat", chat, "--sender", a, "--text", "x")
    assert as_other.returncode == 1 and "error 403" in as_other.stderr, as_other.stderr
    chats = run_imctl("--rpc", rpc, "--as", a, "--json", "chats")  # no --user: the caller's own
    assert chats.returncode == 0, chats.stderr
    assert chat in [c["chat"] for c in json.loads(chats.stdout)["chats"]]
    assert [m["text"] for m in api.pull_all(chat)] == ["hi"]  # nothing stored by the refused send


# --- AUTH_MODE=jwt: the README's development token ---------------------------------------------


def readme_dev_token_lines() -> list[str]:
    """The README's `export …` lines that make a development secret and token."""
    text = (ROOT / "README.md").read_text()
    exports = [line for line in text.splitlines() if line.startswith("export ") and "JWT_SECRET" in line]
    assert len(exports) == 2 and "jwt.encode" in exports[1], f"the README's development-token lines: {exports}"
    return exports


def test_readme_development_token_works(tmp_path: Path, stack: Stack) -> None:
    """Run the README's two lines (with this venv's Python), start a jwt-mode
    HTTP server with the secret they made, and call it with their token."""
    lines = [line.replace(".venv/bin/python", sys.executable) for line in readme_dev_token_lines()]
    script = "set -eu\n" + "\n".join(lines) + '\nprintf "%s\\n%s\\n" "$JWT_SECRET" "$IMCTL_TOKEN"\n'
    made = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    secret, token = made.stdout.split()
    server = HttpServer(tmp_path, stack.rpc.port, workers=1, AUTH_MODE="jwt", JWT_SECRET=secret)
    try:
        server.start()
        refused = run_imctl("--url", server.url, "chats")
        assert refused.returncode == 1 and "error 401" in refused.stderr, refused.stderr
        chat = f"a:jwt-{uuid.uuid4().hex[:10]}"
        sent = run_imctl("--url", server.url, "send", "--chat", chat, "--sender", "a", "--text", "t", IMCTL_TOKEN=token)
        assert sent.returncode == 0, sent.stderr
        chats = run_imctl("--url", server.url, "--json", "chats", IMCTL_TOKEN=token)  # the token's user: a
        assert chats.returncode == 0, chats.stderr
        assert chat in [c["chat"] for c in json.loads(chats.stdout)["chats"]]
    finally:
        server.stop()


@pytest.mark.slow
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
            routes = [line.get("route") for line in http.log_lines()]
            return routes.count("/api/subscribe") >= 3 or tail.poll() is not None

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
