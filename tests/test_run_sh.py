"""scripts/run.sh, driven for real: Redis, the RPC server and gunicorn on free
ports, with a Redis folder and a temp directory (TMPDIR) of the test's own.

run.sh runs in a session of its own, so every process it starts (whatever its
process group) carries that session id: the test finds them in /proc, checks
that none is left, and kills any that are when a test fails. The venv must be
in place (scripts/test.sh sets it up): run.sh is given this interpreter's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.servers import ROOT, free_port, wait_until

RUN_SH = ROOT / "scripts" / "run.sh"
READY = "HTTP API on http://localhost:{port}"
# Generous: the machine is shared, and a start imports a lot.
START_S = 120.0
EXIT_S = 90.0

# Settings of the caller's environment that would change what run.sh starts.
_UNSET = (
    "REDIS_URL",
    "REDIS_CLUSTER_NODES",
    "RPC_ADDR",
    "RPC_DNS",
    "RPC_ETCD",
    "RPC_HOST",
    "RPC_WORKERS",
    "ETCD_ENDPOINTS",
    "AUTH_MODE",
    "JWT_SECRET",
    "JWT_PUBLIC_KEY_FILE",
    "PROMETHEUS_MULTIPROC_DIR",
    "HTTP_HOST",
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes in /proc (Linux)")


def session_processes(sid: int) -> dict[int, str]:
    """{pid: command line} of the live (not zombie) processes of session `sid`."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(session) == sid and state != "Z":
            found[int(entry)] = cmdline.strip()
    return found


class RunSh:
    """One scripts/run.sh in a session of its own, its output in a file."""

    def __init__(self, directory: Path, ports: dict[str, int], **env: str) -> None:
        self.directory = directory
        self.ports = ports
        self.tmp = directory / "tmp"  # TMPDIR: what run.sh and the servers put in "the" temp directory
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if k not in _UNSET}
        self.env.update(
            VENV=sys.prefix,
            TMPDIR=str(self.tmp),
            REDIS_DIR=str(directory / "redis"),
            HTTP_PORT=str(ports["HTTP_PORT"]),
            RPC_PORT=str(ports["RPC_PORT"]),
            RPC_METRICS_PORT=str(ports["RPC_METRICS_PORT"]),
            REDIS_PORT=str(ports["REDIS_PORT"]),
            HTTP_WORKERS="1",
            LOG_REQUESTS="0",
        )
        self.env.update(env)
        self.log_path = directory / f"run-{time.monotonic_ns()}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> RunSh:
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                ["bash", str(RUN_SH)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=_as_from_a_terminal,
            )
        return self

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self.popen is not None, "not started"
        return self.popen

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def last_line(self) -> str:
        lines = self.output().strip().splitlines()
        return lines[-1] if lines else ""

    def wait_ready(self) -> None:
        ready = READY.format(port=self.ports["HTTP_PORT"])
        try:
            wait_until(lambda: ready in self.output() or self.proc.poll() is not None, START_S, "run.sh")
        except TimeoutError:
            pytest.fail(f"run.sh printed no ready line in {START_S}s; its output:\n{self.output()[-4000:]}")
        if ready not in self.output():
            pytest.fail(f"run.sh exited ({self.proc.returncode}) before it was ready:\n{self.output()[-4000:]}")

    def wait_exit(self) -> int:
        try:
            return self.proc.wait(EXIT_S)
        except subprocess.TimeoutExpired:
            left = session_processes(self.pid)
            pytest.fail(
                f"run.sh still running {EXIT_S}s on; its processes: {left}\nits output:\n{self.output()[-4000:]}"
            )

    def kill_all(self) -> None:
        """Whatever happened: no process of this run.sh outlives the test."""
        for pid in session_processes(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def assert_cleaned_up(self) -> None:
        left = session_processes(self.pid)
        assert not left, f"processes left behind: {left}\nrun.sh output:\n{self.output()[-4000:]}"
        assert not list(self.tmp.iterdir()), f"left in the temp directory: {list(self.tmp.iterdir())}"
        redis_dir = self.directory / "redis"
        if redis_dir.exists():
            assert not list(redis_dir.glob("*.pid")), f"pid files left: {list(redis_dir.glob('*.pid'))}"


def pick_ports() -> dict[str, int]:
    chosen: set[int] = set()
    while len(chosen) < 4:
        chosen.add(free_port())
    return dict(zip(("HTTP_PORT", "RPC_PORT", "RPC_METRICS_PORT", "REDIS_PORT"), sorted(chosen), strict=True))


@pytest.fixture
def ports() -> dict[str, int]:
    return pick_ports()


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[list[RunSh]]:
    """Every RunSh a test starts; all killed (by session) at the end."""
    started: list[RunSh] = []
    yield started
    for run in started:
        run.kill_all()


def _as_from_a_terminal() -> None:
    """In run.sh's process, before bash starts: the signals a shell started
    from a terminal gets, none blocked or ignored. A pytest worker may have
    them otherwise (once gevent's hub ran in it), and a signal that is
    ignored when a non-interactive bash starts cannot be trapped by it: Ctrl-C
    would do nothing, which is not what is being tested."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def start(runs: list[RunSh], directory: Path, ports: dict[str, int], **env: str) -> RunSh:
    run = RunSh(directory, ports, **env)
    runs.append(run)
    return run.start()


def get(ports: dict[str, int], path: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{ports['HTTP_PORT']}{path}", timeout=30)


def test_start_beside_another_and_sigterm_cleans_up(tmp_path: Path, ports: dict[str, int], runs: list[RunSh]) -> None:
    first = start(runs, tmp_path / "first", ports)
    first.wait_ready()
    # The ready line comes only once both answer: no retry here.
    for path in ("/ping", "/healthz"):
        r = get(ports, path)
        assert r.status_code == 200, f"{path} right after the ready line: {r.status_code} {r.text}"

    # A second run.sh on the same ports: refused before it starts anything.
    second = start(runs, tmp_path / "second", ports)
    code = second.wait_exit()
    out = second.output()
    assert code == 2, f"second run.sh exited {code}:\n{out}"
    assert len(out.strip().splitlines()) == 1, f"not one line:\n{out}"
    for name in ports:
        assert f"{ports[name]} ({name})" in out, f"{name} not named in: {out}"
    second.assert_cleaned_up()
    r = get(ports, "/healthz")  # and the first stack is untouched
    assert r.status_code == 200, f"first stack after the second run: {r.status_code} {r.text}"

    # Other ports, but the first one's Redis folder: refused too (one AOF, two Redis servers).
    first_redis_dir = str(tmp_path / "first" / "redis")
    third = start(runs, tmp_path / "third", pick_ports(), REDIS_DIR=first_redis_dir)
    code = third.wait_exit()
    out = third.output()
    assert code == 2, f"third run.sh exited {code}:\n{out}"
    assert len(out.strip().splitlines()) == 1 and "REDIS_DIR" in out, out
    third.assert_cleaned_up()

    # Other ports and the first one's Redis, named in REDIS_URL: used, and said so.
    other = pick_ports()
    redis_url = f"redis://127.0.0.1:{ports['REDIS_PORT']}/0"
    fourth = start(runs, tmp_path / "fourth", other, REDIS_URL=redis_url)
    fourth.wait_ready()
    assert f"using the Redis at {redis_url}" in fourth.output(), fourth.output()[-4000:]
    r = get(other, "/healthz")
    assert r.status_code == 200, f"{r.status_code} {r.text}"
    fourth.proc.send_signal(signal.SIGTERM)
    assert fourth.wait_exit() == 0, fourth.output()[-4000:]
    fourth.assert_cleaned_up()
    r = get(ports, "/healthz")  # the first one's Redis was left running
    assert r.status_code == 200, f"first stack after the fourth run: {r.status_code} {r.text}"

    first.proc.send_signal(signal.SIGTERM)
    code = first.wait_exit()
    assert code == 0, f"run.sh exited {code} on SIGTERM:\n{first.output()[-4000:]}"
    first.assert_cleaned_up()


def test_ctrl_c_stops_everything(tmp_path: Path, ports: dict[str, int], runs: list[RunSh]) -> None:
    run = start(runs, tmp_path, ports)
    run.wait_ready()
    status = Path(f"/proc/{run.pid}/status").read_text()
    # Ignored, not blocked: bash blocks SIGINT for moments of its own (then it is delivered).
    ignored = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigIgn:"))
    assert not ignored & (1 << (signal.SIGINT - 1)), f"run.sh ignores SIGINT (SigIgn {ignored:#x})"
    os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the foreground process group
    code = run.wait_exit()
    assert code == 0, f"run.sh exited {code} on Ctrl-C:\n{run.output()[-4000:]}"
    run.assert_cleaned_up()


def test_rpc_metrics_port_in_use(tmp_path: Path, ports: dict[str, int], runs: list[RunSh]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["RPC_METRICS_PORT"]))
        holder.listen()
        run = start(runs, tmp_path, ports)
        code = run.wait_exit()
    out = run.output()
    assert code == 2, f"run.sh exited {code}:\n{out}"
    assert len(out.strip().splitlines()) == 1, f"not one line:\n{out}"
    assert f"{ports['RPC_METRICS_PORT']} (RPC_METRICS_PORT)" in out, out
    run.assert_cleaned_up()


def test_jwt_secret_too_short(tmp_path: Path, ports: dict[str, int], runs: list[RunSh]) -> None:
    run = start(runs, tmp_path, ports, AUTH_MODE="jwt", JWT_SECRET="too-short")
    code = run.wait_exit()
    out = run.output()
    assert code != 0, f"run.sh exited 0:\n{out[-4000:]}"
    assert "HTTP API on" not in out, out[-4000:]
    assert "JWT_SECRET" in run.last_line(), f"last line: {run.last_line()!r}\n{out[-4000:]}"
    run.assert_cleaned_up()


def test_a_part_killed_stops_the_rest(tmp_path: Path, ports: dict[str, int], runs: list[RunSh]) -> None:
    # A metrics folder that does not exist yet: the HTTP server's, never the RPC server's.
    metrics_dir = tmp_path / "metrics"
    run = start(runs, tmp_path, ports, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    run.wait_ready()
    rpc = [pid for pid, cmd in session_processes(run.pid).items() if "-m rpc_server" in cmd]
    assert len(rpc) == 1, session_processes(run.pid)
    os.kill(rpc[0], signal.SIGKILL)
    code = run.wait_exit()
    assert code != 0, f"run.sh exited 0:\n{run.output()[-4000:]}"
    assert "RPC server" in run.last_line(), run.output()[-4000:]
    run.assert_cleaned_up()
    assert not metrics_dir.exists(), "run.sh created the metrics folder and left it"


@pytest.mark.parametrize("port_in_use", [False, True], ids=["stopped", "port-in-use"])
def test_http_server_alone_removes_its_metrics_folder(tmp_path: Path, port_in_use: bool) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR, gunicorn_conf makes a temp folder: gone when gunicorn exits."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    env.update(TMPDIR=str(tmp), HTTP_HOST="127.0.0.1", HTTP_PORT=str(port), HTTP_WORKERS="1")
    holder = socket.socket()
    try:
        if port_in_use:
            holder.bind(("127.0.0.1", port))
            holder.listen()
        log_path = tmp_path / "http.log"
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "http_server"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )
        try:
            if not port_in_use:
                wait_until(lambda: get({"HTTP_PORT": port}, "/ping").status_code == 200, START_S, "/ping")
                assert list(tmp.iterdir()), "no metrics folder made: is this test still needed?"
                server.send_signal(signal.SIGTERM)
            code = server.wait(EXIT_S)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    finally:
        holder.close()
    assert (code != 0) == port_in_use, f"exit {code}:\n{log_path.read_text()[-3000:]}"
    assert not list(tmp.iterdir()), f"left behind: {list(tmp.iterdir())}"
