"""The Thrift port, opened once per server, so that no other server can share it.

A single process opens it alone. A supervisor of N workers opens N sockets
on it before starting them, and each worker inherits one (RPC_LISTEN_FD):

- the first is bound without SO_REUSEPORT and listens, so it fails at once
  if anything else listens on the port, and anything that binds the port
  later fails on it;
- only then is SO_REUSEPORT set on it, and N-1 more sockets are bound beside
  it with SO_REUSEPORT: a kernel "reuseport group", over which new
  connections are spread (one gevent loop per core).

Linux lets a socket join a group only if it was bound with SO_REUSEPORT
itself (by the same user). Every one of our servers begins with a bind
without it, so a second server, one process or a supervisor, fails with
"port in use" rather than joining (before, each worker bound with
SO_REUSEPORT, and two supervisors on one port both served, silently). Two
started at the same instant cannot both win either: both may bind, but only
the first to listen() can (listen() checks the port again). A worker that dies leaves its socket
open in the supervisor: connections the kernel gives it wait in its backlog
for the worker that replaces it.
"""

from __future__ import annotations

import os
import socket

from plumbing.settings import StartupError, cannot_listen

LISTEN_FD = "RPC_LISTEN_FD"  # set by the supervisor for its workers, not by users
BACKLOG = 1024


def open_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on host:port (see the module's docstring);
    StartupError naming the setting to change if the port cannot be had."""
    first = _bind(host, port, reuse_port=False)
    listeners = [first]
    try:
        if count > 1:
            first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            port = first.getsockname()[1]
            listeners += [_bind(host, port, reuse_port=True) for _ in range(count - 1)]
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def inherited_listener() -> socket.socket | None:
    """The listening socket the supervisor gave this worker, if it is one."""
    fd = os.environ.get(LISTEN_FD)
    return socket.socket(fileno=int(fd)) if fd else None


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart is not held up by TIME_WAIT
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)  # listening, not only bound: REUSEADDR lets a bind beside a mere bound socket
    except OSError as e:
        sock.close()
        raise StartupError(cannot_listen("RPC_HOST", "RPC_PORT", host, port, e)) from None
    return sock
