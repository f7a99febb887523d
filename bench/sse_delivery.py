"""Delivery through Server-Sent Events, measured: many subscribers on one
chat and one each on 100 others, while 5 writers send 200 messages to the
first. Prints the delivery latency (send answered -> event received) p50
and p99, and whether every subscriber got every message of its chat once,
in order.

    python -m bench.sse_delivery [--subscribers 2000] [--http-url URL]

Without --http-url it starts a stack (tests.servers.Stack) sized for the
streams. tests/test_sse.py runs the same with 1000 subscribers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
WRITERS, PER_WRITER, OTHER_CHATS = 5, 40, 100


def _chat() -> str:
    tag = uuid.uuid4().hex[:8]
    return f"s-{tag}:t-{tag}"


def _send(session: requests.Session, http_url: str, body: dict[str, str]) -> int:
    """Send as a careful client does: a 503 (a busy machine can time out a
    Redis call) is retried with the same Idempotency-Key, so the message is
    stored once; anything else unexpected raises with its status and body."""
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    deadline = time.monotonic() + 60
    while True:
        r = session.post(http_url + "/api/send", json=body, headers=headers, timeout=30)
        if r.status_code == 200:
            return int(r.json()["send_time"])
        if r.status_code != 503 or time.monotonic() > deadline:
            raise RuntimeError(f"send answered {r.status_code}: {r.text}")
        time.sleep(0.1)


def run(http_url: str, subscribers: int) -> dict[str, Any]:
    """Subscribe, send, collect. Returns what each subscriber received and
    what was sent, with the latencies."""
    main, others = _chat(), [_chat() for _ in range(OTHER_CHATS)]
    spec = {main: [subscribers, WRITERS * PER_WRITER], **{chat: [1, 1] for chat in others}}
    argv = [sys.executable, "-m", "bench.sse_clients", "--url", http_url, "--spec", json.dumps(spec)]
    clients = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert clients.stdout is not None
    if clients.stdout.readline().strip() != "ready":
        raise RuntimeError("the subscribers did not start")
    sent_at: dict[int, float] = {}
    main_sent: list[int] = []
    lock = threading.Lock()

    writer_errors: list[BaseException] = []

    def writer(n: int) -> None:
        session = requests.Session()
        try:
            for i in range(PER_WRITER):
                body = {"chat": main, "text": f"w{n} m{i}", "sender": main.split(":")[i % 2]}
                send_time = _send(session, http_url, body)
                with lock:
                    sent_at[send_time] = time.time()
                    main_sent.append(send_time)
        except BaseException as e:  # reported after the join, not lost in the thread
            writer_errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    other_sent = {}
    for chat in others:
        body = {"chat": chat, "text": "only", "sender": chat.split(":")[0]}
        other_sent[chat] = _send(requests.Session(), http_url, body)
    for t in threads:
        t.join()
    if writer_errors:
        clients.kill()
        raise writer_errors[0]
    out, _ = clients.communicate(timeout=600)
    received = json.loads(out)
    latencies = [
        1000 * (at - sent_at[int(event_id)])
        for event_id, arrivals in received[main]["arrivals"].items()
        for at in arrivals
    ]
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "main": main,
        "main_sent": sorted(main_sent),
        "other_sent": other_sent,
        "received": received,
        "p50_ms": round(cuts[49], 1),
        "p99_ms": round(cuts[98], 1),
        "resumed": received[main]["reconnects"],
    }


def all_delivered(result: dict[str, Any]) -> bool:
    received = result["received"]
    main = received[result["main"]]
    return (
        not main["errors"]
        and all(ids == result["main_sent"] for ids in main["ids"])
        and all(received[chat]["ids"] == [[sent]] for chat, sent in result["other_sent"].items())
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sse_delivery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--http-url", help="a running HTTP server (default: start a stack)")
    args = parser.parse_args()
    with ExitStack() as cleanup:
        http_url = args.http_url
        if not http_url:
            from tests.servers import HttpServer, RedisServer, RpcServer

            directory = Path(tempfile.mkdtemp(prefix="bench-sse-"))
            redis_server = RedisServer(directory / "redis")
            redis_server.start()
            cleanup.callback(redis_server.stop)
            rpc = RpcServer(directory, redis_server.url, LOG_REQUESTS="0")
            rpc.start()
            cleanup.callback(rpc.stop)
            streams = str(args.subscribers + 2 * OTHER_CHATS)
            http = HttpServer(
                directory,
                rpc.port,
                LOG_REQUESTS="0",
                SSE_MAX_STREAMS=streams,
                RPC_WAIT_POOL_SIZE=streams,
                HTTP_WORKER_CONNECTIONS=str(int(streams) + 500),
            )
            http.start()
            cleanup.callback(http.stop)
            http_url = http.url
        result = run(http_url, args.subscribers)
    print(
        f"{args.subscribers} subscribers (+{OTHER_CHATS} on other chats), {WRITERS * PER_WRITER} messages: "
        f"delivery p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; "
        f"{result['resumed']} streams resumed with Last-Event-ID; "
        f"every message once and in order: {'yes' if all_delivered(result) else 'NO'}"
    )
    return 0 if all_delivered(result) else 1


if __name__ == "__main__":
    sys.exit(main())
