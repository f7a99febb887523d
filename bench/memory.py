"""Redis bytes per stored message: our design against the seed's.

    python -m bench.memory [--redis-url URL] [--large N] [--chats N]

Starts its own redis-server with deploy/redis.conf on a free port (unless
--redis-url is given; that database is FLUSHed, so never point it at real
data), loads the same messages in both designs, and prints bytes per
message from `used_memory` deltas:

- ours: one stream per chat, written by the real send script (send.lua),
  which also keeps each member's conversation-list entry for the chat;
- the seed's: JSON members {"sender","message","timestamp"} in a sorted set
  per chat, score = seconds.

Two shapes: one large chat (100k messages) and many 10-message chats.
Every message has a 71-byte text.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from rpc_server.chat_id import parse_chat
from rpc_server.storage.store import MessageStore

ROOT = Path(__file__).resolve().parent.parent
SENDERS = ("alice", "bob")
BATCH = 1000


def _seed_member(sender: str, text: str, seconds: int) -> str:
    return json.dumps({"sender": sender, "message": text, "timestamp": seconds}, separators=(",", ":"))


TEXT = "The quick brown fox jumps over the lazy dog, then naps in the sun. 1234"
assert len(TEXT.encode()) == 71


def load_ours(client: redis.Redis, chats: list[str], per_chat: int, text: str) -> None:
    """Send `per_chat` messages to each chat as the RPC server does (its own
    send script and arguments), pipelined; no retention."""
    store = MessageStore(client, idempotency_ttl_s=86400, pipeline_lanes=0)
    client.script_load(store.send_script.source)
    pipe = client.pipeline(transaction=False)
    pending = 0
    for chat in chats:
        for i in range(per_chat):
            pipe.execute_command(*store.append_command(parse_chat(chat), SENDERS[i % 2], text))
            pending += 1
            if pending == BATCH:
                pipe.execute()
                pending = 0
    pipe.execute()


def load_seed(client: redis.Redis, chats: list[str], per_chat: int, text: str) -> None:
    pipe = client.pipeline(transaction=False)
    pending = 0
    now = int(time.time())
    for chat in chats:
        for i in range(per_chat):
            seconds = now + i // 3  # a few messages per second, as in a live chat
            member = _seed_member(SENDERS[i % 2], f"{text[:-6]}{i:06d}", seconds)  # distinct members
            pipe.zadd(chat, {member: seconds})
            pending += 1
            if pending == BATCH:
                pipe.execute()
                pending = 0
    pipe.execute()


def bytes_per_message(client: redis.Redis, load: Callable[[], None], messages: int) -> float:
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    load()
    after = int(client.info("memory")["used_memory"])
    return (after - before) / messages


def measure(client: redis.Redis, large: int, small_chats: int) -> dict[str, dict[str, float]]:
    text = TEXT
    shapes = {
        f"1 chat x {large}": (["alice:bob"], large),
        f"{small_chats} chats x 10": ([f"user{i:06d}:user{i + 1:06d}" for i in range(small_chats)], 10),
    }
    results: dict[str, dict[str, float]] = {}
    for shape, (chats, per_chat) in shapes.items():
        n = len(chats) * per_chat
        seed = bytes_per_message(client, lambda c=chats, p=per_chat: load_seed(client, c, p, text), n)
        ours = bytes_per_message(client, lambda c=chats, p=per_chat: load_ours(client, c, p, text), n)
        client.config_set("stream-node-max-bytes", "4096")
        ours_4k = bytes_per_message(client, lambda c=chats, p=per_chat: load_ours(client, c, p, text), n)
        client.config_set("stream-node-max-bytes", "1024")
        results[shape] = {"seed": seed, "ours": ours, "ours_4096_nodes": ours_4k, "ratio": ours / seed}
    client.flushall()
    return results


@contextmanager
def own_redis() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="bench-redis-")
    argv = ["redis-server", str(ROOT / "deploy" / "redis.conf"), "--port", str(port), "--dir", directory]
    argv += ["--appendonly", "no"]  # memory only; the AOF would just slow loading
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="a Redis to FLUSH and use (default: start one)")
    parser.add_argument("--large", type=int, default=100_000, help="messages in the large chat")
    parser.add_argument("--chats", type=int, default=10_000, help="number of 10-message chats")
    args = parser.parse_args()
    with own_redis() if not args.redis_url else contextmanager(lambda: iter([args.redis_url]))() as url:
        client = redis.Redis.from_url(url)
        client.config_set("stream-node-max-bytes", "1024")
        version = client.info("server")["redis_version"]
        results = measure(client, args.large, args.chats)
    print(f"Redis {version}; 71-byte texts; bytes per message from used_memory")
    print(f"{'shape':<22} {'seed B/msg':>11} {'ours B/msg':>11} {'ours/seed':>10} {'ours, 4 KiB nodes':>18}")
    for shape, r in results.items():
        print(f"{shape:<22} {r['seed']:>11.0f} {r['ours']:>11.0f} {r['ratio']:>10.2f} {r['ours_4096_nodes']:>18.0f}")


if __name__ == "__main__":
    main()
