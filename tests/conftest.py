"""Shared fixtures: one real stack (redis-server, rpc_server, gunicorn) per
test session, and helpers to talk to it over HTTP and Thrift."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.transport import TCyBufferedTransportFactory, TCyFramedTransportFactory

import idl
from rpc_server.storage.redis_client import connect_redis
from rpc_server.storage.store import MessageStore
from tests.servers import EtcdServer, RedisCluster, Stack


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="leave out the tests marked slow (local iteration; every test file keeps at least one test)",
    )


FAST_PER_FILE = 1  # --fast: a smoke run of every file (one test each); the whole suite (CI) runs everything


@pytest.hookimpl(tryfirst=True)  # before -k and -m: the check is about the whole collection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--fast leaves out the slow tests and runs at most FAST_PER_FILE test
    functions a file, each with its first parameters only; in a whole-suite
    run it refuses to leave a file with no test. Then the heaviest files go first."""
    if config.getoption("--fast"):
        files = {item.path for item in items}
        kept, seen, per_file = [], set(), Counter[Any]()
        for item in items:  # its first parameters only, and at most FAST_PER_FILE functions a file
            function = (item.path, getattr(item, "originalname", item.name))
            if item.get_closest_marker("slow") is None and function not in seen and per_file[item.path] < FAST_PER_FILE:
                seen.add(function)
                per_file[item.path] += 1
                kept.append(item)
        left_out = sorted(str(path.name) for path in files - {item.path for item in kept})
        if left_out and config.args_source == pytest.Config.ArgsSource.TESTPATHS:
            raise pytest.UsageError(f"--fast would run no test of {', '.join(left_out)}: mark fewer of them slow")
        kept_ids = {id(item) for item in kept}
        config.hook.pytest_deselected(items=[item for item in items if id(item) not in kept_ids])
        items[:] = kept
    items[:] = _heaviest_files_first(items)


def _weight(item: pytest.Item) -> int:
    """A rough cost: a slow test ~ 20 ordinary ones, a fault test ~ 8."""
    return 20 if item.get_closest_marker("slow") else 8 if item.get_closest_marker("fault") else 1


def _heaviest_files_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """Whole files, the heaviest first. pytest-xdist's --dist loadfile hands a
    worker the next file whenever it runs low, in this order (scripts/test.sh
    passes --no-loadscope-reorder: by default it orders by test count), so
    long files start at once instead of ending the run alone."""
    by_file: dict[Any, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(item.path, []).append(item)
    files = sorted(by_file, key=lambda path: -sum(_weight(item) for item in by_file[path]))
    return [item for path in files for item in by_file[path]]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("stack"))
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster shared by a test file's tests."""
    c = RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of this test's own, for tests that kill or stop its parts."""
    s = Stack(tmp_path)
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture
def store(stack: Stack) -> MessageStore:
    """The message store on the session's Redis, in this process."""
    return MessageStore(connect_redis(stack.redis.url, 1.0, 4, 0.5), idempotency_ttl_s=60)


@pytest.fixture(scope="session")
def rpc() -> Any:
    return idl.load_rpc()


class Api:
    """The HTTP API of a running stack."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def send(self, chat: str, text: str, sender: str, key: str | None = None) -> requests.Response:
        headers = {"Idempotency-Key": key} if key else {}
        body = {"chat": chat, "text": text, "sender": sender}
        return self.session.post(self.base_url + "/api/send", json=body, headers=headers, timeout=10)

    def send_ok(self, chat: str, text: str, sender: str) -> int:
        r = self.send(chat, text, sender)
        assert r.status_code == 200, r.text
        return int(r.json()["send_time"])

    def pull(self, chat: str, **fields: Any) -> requests.Response:
        """The seed's form: GET with a JSON body."""
        return self.session.get(self.base_url + "/api/pull", json={"chat": chat, **fields}, timeout=10)

    def pull_ok(self, chat: str, **fields: Any) -> dict[str, Any]:
        r = self.pull(chat, **fields)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def pull_all(self, chat: str, reverse: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        cursor = 0
        while True:
            page = self.pull_ok(chat, cursor=cursor, limit=limit, reverse=reverse)
            messages += page["messages"]
            if not page["has_more"]:
                return messages
            cursor = page["next_cursor"]


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api(stack.http.url)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """A real etcd, for the tests of registration and discovery."""
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def chat() -> str:
    """A chat no other test uses: "<a-...>:<b-...>", already canonical."""
    tag = uuid.uuid4().hex[:10]
    return f"alice-{tag}:bob-{tag}"


ThriftClientFactory = Callable[..., Any]


@pytest.fixture
def thrift_client(stack: Stack, rpc: Any) -> Iterator[ThriftClientFactory]:
    """make(framed=False, port=None): a thriftpy2 client with Cython
    transports, strict binary, buffered or framed."""
    clients: list[Any] = []

    def make(framed: bool = False, port: int | None = None) -> Any:
        transport = TCyFramedTransportFactory() if framed else TCyBufferedTransportFactory()
        client = make_client(
            rpc.IMService,
            "127.0.0.1",
            port or stack.rpc.port,
            proto_factory=TCyBinaryProtocolFactory(),
            trans_factory=transport,
            timeout=5000,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
