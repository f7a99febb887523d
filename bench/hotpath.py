"""CPU per request, per tier, and throughput ratios: A/B of hot-path changes.

    python -m bench.hotpath [--tree DIR ...] [--env NAME=VALUE ...] [--rounds 3] [--duration 4]

Starts one stack (redis-server, one RPC worker, two gunicorn workers: the
stack as scripts/run.sh starts it) per variant, all at once on free ports,
then measures them interleaved, A, B, A, B, ..., scenario by scenario, so
that the noise of a shared machine falls on every variant alike. A variant
is a source tree (`--tree`, default this one: a copy of another commit, say
`git archive <commit> | tar -x -C /tmp/base`) with optional settings
(`--env`, applied to both servers; `--variant 'NAME=VALUE NAME=VALUE'`
adds a variant of the first tree with those settings).

For each run it reads the CPU time (/proc/<pid>/stat) of each tier's
processes (the gunicorn workers, the RPC server, Redis) before and after,
and prints, per variant and scenario, the median over rounds of the rate,
its ratio to /ping (HTTP) or to the RPC echo (Thrift) of the same round,
and the CPU microseconds per request of each tier.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import memory
from bench.procstat import cpu_s, descendants

ROOT = Path(__file__).resolve().parent.parent
CHAT = "bench-a:bench-b"
SEND_BODY = json.dumps({"chat": CHAT, "text": memory.TEXT, "sender": "bench-a"})
SCENARIOS = ("ping", "send", "pull", "echo", "tsend")


class Variant:
    def __init__(self, name: str, tree: Path, env: dict[str, str], directory: Path) -> None:
        import tests.servers as servers

        self.name, self.tree = name, tree
        servers.ROOT = tree  # the processes run from this tree (their cwd comes first on sys.path)
        directory.mkdir(parents=True)
        self.redis = servers.RedisServer(directory / "redis")
        self.rpc = servers.RpcServer(directory, self.redis.url, RPC_WORKERS="1", **env)
        self.http = servers.HttpServer(directory, self.rpc.port, **env)
        for server in (self.redis, self.rpc, self.http):
            server.start()
        servers.ROOT = ROOT
        self.url = self.http.url

    def tiers(self) -> dict[str, list[int]]:
        return {
            "http": [p for p in descendants(self.http.pid) if p != self.http.pid],  # the workers, not the master
            "rpc": descendants(self.rpc.pid),
            "redis": [self.redis.pid],
        }

    def stop(self) -> None:
        for server in (self.http, self.rpc, self.redis):
            server.stop()


def wrk(url: str, duration: float, body: str | None = None) -> float:
    argv = ["wrk", "-t2", "-c64", f"-d{round(duration)}s"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if body is not None:
            script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n')
            script.write('wrk.headers["Content-Type"] = "application/json"\n')
    try:
        out = subprocess.run([*argv, "-s", script.name, url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"{url}: {bad.group(1)} non-2xx answers")
    return total


def thrift(variant: Variant, call: str, duration: float) -> float:
    argv = [sys.executable, "-m", "bench.thrift_load", "--addr", f"127.0.0.1:{variant.rpc.port}"]
    argv += ["--call", call, "--duration", str(duration), "--chat", CHAT]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=variant.tree).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result["errors"]:
        raise RuntimeError(f"thrift {call}: {result['errors']}")
    return float(result["calls"])


def measure(variant: Variant, scenario: str, duration: float) -> dict[str, float]:
    pull = f"/api/pull?chat={CHAT}&limit=10&reverse=true"
    run = {
        "ping": lambda: wrk(variant.url + "/ping", duration),
        "send": lambda: wrk(variant.url + "/api/send", duration, SEND_BODY),
        "pull": lambda: wrk(variant.url + pull, duration),
        "echo": lambda: thrift(variant, "Health", duration),
        "tsend": lambda: thrift(variant, "Send", duration),
    }[scenario]
    tiers = variant.tiers()
    before = {tier: cpu_s(pids) for tier, pids in tiers.items()}
    started = time.monotonic()
    count = run()
    elapsed = time.monotonic() - started
    figures = {"rate": count / elapsed}
    for tier, pids in tiers.items():
        figures[f"{tier}_us"] = (cpu_s(pids) - before[tier]) / count * 1e6
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, action="append", default=[], help="a source tree (repeatable)")
    parser.add_argument("--variant", action="append", default=[], help="settings for another variant of tree 1")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for every variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        parser.error("wrk is not installed (scripts/bench.sh installs it)")
    common = dict(item.split("=", 1) for item in args.env)
    specs = [(str(tree), tree.resolve(), common) for tree in args.tree or [ROOT]]
    for settings in args.variant:
        specs.append((settings, specs[0][1], {**common, **dict(s.split("=", 1) for s in settings.split())}))
    scenarios = args.scenarios.split(",")
    results: dict[str, dict[str, list[dict[str, float]]]] = {name: {s: [] for s in scenarios} for name, _, _ in specs}
    with tempfile.TemporaryDirectory(prefix="bench-hotpath-") as directory:
        variants: list[Variant] = []
        try:
            for i, (name, tree, env) in enumerate(specs):
                variants.append(Variant(name, tree, env, Path(directory) / str(i)))
            for variant in variants:  # warm up, and give the pulls a chat to read
                requests.post(variant.url + "/api/send", data=SEND_BODY, timeout=10).raise_for_status()
                wrk(variant.url + "/api/send", 1, SEND_BODY)
            for round_ in range(args.rounds):
                for scenario in scenarios:
                    for variant in variants:
                        figures = measure(variant, scenario, args.duration)
                        results[variant.name][scenario].append(figures)
                        print(f"round {round_ + 1} {variant.name} {scenario}: {_fmt(figures)}", flush=True)
        finally:
            for variant in variants:
                variant.stop()
    print()
    print("| variant | scenario | rate/s | ratio | HTTP us | RPC us | Redis us |")
    print("|---|---|---|---|---|---|---|")
    for name, by_scenario in results.items():
        for scenario, runs in by_scenario.items():
            if not runs:
                continue
            base = by_scenario.get("ping" if scenario in ("send", "pull") else "echo")
            ratio = ""
            if base and scenario not in ("ping", "echo"):
                ratios = [r["rate"] / b["rate"] for r, b in zip(runs, base, strict=False)]
                ratio = f"{statistics.median(ratios):.2f}"
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            cells = [name, scenario, f"{med['rate']:,.0f}", ratio]
            cells += [f"{med[t + '_us']:.0f}" for t in ("http", "rpc", "redis")]
            print("| " + " | ".join(cells) + " |")
    return 0


def _fmt(figures: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:,.0f}" for k, v in figures.items())


if __name__ == "__main__":
    sys.exit(main())
