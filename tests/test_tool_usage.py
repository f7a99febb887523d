"""The operator tools' own `--help`: each names itself and shows the settings
it uses, not the RPC server's usage line and every server flag."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.servers import ROOT

# flags that only the server itself uses: a tool's usage must not offer them
SERVER_ONLY = ["--port", "--workers", "--metrics-port", "--max-connections", "--etcd-endpoints"]


def usage(module: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    return done.stdout


@pytest.mark.parametrize(
    ("module", "shown"),
    [
        ("rpc_server.tools.sweep", ["--retention-max-age-s", "--retention-max-messages", "--redis-url"]),
        ("rpc_server.tools.reindex", ["--redis-url", "--redis-cluster-nodes"]),
        ("rpc_server.tools.migrate_seed", ["--dry-run", "--source-url"]),
    ],
)
def test_each_tool_prints_its_own_usage(module: str, shown: list[str]) -> None:
    text = usage(module)
    assert text.startswith(f"usage: python -m {module} "), text
    for flag in shown:
        assert flag in text, f"{flag} missing from:\n{text}"
    for flag in SERVER_ONLY:
        assert f"{flag} " not in text and f"{flag}\n" not in text, f"server flag {flag} in:\n{text}"


def test_the_server_still_shows_every_flag() -> None:
    text = usage("rpc_server")
    assert text.startswith("usage: python -m rpc_server "), text
    for flag in SERVER_ONLY:
        assert flag in text
