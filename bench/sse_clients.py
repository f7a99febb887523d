"""Many Server-Sent Events subscribers in one process (gevent), for the
tests and the benchmark: `python -m bench.sse_clients --url URL --spec JSON`.

The spec maps each chat to [subscribers, events to expect]. Each subscriber
opens GET /api/subscribe?chat=…, prints nothing until every subscriber has
its stream open, then the line `ready`; each reads events until it has
the number expected for its chat (or the deadline), reconnecting with
Last-Event-ID whenever its stream ends (a server drops a consumer that
falls behind, as this one may on a busy machine), and the process prints
one JSON object: for each chat, every subscriber's event ids in the order
received, and the wall-clock time each id first arrived at any subscriber
and the times of every arrival (for delivery latency)."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402


class Subscriber:
    def __init__(self, url: str, chat: str, expect: int) -> None:
        self.url, self.chat, self.expect = urllib.parse.urlsplit(url), chat, expect
        self.ids: list[int] = []
        self.arrivals: list[float] = []
        self.open = Event()
        self.error = ""
        self.reconnects = 0

    def run(self, deadline: float) -> None:
        while len(self.ids) < self.expect and time.monotonic() < deadline and not self.error:
            self._connect(deadline)
            self.reconnects += 1
        self.reconnects -= 1

    def _connect(self, deadline: float) -> None:
        try:
            with socket.create_connection((self.url.hostname, self.url.port), timeout=30) as sock:
                path = "/api/subscribe?" + urllib.parse.urlencode({"chat": self.chat})
                resume = f"Last-Event-ID: {self.ids[-1]}\r\n" if self.ids else ""
                request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{resume}\r\n"
                sock.sendall(request.encode())
                stream = sock.makefile("rb")
                status = stream.readline()
                if b" 200 " not in status:
                    self.error = status.decode(errors="replace").strip()
                    return
                while stream.readline() not in (b"\r\n", b""):
                    pass  # headers
                self._read(stream, deadline)
        except OSError:
            pass  # reset or timed out: reconnect
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.open.set()

    def _read(self, stream: Any, deadline: float) -> None:
        # Chunked transfer encoding around the event text: lines that are
        # chunk sizes are told apart from event lines by their form.
        while len(self.ids) < self.expect and time.monotonic() < deadline:
            line = stream.readline()
            if not line:
                return
            text = line.decode().rstrip("\r\n")
            if text.startswith(": stream of"):
                self.open.set()
            elif text.startswith("id: "):
                self.ids.append(int(text[4:]))
                self.arrivals.append(time.time())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--spec", required=True, help='{"chat": [subscribers, events expected], ...}')
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    subscribers = [
        Subscriber(args.url, chat, expect)
        for chat, (count, expect) in json.loads(args.spec).items()
        for _ in range(count)
    ]
    greenlets = []
    for s in subscribers:
        greenlets.append(gevent.spawn(s.run, deadline))
        gevent.sleep(0.001)  # do not flood the listen backlog
    for s in subscribers:
        s.open.wait(max(0.0, deadline - time.monotonic()))
    print("ready", flush=True)
    gevent.joinall(greenlets, timeout=max(0.0, deadline - time.monotonic()))
    result: dict[str, Any] = {}
    for s in subscribers:
        chat = result.setdefault(s.chat, {"ids": [], "errors": [], "arrivals": {}, "reconnects": 0})
        chat["ids"].append(s.ids)
        chat["reconnects"] += s.reconnects
        if s.error:
            chat["errors"].append(s.error)
        for event_id, at in zip(s.ids, s.arrivals, strict=True):
            chat["arrivals"].setdefault(str(event_id), []).append(at)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
