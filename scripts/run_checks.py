"""The checks scripts/run.sh makes, each printing at most one line.

    python scripts/run_checks.py ports VAR HOST PORT [VAR HOST PORT ...]
        exit 2 and one line naming every variable whose port is taken
        (or not a port, or given twice); exit 0 when all are free.
    python scripts/run_checks.py ready http://HOST:PORT
        exit 0 when GET /ping and GET /healthz both answer 200; else
        exit 1 and one line saying which did not, and what it answered.
    python scripts/run_checks.py last-line FILE
        the last line of a server's output, its "message" if it is a
        JSON log line.

In Python because bash cannot try a bind (a listening socket is the only
proof that a port is free for a server), nor read a JSON log line.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path


def port_problems(triples: list[str]) -> str:
    """One line about the ports that cannot be used, or ""."""
    in_use: list[tuple[str, int]] = []
    other: list[str] = []
    seen: dict[int, str] = {}
    for name, host, text in zip(triples[::3], triples[1::3], triples[2::3], strict=True):
        if not text.isdigit() or not 0 <= int(text) <= 65535:
            other.append(f"{name} must be a port number, not {text!r}")
            continue
        port = int(text)
        if port == 0:  # off (RPC_METRICS_PORT=0)
            continue
        if port in seen:
            other.append(f"{seen[port]} and {name} are both {port}: give each its own port")
            continue
        seen[port] = name
        problem = _bind_problem(host, port)
        if problem == "in use":
            in_use.append((name, port))
        elif problem:
            other.append(f"{port} ({name}) on {host}: {problem}")
    if in_use:
        if len(in_use) == 1:
            line = f"port {in_use[0][1]} ({in_use[0][0]}) is in use (another run.sh?): "
            line += f"set {in_use[0][0]} to a free port, or stop what holds it"
        else:
            line = "ports " + ", ".join(f"{port} ({name})" for name, port in in_use) + " are in use "
            line += "(another run.sh?): set these variables to free ports, or stop what holds them"
        for name, port in in_use:
            if name == "REDIS_PORT":
                line += f"; to use the Redis on {port} instead, set REDIS_URL=redis://127.0.0.1:{port}/0"
        other.insert(0, line)
    return "; ".join(other)


def _bind_problem(host: str, port: int) -> str:
    """Why a server could not listen on host:port ("in use", ...), or ""."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return f"cannot resolve {host!r}: {e.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        # As the servers do: a closed connection still in TIME_WAIT does not make a port busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
            s.listen()
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return "in use"
            if e.errno == errno.EACCES:
                return "permission denied (a port below 1024 needs root)"
            if e.errno == errno.EADDRNOTAVAIL:
                return "not an address of this machine"
            return e.strerror or str(e)
    return ""


def not_ready(base_url: str) -> str:
    """Why GET /ping or /healthz does not answer 200 yet, or ""."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an http_proxy
    for path in ("/ping", "/healthz"):
        try:
            with direct.open(base_url + path, timeout=5) as response:
                if response.status != 200:
                    return f"GET {path} answered {response.status}"
        except urllib.error.HTTPError as e:
            return f"GET {path} answered {e.code} {e.read(300).decode(errors='replace').strip()}"
        except (OSError, ValueError) as e:
            return f"GET {path}: {getattr(e, 'reason', None) or e}"
    return ""


def last_line(path: str) -> str:
    try:
        lines = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    if not lines:
        return ""
    line = lines[-1].strip()
    try:
        record = json.loads(line)
    except ValueError:
        return line[:500]
    if isinstance(record, dict) and isinstance(record.get("message"), str):
        return str(record["message"])[:500]
    return line[:500]


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "ports":
        problem = port_problems(args)
        if problem:
            print(problem)
            return 2
        return 0
    if command == "ready":
        problem = not_ready(args[0])
        if problem:
            print(problem)
            return 1
        return 0
    if command == "last-line":
        print(last_line(args[0]))
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
