"""The HTTP server's settings are parsed once per process, and the JWT key
file read once: a real `python -m http_server` with two gunicorn workers,
run under an audit hook that notes, with the process id, each parse of the
settings, each open of the key file, and each app built (its openapi.json
read). The master parses once for `__main__`, `gunicorn_conf` and the
worker class; each worker once for its app (so that a worker started by a
HUP reads the key file as it is then). Before: the master parsed 3 times,
and each worker once more and read the key file twice.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.servers import Process, free_port, wait_until

# Run as `python -c HOOK --flags...`: the hook is in place before anything of ours is imported.
HOOK = """
import os, sys
LOG, KEY = os.environ["COUNT_LOG"], os.environ["JWT_PUBLIC_KEY_FILE"]

def note(what):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{what} {os.getpid()}\\n".encode())
    os.close(fd)

def hook(event, args):
    if event == "open" and args and isinstance(args[0], str):
        if args[0] == KEY:
            note("key")
        elif args[0].endswith("openapi.json"):
            note("app")

sys.addaudithook(hook)
import plumbing.settings
_parse = plumbing.settings.parse
def parse(*a, **k):
    note("parse")
    return _parse(*a, **k)
plumbing.settings.parse = parse
from http_server.__main__ import main
main()
"""


def _notes(log: Path) -> list[tuple[str, int]]:
    lines = log.read_text().split() if log.exists() else []
    return [(what, int(pid)) for what, pid in zip(lines[::2], lines[1::2], strict=True)]


def test_settings_parsed_and_jwt_key_read_once_per_process(tmp_path: Path) -> None:
    key = tmp_path / "jwt.pub.pem"
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    log = tmp_path / "notes.txt"
    port = free_port()
    argv = [sys.executable, "-c", HOOK, "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    env = {
        "COUNT_LOG": str(log),
        "AUTH_MODE": "jwt",
        "JWT_PUBLIC_KEY_FILE": str(key),
        "RPC_ADDR": f"127.0.0.1:{free_port()}",  # never called: the apps are only built
    }
    server = Process("gunicorn", argv, tmp_path / "http.log", env)
    server.start()
    try:
        server.wait_ready(lambda: len({pid for what, pid in _notes(log) if what == "app"}) == 2, timeout=90)
    finally:
        server.stop()
    notes = _notes(log)
    parses = Counter(pid for what, pid in notes if what == "parse")
    key_reads = Counter(pid for what, pid in notes if what == "key")
    workers = {pid for what, pid in notes if what == "app"}
    assert server.pid not in workers, notes
    once = dict.fromkeys([server.pid, *workers], 1)
    assert dict(parses) == once, f"parses by process (master {server.pid}, workers {workers}): {notes}"
    assert dict(key_reads) == once, f"key reads by process (master {server.pid}, workers {workers}): {notes}"


def test_the_hook_sees_what_it_counts(tmp_path: Path) -> None:
    """The counter itself: a parse and a key read in a plain process are noted once each."""
    log = tmp_path / "notes.txt"
    key = tmp_path / "jwt.pub.pem"
    key.write_text("not a key")
    code = HOOK.replace("from http_server.__main__ import main\nmain()", "") + (
        "from http_server import config\n"
        "try:\n"
        "    config.load([], {'AUTH_MODE': 'jwt', 'JWT_PUBLIC_KEY_FILE': KEY})\n"
        "except config.ConfigError:\n"
        "    pass\n"
    )
    process = Process(
        "python",
        [sys.executable, "-c", code],
        tmp_path / "out.log",
        {"COUNT_LOG": str(log), "JWT_PUBLIC_KEY_FILE": str(key)},
    )
    process.start()
    wait_until(lambda: not process.alive(), 60, "the counting process to exit")
    assert sorted(what for what, _ in _notes(log)) == ["key", "parse"], process.log()
