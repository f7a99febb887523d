"""Closed-loop load on the RPC server over many persistent Thrift connections.

    python -m bench.thrift_load --addr 127.0.0.1:8888 --call Send --connections 64 --duration 5

Each connection (a greenlet with a thriftpy2 client on Cython transports,
strict binary, buffered) makes calls back to back, like a pooled Kitex
client. `--call Health` asks for Health(SkipStorage=true): the RPC tier's
own ceiling, the same server loop without Redis. Prints one JSON object.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from thriftpy2.protocol import TCyBinaryProtocolFactory  # noqa: E402
from thriftpy2.rpc import make_client  # noqa: E402
from thriftpy2.transport import TCyBufferedTransportFactory  # noqa: E402

import idl  # noqa: E402
from bench.stats import percentile  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog, then naps in the sun. 1234"


def _request(rpc: Any, call: str, chat: str) -> Any:
    if call == "Send":
        return rpc.SendRequest(message=rpc.Message(Chat=chat, Text=TEXT, Sender=chat.split(":")[0]))
    if call == "Pull":
        return rpc.PullRequest(Chat=chat, Cursor=0, Limit=10, Reverse=True)
    return rpc.HealthRequest(SkipStorage=True)


def run(addr: str, call: str, connections: int, duration: float, chat: str) -> dict[str, Any]:
    rpc = idl.load_rpc()
    host, _, port = addr.rpartition(":")
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + duration

    def worker() -> None:
        client = make_client(
            rpc.IMService,
            host,
            int(port),
            timeout=5000,
            proto_factory=TCyBinaryProtocolFactory(),
            trans_factory=TCyBufferedTransportFactory(),
        )
        method, request = getattr(client, call), _request(rpc, call, chat)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = method(request)
            except Exception as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                return
            if response.Code != 0:
                errors[str(response.Code)] = errors.get(str(response.Code), 0) + 1
            latencies.append(time.perf_counter() - started)
        client.close()

    started = time.perf_counter()
    gevent.joinall([gevent.spawn(worker) for _ in range(connections)])
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "call": call,
        "connections": connections,
        "calls": len(latencies),
        "calls_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.thrift_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", required=True, help="host:port of the RPC server")
    parser.add_argument("--call", choices=["Send", "Pull", "Health"], required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--chat", default="bench-thrift-a:bench-thrift-b")
    args = parser.parse_args()
    print(json.dumps(run(args.addr, args.call, args.connections, args.duration, args.chat)))


if __name__ == "__main__":
    main()
