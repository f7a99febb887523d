"""Real servers for the tests: redis-server, rpc_server and gunicorn, each a
child process on a free port, with its output in a log file, started and
stopped by PID. Waiting is always on a condition with a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import requests
from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.transport import TCyBufferedTransportFactory

ROOT = Path(__file__).resolve().parent.parent
REDIS_CONF = ROOT / "deploy" / "redis.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll `condition` until it is true. The deadline is generous on purpose
    (the machine may be busy); on failure the message names what was awaited
    and the last exception the condition raised, if any."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            if condition():
                return
        except Exception as e:
            last_error = e
        if time.monotonic() > deadline:
            why = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{why}")
        time.sleep(0.02)


class Process:
    """A child process with its output in `log_path`."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        # TMPDIR: the test's own folder, so that what a server killed with -9
        # could not remove (its metrics folder) is not left in the system's.
        self.env = {**os.environ, "TMPDIR": str(log_path.parent), **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines of the log, parsed (not matched as text: how the
        servers space their JSON is theirs to choose)."""
        lines = []
        for text in self.log().splitlines():
            with contextlib.suppress(ValueError):
                line = json.loads(text)
                if isinstance(line, dict):
                    lines.append(line)
        return lines

    def wait_ready(self, ready: Callable[[], object], timeout: float = 60.0) -> None:
        try:
            wait_until(lambda: self._check_alive() and ready(), timeout, f"{self.name} to start")
        except TimeoutError:
            raise RuntimeError(f"{self.name} did not start; its log:\n{self.log()[-3000:]}") from None

    def _check_alive(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited; its log:\n{self.log()[-3000:]}")
        return True


def scrape_metrics(url: str) -> dict[str, float]:
    """A Prometheus /metrics page as {sample with labels: value}."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def thrift_client(rpc: Any, port: int, timeout_ms: int = 20000) -> Any:
    """A thriftpy2 client (Cython transports, strict binary, buffered) to an RPC server on this machine."""
    return make_client(
        rpc.IMService,
        "127.0.0.1",
        port,
        proto_factory=TCyBinaryProtocolFactory(),
        trans_factory=TCyBufferedTransportFactory(),
        timeout=timeout_ms,
    )


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


class RedisServer(Process):
    def __init__(
        self, directory: Path, port: int | None = None, extra: list[str] | None = None, password: str | None = None
    ) -> None:
        """`password`: the default user's (requirepass), which client() gives."""
        self.port = port or free_port()
        self.password = password
        directory.mkdir(parents=True, exist_ok=True)
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        super().__init__(
            "redis-server",
            ["redis-server", str(REDIS_CONF), "--port", str(self.port), "--dir", str(directory), *auth, *(extra or [])],
            directory / "redis.log",
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, decode_responses=True, socket_timeout=5)

    def start(self) -> None:
        super().start()
        self.wait_ready(lambda: self.client().ping())


class RedisCluster:
    """A real Redis Cluster: `masters` redis-server processes in cluster mode
    (our redis.conf), joined by `redis-cli --cluster create`."""

    def __init__(
        self,
        directory: Path,
        masters: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 15000,
        node: Callable[..., RedisServer] = RedisServer,
    ) -> None:
        """`node(directory, extra=[…])` makes each node: a RedisServer by default."""
        # A loose node timeout by default, so that a busy 2-core machine does not fail over by accident.
        settings = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        settings += ["--cluster-node-timeout", str(node_timeout_ms)]
        # A shard without a master must not stop the others (Redis's default stops them all).
        settings += ["--cluster-require-full-coverage", "no"]
        self.replicas = replicas
        self.nodes = [
            node(directory / f"node{i}", extra=[*settings, "--cluster-port", str(free_port())])
            for i in range(masters * (1 + replicas))
        ]

    @property
    def addresses(self) -> str:
        """REDIS_CLUSTER_NODES for these nodes."""
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        argv = ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes]]
        password = self.nodes[0].password
        subprocess.run(
            [*argv, "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True,
            capture_output=True,
            env={**os.environ, "REDISCLI_AUTH": password} if password else None,
        )
        wait_until(lambda: all(self._state_ok(node) for node in self.nodes), 30, "the cluster to be ok")
        if self.replicas:
            wait_until(self._replicas_in_place, 30, "every shard's replicas")
        return self

    def _replicas_in_place(self) -> bool:
        shards = self.nodes[0].client().execute_command("CLUSTER", "SLOTS")
        return all(len(shard) - 3 >= self.replicas for shard in shards)

    def node(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def shard_of(self, key: str) -> tuple[int, list[int]]:
        """(master port, replica ports) of the shard holding `key`, as the cluster now says."""
        client = next(n for n in self.nodes if n.alive()).client()
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, master, *replicas in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1]), [int(r[1]) for r in replicas]
        raise AssertionError(f"slot {slot} not covered")

    @staticmethod
    def role(node: RedisServer) -> str:
        return str(node.client().execute_command("ROLE")[0])

    @staticmethod
    def _state_ok(node: RedisServer) -> bool:
        info = node.client().execute_command("CLUSTER", "INFO")
        return "cluster_state:ok" in str(info)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class EtcdServer(Process):
    """A real etcd (Debian's etcd-server) on free ports."""

    def __init__(self, directory: Path) -> None:
        self.port, peer = free_port(), free_port()
        directory.mkdir(parents=True, exist_ok=True)
        peer_url = f"http://127.0.0.1:{peer}"
        argv = ["etcd", "--data-dir", str(directory / "data"), "--name", "test"]
        argv += ["--listen-client-urls", f"http://127.0.0.1:{self.port}", "--advertise-client-urls", self.url]
        argv += ["--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url]
        argv += ["--initial-cluster", f"test={peer_url}"]
        super().__init__("etcd", argv, directory / "etcd.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        self.wait_ready(lambda: requests.get(self.url + "/health", timeout=1).json()["health"] == "true")


class RpcServer(Process):
    def __init__(self, directory: Path, redis_url: str, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.metrics_port = free_port()
        argv = [sys.executable, "-m", "rpc_server", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--metrics-port", str(self.metrics_port), "--workers", env.pop("RPC_WORKERS", "1")]
        super().__init__("rpc_server", argv, directory / f"rpc-{self.port}.log", {"REDIS_URL": redis_url, **env})

    def start(self) -> None:
        super().start()
        self.wait_ready(lambda: _port_open(self.port))


class HttpServer(Process):
    def __init__(self, directory: Path, rpc_port: int, port: int | None = None, workers: int = 2, **env: str) -> None:
        self.port = port or free_port()
        super().__init__(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "http_server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            directory / f"http-{self.port}.log",
            {"RPC_ADDR": f"127.0.0.1:{rpc_port}", **env},
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGQUIT, timeout: float = 15.0) -> None:
        """SIGQUIT: gunicorn's quick shutdown; the tests that are about the
        graceful one (SIGTERM) send it themselves."""
        super().stop(sig, timeout)

    def start(self) -> None:
        super().start()
        self.wait_ready(lambda: requests.get(self.url + "/ping", timeout=1).status_code == 200)


ADMIN_TOKEN = "test-admin-token"


class Stack:
    """Redis, an RPC server (with ADMIN_TOKEN) and gunicorn, wired together."""

    def __init__(self, directory: Path, rpc_workers: str = "1") -> None:
        """`rpc_workers` "0": the production default (the CPUs available)."""
        self.redis = RedisServer(directory / "redis")
        self.rpc = RpcServer(directory, self.redis.url, RPC_WORKERS=rpc_workers, ADMIN_TOKEN=ADMIN_TOKEN)
        self.http = HttpServer(directory, self.rpc.port)

    def start(self) -> Stack:
        for server in (self.redis, self.rpc, self.http):
            server.start()
        return self

    def stop(self) -> None:
        for server in (self.http, self.rpc, self.redis):
            server.stop()


__all__ = [
    "HttpServer",
    "RedisServer",
    "RpcServer",
    "Stack",
    "free_port",
    "scrape_metrics",
    "signal",
    "thrift_client",
    "wait_until",
]
