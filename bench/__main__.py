"""The benchmark: every figure of the performance targets, in one run.

    scripts/bench.sh [--out bench/results] [--duration 6] [--quick]
    python -m bench --http-url http://127.0.0.1:8080 --rpc-addr 127.0.0.1:8888 --redis-url redis://...

Without targets it starts its own stack on free ports with the shipped
settings, as scripts/run.sh runs them on one machine (deploy/redis.conf,
gunicorn_conf, the servers' defaults, one RPC worker). With
them it measures a running stack; --redis-url is only used to load the big
chats and to read the persistence settings, and that Redis gets bench-*
chats written to it. Prints a table with ratios and writes results.json,
results.md and results.png to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis

from bench import memory, overload, profile
from bench.procstat import descendants
from rpc_server.chat_id import parse_chat
from rpc_server.storage.keys import stream_key
from rpc_server.storage.store import MessageStore

ROOT = Path(__file__).resolve().parent.parent
TEXT = memory.TEXT
PULL_SIZES = (100, 10_000, 1_000_000)
OPEN_LOOP_RATES = (500, 1000, 2000, 3000, 5000)


class Bench:
    def __init__(
        self,
        http_url: str,
        rpc_addr: str,
        redis_url: str,
        duration: float,
        out: Path,
        tiers: overload.Tiers | None = None,
        overload_s: float = 30.0,
    ) -> None:
        self.http_url, self.rpc_addr, self.redis_url = http_url, rpc_addr, redis_url
        self.duration = duration
        self.tiers = tiers  # the stack's processes, when this benchmark started it: CPU per tier
        self.overload_s = overload_s
        self.out = out
        self.results: dict[str, Any] = {}
        self._stages: list[tuple[str, Callable[[], Any]]] = []
        self._started = time.monotonic()

    def stage(self, name: str, run: Callable[[], Any]) -> None:
        self._stages.append((name, run))

    def run(self) -> None:
        for i, (name, run) in enumerate(self._stages, 1):
            print(f"[{i:2}/{len(self._stages)}] {name} ...", end="", flush=True)
            started = time.monotonic()
            result = run()
            self.results[name] = result
            elapsed, total = time.monotonic() - started, time.monotonic() - self._started
            print(f" {_summary(result)}  ({elapsed:.0f}s, {total:.0f}s in all)")

    # --- the measurements ----------------------------------------------------------

    def wrk(self, path: str, body: str | None = None) -> dict[str, Any]:
        argv = ["wrk", "-t2", "-c64", f"-d{round(self.duration)}s", "--latency"]
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            if body is not None:
                script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n')
                script.write('wrk.headers["Content-Type"] = "application/json"\n')
        argv += ["-s", script.name, self.http_url + path]
        try:
            with self._cpu() as cpu:
                output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        finally:
            os.unlink(script.name)
        result = _parse_wrk(output)
        return {**result, **_per_request_us(cpu, result["requests"])}

    @contextmanager
    def _cpu(self) -> Iterator[dict[str, float]]:
        """Each tier's CPU seconds over the block (nothing when this
        benchmark did not start the stack)."""
        if self.tiers is None:
            yield {}
            return
        with overload.cpu_meter(self.tiers) as cpu:
            yield cpu

    def thrift(self, call: str, chat: str = "bench-thrift-a:bench-thrift-b") -> dict[str, Any]:
        with self._cpu() as cpu:
            result = self._thrift(call, chat)
        return {**result, **_per_request_us(cpu, round(result["calls_per_s"] * self.duration))}

    def _thrift(self, call: str, chat: str) -> dict[str, Any]:
        return self._json_process(
            "bench.thrift_load",
            "--addr",
            self.rpc_addr,
            "--call",
            call,
            "--duration",
            str(self.duration),
            "--chat",
            chat,
        )

    def kitex(self) -> dict[str, Any]:
        return self._json_process("bench.kitex_load", "--addr", self.rpc_addr, "--duration", str(self.duration))

    def open_loop(self, path: str, rate: int, body: str | None = None) -> dict[str, Any]:
        """Open loop from bench/loadgen (Go): at 1,000/s the Python generator
        (bench.openloop) took a fifth of a core of the two, and its own
        scheduling showed in the latencies (p99 at 1,000 sends/s, same
        stack, same minute: 10-12 ms from it, 8-9 ms from this one)."""
        run = overload.loadgen(self.http_url + path, rate, min(self.duration, 5), body)
        failures = {**run["statuses"], **run["errors"], **({"timeouts": run["timeouts"]} if run["timeouts"] else {})}
        return {
            "offered_rate": run["offered_rate"],
            "achieved_rate": round(run["requests"] / run["elapsed_s"], 1),
            "p50_ms": run["ok_p50_ms"],  # of the 2xx answers
            "p99_ms": run["p99_ms"],  # of every answer
            "max_ms": max(v for v in (run["ok_max_ms"], run["refused_max_ms"]) if v is not None),
            "errors": failures,
            "behind_schedule": run["behind_schedule"],
        }

    def capacity(self, body: str) -> dict[str, Any]:
        search_s = min(self.duration, 5)
        return overload.find_capacity(
            lambda rate: overload.measured(self.http_url + "/api/send", rate, search_s, body, self.tiers)
        )

    def overloaded(self, body: str, factor: float, duration: float) -> dict[str, Any]:
        rate = self.results[CAPACITY]["capacity_per_s"] * factor
        return overload.measured(self.http_url + "/api/send", rate, duration, body, self.tiers)

    def refusals(self, body: str) -> dict[str, Any]:
        if self.tiers is None:
            return {"skipped": "a stack this benchmark did not start: its RPC server cannot be stopped"}
        rate = self.results[CAPACITY]["capacity_per_s"] * 2
        return overload.refusal_cost(self.http_url + "/api/send", rate, min(self.duration, 5), body, self.tiers)

    def profile(self, path: str, body: str) -> dict[str, Any]:
        """py-spy on each Python tier while wrk loads `path` (bench.profile)."""
        if self.tiers is None:
            return {"skipped": "a stack this benchmark did not start: its processes are not known"}
        workers = [pid for pid in descendants(self.tiers.http) if pid != self.tiers.http]
        tiers = {"http": workers, "rpc": descendants(self.tiers.rpc)}
        return profile.record(tiers, max(self.duration - 2, 1), lambda: self.wrk(path, body))

    def redis_benchmark(self, chat_key: str) -> dict[str, Any]:
        if not shutil.which("redis-benchmark"):
            return {"skipped": "redis-benchmark is not installed"}
        client = redis.Redis.from_url(self.redis_url)
        store = MessageStore(client, idempotency_ttl_s=86400, pipeline_lanes=0)
        client.script_load(store.send_script.source)
        port = client.connection_pool.connection_kwargs.get("port", 6379)
        host = client.connection_pool.connection_kwargs.get("host", "127.0.0.1")
        commands = {
            # as the RPC server sends it: the stream, its trim mark, both lists, the notice
            "EVALSHA send.lua": [
                str(part) for part in store.append_command(parse_chat("bench-rb:x"), "bench-rb", TEXT)
            ],
            "XRANGE COUNT 11": ["XRANGE", chat_key, "-", "+", "COUNT", "11"],
            "XREVRANGE COUNT 11": ["XREVRANGE", chat_key, "+", "-", "COUNT", "11"],
        }
        figures = {}
        for name, command in commands.items():
            argv = ["redis-benchmark", "-h", str(host), "-p", str(port), "-c", "50", "-n", "50000", "--csv", *command]
            lines = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip().splitlines()
            figures[name] = float(next(csv.reader([lines[-1]]))[1])  # "test","rps",...
        return figures

    def load_chats(self) -> dict[str, Any]:
        client = redis.Redis.from_url(self.redis_url)
        loaded = {}
        for size in PULL_SIZES:
            chat = _pull_chat(size)
            have = client.xlen(stream_key(parse_chat(chat)))
            if have < size:
                memory.load_ours(client, [chat], size - have, TEXT)
            loaded[chat] = client.xlen(stream_key(parse_chat(chat)))
        return loaded

    def persistence(self) -> dict[str, str]:
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        settings = {}
        for name in ("appendonly", "appendfsync", "maxmemory-policy", "stream-node-max-bytes"):
            settings.update(client.config_get(name))
        settings["redis_version"] = client.info("server")["redis_version"]
        return settings

    def _json_process(self, module: str, *args: str) -> dict[str, Any]:
        output = subprocess.run(
            [sys.executable, "-m", module, *args], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
        result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
        return result


def _pull_chat(size: int) -> str:
    return f"bench-pull-{size}:bench-peer"


def _parse_wrk(output: str) -> dict[str, Any]:
    def ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    result: dict[str, Any] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for percent in ("50", "99"):
        match = re.search(rf"^\s+{percent}%\s+(\S+)", output, re.M)
        result[f"p{percent}_ms"] = round(ms(match.group(1)), 3) if match else None
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = int(errors.group(1)) if errors else 0
    # The rate of 2xx answers: a refusal (503, admission control) is no throughput.
    requests = re.search(r"^\s*(\d+) requests in", output, re.M)
    total = int(requests.group(1)) if requests else 0
    result["ok_rps"] = round(result["rps"] * (total - result["non_2xx"]) / total, 2) if total else result["rps"]
    socket_errors = re.search(r"Socket errors: (.*)", output)
    result["socket_errors"] = socket_errors.group(1) if socket_errors else None
    result["requests"] = total
    return result


def _per_request_us(cpu: dict[str, float], requests: int) -> dict[str, Any]:
    """CPU µs per request of each tier, from `cpu_meter`'s seconds."""
    if not cpu or not requests:
        return {}
    return {"cpu_us": {tier: round(cpu[f"cpu_{tier}_s"] / requests * 1e6) for tier in ("http", "rpc", "redis")}}


def _summary(result: Any) -> str:
    if not isinstance(result, dict):
        return str(result)
    if "load" in result:
        return ", ".join(f"{tier} {result[tier]['samples']} samples" for tier in ("http", "rpc"))
    if "capacity_per_s" in result:
        return f"capacity {result['capacity_per_s']:,}/s ({len(result['points'])} runs)"
    if "goodput_per_s" in result:
        return (
            f"offered {result['offered_rate']:,.0f}/s: goodput {result['goodput_per_s']:,.0f}/s, "
            f"p99 2xx {result['ok_p99_ms']} ms, refused {result['refused']:,} (p99 {result['refused_p99_ms']} ms), "
            f"timeouts {result['timeouts']}, generator CPU {result['cpu_s']:.1f} s"
        )
    for key in ("rps", "calls_per_s"):
        if key in result:
            extra = f", p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')} ms" if "p50_ms" in result else ""
            return f"{result[key]:,.0f}/s{extra}"
    if "offered_rate" in result:
        late = " BEHIND SCHEDULE" if result["behind_schedule"] else ""
        latency = f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms"
        return f"{latency}, errors {result['errors'] or 0}{late}"
    return ", ".join(f"{k}={v}" for k, v in list(result.items())[:4])


def plan(bench: Bench) -> None:
    send_body = json.dumps({"chat": "bench-a:bench-b", "text": TEXT, "sender": "bench-a"})
    bench.stage("persistence settings", bench.persistence)
    bench.stage("load pull chats (pipelined)", bench.load_chats)
    bench.stage("ceiling: HTTP /ping", lambda: bench.wrk("/ping"))
    bench.stage("ceiling: RPC echo (Health, no Redis)", lambda: bench.thrift("Health"))
    bench.stage("ceiling: redis-benchmark", lambda: bench.redis_benchmark(stream_key(parse_chat(_pull_chat(10_000)))))
    bench.stage("HTTP send", lambda: bench.wrk("/api/send", send_body))
    for size in PULL_SIZES:
        for reverse in (False, True):
            path = f"/api/pull?chat={_pull_chat(size)}&limit=10&reverse={str(reverse).lower()}"
            bench.stage(f"HTTP pull {size:,} {'newest' if reverse else 'oldest'} first", lambda p=path: bench.wrk(p))
    bench.stage(PROFILE, lambda: bench.profile("/api/send", send_body))
    bench.stage("Thrift Send", lambda: bench.thrift("Send"))
    bench.stage("Thrift Pull", lambda: bench.thrift("Pull", _pull_chat(10_000)))
    bench.stage("Kitex Send (Go client, TTHeader)", bench.kitex)
    for rate in OPEN_LOOP_RATES:
        bench.stage(f"open loop send @{rate}/s", lambda r=rate: bench.open_loop("/api/send", r, send_body))
        pull = f"/api/pull?chat={_pull_chat(10_000)}&limit=10&reverse=true"
        bench.stage(f"open loop pull @{rate}/s", lambda r=rate, p=pull: bench.open_loop(p, r))
    bench.stage("Redis memory per message", lambda: _memory())
    # Last: the overload runs leave the stack's queues and pools as overload leaves them.
    bench.stage(CAPACITY, lambda: bench.capacity(send_body))
    bench.stage(AT_CAPACITY, lambda: bench.overloaded(send_body, 1.0, bench.overload_s / 3))
    for factor in OVERLOAD_FACTORS:
        bench.stage(_overload_stage(factor), lambda f=factor: bench.overloaded(send_body, f, bench.overload_s))
    bench.stage(REFUSALS, lambda: bench.refusals(send_body))


PROFILE = "profile: HTTP send (py-spy, 50 Hz)"
CAPACITY = "overload: capacity search (open-loop sends, p99 <= 100 ms)"
AT_CAPACITY = "overload: sends at capacity"
REFUSALS = "overload: every send refused at 2x capacity (RPC server stopped; CPU per refusal)"
OVERLOAD_FACTORS = (1.5, 2.0)


def _overload_stage(factor: float) -> str:
    return f"overload: sends at {factor}x capacity"


def _memory() -> dict[str, Any]:
    with memory.own_redis() as url:
        client = redis.Redis.from_url(url)
        return memory.measure(client, 100_000, 10_000)


def _ok_rps(result: dict[str, Any]) -> float:
    """A wrk run's rate of 2xx answers (results from before `ok_rps` existed: its whole rate)."""
    return float(result.get("ok_rps", result["rps"]))


def ratios_and_targets(r: dict[str, Any]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    ping = r["ceiling: HTTP /ping"]["rps"]
    pulls = {k: v for k, v in r.items() if k.startswith("HTTP pull ")}
    p50 = {k: v["p50_ms"] for k, v in pulls.items()}
    mem = r["Redis memory per message"]
    ratios = {
        # 2xx answers only: refusals are no throughput (and /ping is never refused)
        "send / ping": _ok_rps(r["HTTP send"]) / ping,
        "pull (slowest of the six) / ping": min(_ok_rps(v) for v in pulls.values()) / ping,
        "pull p50, 10^6 / 10^2 chat, oldest first": p50["HTTP pull 1,000,000 oldest first"]
        / p50["HTTP pull 100 oldest first"],
        "pull p50, 10^6 / 10^2 chat, newest first": p50["HTTP pull 1,000,000 newest first"]
        / p50["HTTP pull 100 newest first"],
        "Thrift Send / RPC echo": r["Thrift Send"]["calls_per_s"]
        / r["ceiling: RPC echo (Health, no Redis)"]["calls_per_s"],
        **{f"memory / seed design, {shape}": v["ratio"] for shape, v in mem.items()},
    }
    kitex = r.get("Kitex Send (Go client, TTHeader)", {})
    if "calls_per_s" in kitex:  # (skipped without Go)
        ratios["Kitex Send (TTHeader) / RPC echo"] = (
            kitex["calls_per_s"] / r["ceiling: RPC echo (Health, no Redis)"]["calls_per_s"]
        )
    at_1000 = [r["open loop send @1000/s"], r["open loop pull @1000/s"]]
    targets = [
        {"target": "send >= 0.5 x /ping", "value": ratios["send / ping"], "met": ratios["send / ping"] >= 0.5},
        {
            "target": "pull (limit 10) >= 0.5 x /ping",
            "value": ratios["pull (slowest of the six) / ping"],
            "met": ratios["pull (slowest of the six) / ping"] >= 0.5,
        },
        {
            "target": "pull p50 on 10^6 <= 1.2 x on 10^2",
            "value": max(
                ratios["pull p50, 10^6 / 10^2 chat, oldest first"], ratios["pull p50, 10^6 / 10^2 chat, newest first"]
            ),
            "met": max(
                ratios["pull p50, 10^6 / 10^2 chat, oldest first"], ratios["pull p50, 10^6 / 10^2 chat, newest first"]
            )
            <= 1.2,
        },
        {
            "target": "p99 <= 10 ms at 1000 offered QPS, no errors",
            "value": max(x["p99_ms"] for x in at_1000),
            "met": all(x["p99_ms"] <= 10 and not x["errors"] for x in at_1000),
        },
        {
            "target": "Thrift Send >= 0.7 x RPC echo",
            "value": ratios["Thrift Send / RPC echo"],
            "met": ratios["Thrift Send / RPC echo"] >= 0.7,
        },
        {
            "target": "memory <= 0.5 x seed design, both chat sizes",
            "value": max(v["ratio"] for v in mem.values()),
            "met": all(v["ratio"] <= 0.5 for v in mem.values()),
        },
    ]
    targets += overload_targets(r)
    return ratios, targets


def overload_costs(r: dict[str, Any]) -> tuple[float | None, float | None]:
    """CPU µs of the stack per admitted send (at capacity, bench.overload
    says why) and per refusal."""
    refusal_us = None if "skipped" in r[REFUSALS] else overload.cpu_per_request_us(r[REFUSALS], "refused")
    at_capacity = r.get(AT_CAPACITY, {})
    send_us = None if refusal_us is None or "skipped" in at_capacity else overload.send_cost_us(at_capacity, refusal_us)
    return send_us, refusal_us


def overload_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    capacity = r[CAPACITY]["capacity_per_s"]
    send_us, refusal_us = overload_costs(r)
    targets: list[dict[str, Any]] = []
    if send_us and refusal_us:
        cost = refusal_us / send_us
        targets.append({"target": "overload: CPU of a refusal <= 0.3 x a send's", "value": cost, "met": cost <= 0.3})
    for factor in OVERLOAD_FACTORS:
        run = r[_overload_stage(factor)]
        name = f"overload {factor}x"
        share = run["goodput_per_s"] / capacity if capacity else 0.0
        targets.append({"target": f"{name}: goodput >= 0.5 x capacity", "value": share, "met": share >= 0.5})
        if send_us and refusal_us:
            model = overload.model_goodput(run, send_us, refusal_us)
            if model:
                ratio = run["goodput_per_s"] / model
                targets.append(
                    {
                        "target": f"{name}: goodput within 15% of the CPU model",
                        "value": ratio,
                        "met": abs(ratio - 1) <= 0.15,
                    }
                )
        ok_p99, refused_p99 = run["ok_p99_ms"], run["refused_p99_ms"]
        targets += [
            {
                "target": f"{name}: p99 of admitted sends <= 100 ms",
                "value": ok_p99 if ok_p99 is not None else float("nan"),
                "met": ok_p99 is not None and ok_p99 <= 100,
            },
            {
                "target": f"{name}: p99 of refusals <= 100 ms",
                "value": refused_p99 if refused_p99 is not None else 0.0,
                "met": refused_p99 is None or refused_p99 <= 100,
            },
            {"target": f"{name}: zero client timeouts", "value": run["timeouts"], "met": run["timeouts"] == 0},
            {
                "target": f"{name}: every failure a 503/429 with Retry-After",
                "value": run["requests"] - run["ok"] - run["refused"] + run["refused_without_retry_after"],
                "met": run["requests"] == run["ok"] + run["refused"] and not run["refused_without_retry_after"],
            },
            {
                "target": f"{name}: the generator keeps its schedule (<= 1% dispatched late)",
                "value": overload.generator_share(run),
                "met": not run["behind_schedule"],
            },
        ]
    return targets


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu": model,
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def report(
    results: dict[str, Any], ratios: dict[str, float], targets: list[dict[str, Any]], info: dict[str, Any]
) -> str:
    lines = [
        f"# Benchmark, {info['date']}",
        "",
        f"Machine: {info['machine']['cpus']} CPUs ({info['machine']['cpu']}), {info['machine']['memory_gib']} GiB, "
        f"Linux {info['machine']['kernel']}, Python {info['machine']['python']}. The load generators run on the same "
        "2 cores as the servers.",
        "",
        "Redis: " + ", ".join(f"{k} {v}" for k, v in results["persistence settings"].items()),
        "",
        "| scenario | throughput | p50 ms | p99 ms | max ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if not isinstance(r, dict) or name.startswith("overload:"):
            continue
        if "rps" in r:
            cells = [f"{name} (wrk -c64)", f"{r['rps']:,.0f}/s", r["p50_ms"], r["p99_ms"], "", r["non_2xx"]]
        elif "calls_per_s" in r:
            cells = [f"{name} ({r['connections']} connections)", f"{r['calls_per_s']:,.0f}/s", r["p50_ms"], r["p99_ms"]]
            cells += ["", r["errors"] or 0]
        elif "offered_rate" in r:
            late = " (behind schedule)" if r["behind_schedule"] else ""
            cells = [f"{name}{late}", f"{r['achieved_rate']:,.0f}/s", r["p50_ms"], r["p99_ms"], r["max_ms"]]
            cells += [r["errors"] or 0]
        else:
            continue
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    bench_rb = results["ceiling: redis-benchmark"]
    if "skipped" not in bench_rb:
        for command, rps in bench_rb.items():
            lines.append(f"| redis-benchmark {command} (-c50) | {rps:,.0f}/s | | | | |")
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in ratios.items()]
    lines += ["", "| memory, bytes per 71-byte message | seed design | ours | ours ÷ seed |", "|---|---|---|---|"]
    for shape, m in results["Redis memory per message"].items():
        lines.append(f"| {shape} | {m['seed']:.0f} | {m['ours']:.0f} | {m['ratio']:.2f} |")
    lines += cpu_report(results)
    lines += profile_report(results.get(PROFILE, {}))
    lines += overload_report(results)
    lines += ["", "| target | value | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']:.2f} | {'yes' if t['met'] else 'NO'} |" for t in targets]
    lines += [
        "",
        f"For scale: the seed's reference reported 5016 QPS (Go, a laptop); HTTP send here: "
        f"{results['HTTP send']['rps']:,.0f}/s.",
    ]
    return "\n".join(lines) + "\n"


def cpu_report(results: dict[str, Any]) -> list[str]:
    """CPU µs per request of each tier, in each closed-loop run (from /proc)."""
    rows = [(name, r["cpu_us"]) for name, r in results.items() if isinstance(r, dict) and "cpu_us" in r]
    if not rows:
        return []
    lines = ["", "CPU per request (µs, each tier's processes, from /proc, over the whole run):", ""]
    lines += ["| scenario | HTTP workers | RPC server | Redis | stack |", "|---|---|---|---|---|"]
    for name, us in rows:
        lines.append(f"| {name} | {us['http']} | {us['rpc']} | {us['redis']} | {sum(us.values())} |")
    return lines


def profile_report(result: dict[str, Any]) -> list[str]:
    """The top functions of each Python tier during HTTP sends (bench.profile)."""
    if "http" not in result:
        return ["", f"Profile: {result.get('skipped', 'not run')}."] if result else []
    lines = ["", f"Where the CPU of an HTTP send goes ({PROFILE.split(': ', 1)[1]}; share of each tier's samples):"]
    for tier, label in (("http", "HTTP workers"), ("rpc", "RPC server")):
        lines += ["", f"| {label}: self | % | inclusive | % |", "|---|---|---|---|"]
        tops = zip(result[tier]["self"], result[tier]["inclusive"], strict=False)
        lines += [f"| `{own[0]}` | {own[1]} | `{inc[0]}` | {inc[1]} |" for own, inc in tops]
    return lines


def overload_report(results: dict[str, Any]) -> list[str]:
    capacity = results[CAPACITY]["capacity_per_s"]
    send_us, refusal_us = overload_costs(results)
    lines = [
        "",
        f"Overload (open-loop sends from bench/loadgen, Go; client timeout {overload.CLIENT_TIMEOUT_S:.0f} s). "
        f"Capacity, the highest rate with p99 <= 100 ms: **{capacity:,}/s**. "
        f"Stack CPU per admitted send (at capacity): {send_us} µs; per refusal: {refusal_us} µs.",
        "",
        "| offered | goodput (2xx/s) | ÷ capacity | p99 2xx ms | p99 refused ms | refused | timeouts "
        "| stack CPU (cores): HTTP / RPC / Redis | idle cores | model goodput | generator CPU (cores, share) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in (AT_CAPACITY, *(_overload_stage(f) for f in OVERLOAD_FACTORS), REFUSALS):
        run = results[name]
        if "skipped" in run:
            lines.append(f"| {name}: {run['skipped']} |")
            continue
        wall = run.get("wall_s") or run["elapsed_s"]
        tiers = " / ".join(f"{run.get(f'cpu_{t}_s', float('nan')) / wall:.2f}" for t in ("http", "rpc", "redis"))
        model = overload.model_goodput(run, send_us, refusal_us) if send_us and refusal_us else None
        cells = [
            f"{run['offered_rate']:,.0f}/s ({name.split(': ', 1)[1]})",
            f"{run['goodput_per_s']:,.0f}",
            f"{run['goodput_per_s'] / capacity:.2f}" if capacity else "",
            run["ok_p99_ms"],
            run["refused_p99_ms"],
            f"{run['refused']:,}",
            run["timeouts"],
            tiers,
            f"{run.get('cpu_idle_s', float('nan')) / wall:.2f}",
            f"{model:,.0f}" if model else "",
            f"{run['cpu_s'] / run['elapsed_s']:.2f}, {overload.generator_share(run):.0%}",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right, third) = plt.subplots(1, 3, figsize=(21, 5.5))
    for kind, marker in (("send", "o"), ("pull", "s")):
        runs = [results[f"open loop {kind} @{rate}/s"] for rate in OPEN_LOOP_RATES]
        for stat, style in (("p50_ms", "-"), ("p99_ms", "--"), ("max_ms", ":")):
            left.plot(OPEN_LOOP_RATES, [r[stat] for r in runs], style, marker=marker, label=f"{kind} {stat[:-3]}")
    left.set_xlabel("offered load (requests/s, open loop)")
    left.set_ylabel("latency from scheduled start (ms)")
    left.set_yscale("log")
    left.axhline(10, color="grey", linewidth=0.8)
    left.set_title("Latency against offered load")
    left.legend(fontsize=8)
    bars = {
        name: r.get("rps", r.get("calls_per_s"))
        for name, r in results.items()
        if isinstance(r, dict) and ("rps" in r or "calls_per_s" in r)
    }
    right.barh(list(bars), list(bars.values()), color="#4c72b0")
    right.invert_yaxis()
    right.set_xlabel("requests or calls per second (closed loop)")
    right.set_title("Throughput per scenario")
    right.tick_params(axis="y", labelsize=8)
    plot_overload(results, third)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_overload(results: dict[str, Any], axes: Any) -> None:
    """Goodput and p99 against offered load: the capacity search's runs, then 1.5x and 2x."""
    capacity = results[CAPACITY]["capacity_per_s"]
    runs = [*results[CAPACITY]["points"], results[AT_CAPACITY]]
    runs += [results[_overload_stage(f)] for f in OVERLOAD_FACTORS]
    runs.sort(key=lambda run: run["offered_rate"])
    offered = [run["offered_rate"] for run in runs]
    axes.plot(offered, [run["goodput_per_s"] for run in runs], "-o", color="#4c72b0", label="goodput (2xx/s)")
    axes.plot(offered, offered, ":", color="grey", linewidth=0.8, label="offered")
    axes.axvline(capacity, color="green", linewidth=0.8, label=f"capacity {capacity:,}/s")
    for factor in OVERLOAD_FACTORS:
        run = results[_overload_stage(factor)]
        axes.annotate(
            f"{factor}x",
            (run["offered_rate"], run["goodput_per_s"]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
        )
    axes.set_xlabel("offered sends/s (open loop)")
    axes.set_ylabel("goodput (2xx/s)")
    axes.set_title("Overload: goodput and p99 against offered load")
    latency = axes.twinx()
    for key, style, label in (("ok_p99_ms", "--s", "p99 of 2xx"), ("refused_p99_ms", ":^", "p99 of refusals")):
        points = [(run["offered_rate"], run[key]) for run in runs if run[key] is not None]
        latency.plot([p[0] for p in points], [p[1] for p in points], style, color="#c44e52", label=label)
    latency.set_yscale("log")
    latency.axhline(100, color="#c44e52", linewidth=0.6)
    latency.set_ylabel("p99 latency from scheduled start (ms)")
    handles = axes.get_legend_handles_labels()[0] + latency.get_legend_handles_labels()[0]
    axes.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--http-url", help="a running HTTP server (default: start a stack)")
    parser.add_argument("--rpc-addr", help="its RPC server, host:port")
    parser.add_argument("--redis-url", help="its Redis (bench-* chats are written to it)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per closed-loop run (default 6)")
    parser.add_argument("--quick", action="store_true", help="2 s runs: a smoke test of the benchmark itself")
    parser.add_argument("--overload-s", type=float, default=30.0, help="seconds at 1.5x and at 2x capacity (30)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where to write the results")
    args = parser.parse_args()
    for tool in ("wrk", str(overload.LOADGEN)):
        if not shutil.which(tool):
            parser.error(f"{tool} is not installed (scripts/bench.sh installs it)")
    args.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as cleanup:
        if args.http_url:
            if not (args.rpc_addr and args.redis_url):
                parser.error("--http-url needs --rpc-addr and --redis-url too")
            http_url, rpc_addr, redis_url = args.http_url, args.rpc_addr, args.redis_url
            tiers = None
        else:
            from tests.servers import Stack

            directory = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
            print("starting redis-server, rpc_server and gunicorn on free ports ...", flush=True)
            # The stack as scripts/run.sh starts it: all tiers on this machine, one RPC worker.
            stack = Stack(directory, rpc_workers="1").start()
            cleanup.callback(stack.stop)
            http_url, rpc_addr, redis_url = stack.http.url, f"127.0.0.1:{stack.rpc.port}", stack.redis.url
            tiers = overload.Tiers(stack.http.pid, stack.rpc.pid, stack.redis.pid)
        duration = 2.0 if args.quick else args.duration
        overload_s = 5.0 if args.quick else args.overload_s
        bench = Bench(http_url, rpc_addr, redis_url, duration, args.out, tiers, overload_s)
        plan(bench)
        bench.run()
    ratios, targets = ratios_and_targets(bench.results)
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}
    table = report(bench.results, ratios, targets, info)
    (args.out / "results.md").write_text(table)
    (args.out / "results.json").write_text(
        json.dumps({**info, "results": bench.results, "ratios": ratios, "targets": targets}, indent=2) + "\n"
    )
    plot(bench.results, args.out / "results.png")
    print()
    print(table)
    print(f"written: {args.out / 'results.md'}, results.json, results.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
