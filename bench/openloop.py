"""An open-loop HTTP load generator: requests go out on a fixed schedule.

    python -m bench.openloop --url http://127.0.0.1:8080/api/send --rate 1000 \
        --duration 5 [--body JSON] [--connections 256]

wrk is closed-loop: when the server stalls, it stops sending, and the stall
hides in few, slow samples (coordinated omission). Here request i is due at
start + i/rate whatever happened before, and its latency runs from that
scheduled time, so a stall shows in every request it delays. It runs in its
own process (gevent, raw keep-alive sockets, to stay cheap) and says when it
falls behind its own schedule. Prints one JSON object.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.queue import LifoQueue  # noqa: E402

from bench.stats import percentile  # noqa: E402

# A request dispatched more than this after its due time counts as late (gevent's
# timers are good to about a millisecond); over 1% late means the generator
# itself fell behind. Latency runs from the due time either way.
LATE_S = 0.005


class Connections:
    """Keep-alive connections to one host, reused; opened on demand."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._idle: LifoQueue[socket.socket] = LifoQueue()
        self.opened = 0

    def request(self, payload: bytes, timeout: float) -> int:
        sock = self._idle.get_nowait() if not self._idle.empty() else self._open()
        try:
            sock.settimeout(timeout)
            sock.sendall(payload)
            status = _read_response(sock)
        except Exception:
            sock.close()
            raise
        self._idle.put(sock)
        return status

    def _open(self) -> socket.socket:
        self.opened += 1
        sock = socket.create_connection(self._address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def _read_response(sock: socket.socket) -> int:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return status


def run(url: str, rate: float, duration: float, body: str | None, timeout: float) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if body is None:
        payload = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    else:
        data = body.encode()
        payload = (
            f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode() + data
    connections = Connections(host, port)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lags: list[float] = []

    def one(due: float) -> None:
        try:
            status = connections.request(payload, timeout)
        except Exception as e:
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            return
        if status >= 400:
            errors[str(status)] = errors.get(str(status), 0) + 1
        latencies.append(time.perf_counter() - due)

    total = int(rate * duration)
    start = time.perf_counter() + 0.1
    greenlets = []
    for i in range(total):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            gevent.sleep(wait)
        lags.append(time.perf_counter() - due)
        greenlets.append(gevent.spawn(one, due))
    gevent.joinall(greenlets, timeout=timeout + 5)
    elapsed = time.perf_counter() - start
    latencies.sort()
    late = sum(1 for lag in lags if lag > LATE_S)
    return {
        "offered_rate": rate,
        "requests": total,
        "completed": len(latencies),
        "achieved_rate": round(len(latencies) / elapsed, 1),
        "errors": errors,
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "max_ms": round((latencies[-1] if latencies else float("nan")) * 1000, 3),
        "dispatched_late": late,
        "max_dispatch_lag_ms": round(max(lags) * 1000, 3) if lags else 0.0,
        "connections_opened": connections.opened,
        "behind_schedule": late > 0.01 * total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second, offered")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--body", help="JSON body: POST it (else GET)")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(run(args.url, args.rate, args.duration, args.body, args.timeout)))


if __name__ == "__main__":
    main()
