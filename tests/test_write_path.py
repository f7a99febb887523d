"""The send path below the Thrift server, against real redis-server
processes: what is acknowledged is stored and replicated as promised,
whatever fails after or around the write."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from rpc_server.chat_id import Chat, parse_chat
from rpc_server.errors import StorageUnavailable
from rpc_server.service import IMService
from rpc_server.storage.conversations import Conversations
from rpc_server.storage.erasure import Erasure
from rpc_server.storage.redis_client import connect_redis
from rpc_server.storage.store import MessageStore
from tests.servers import RedisServer, Stack, wait_until


def _chat() -> Chat:
    tag = uuid.uuid4().hex[:8]
    return parse_chat(f"w-{tag}:z-{tag}")


def _index_failures() -> float:
    return REGISTRY.get_sample_value("conversation_index_failures_total") or 0.0


def _texts(store: MessageStore, chat: Chat) -> list[str]:
    return [m.text for m in store.read(chat, 0, 100, reverse=False).items]


@pytest.mark.parametrize(
    "failure",
    [
        redis.exceptions.SlotNotCoveredError("slot 1 not covered"),
        redis.exceptions.ClusterDownError("down"),
        RuntimeError("bug"),
    ],
    ids=["SlotNotCoveredError", "ClusterDownError", "RuntimeError"],
)
def test_a_failure_after_the_append_still_answers_200(stack: Stack, rpc: Any, failure: Exception) -> None:
    """As on a Cluster, the conversation lists are updated after the append:
    whatever that update raises, the stored message is acknowledged and the
    failure counted (the next send or reindex repairs the list)."""
    store = MessageStore(connect_redis(stack.redis.url, 1.0, 4, 0.5), idempotency_ttl_s=60)
    store.updates_lists_on_append = False  # the lists are updated after the append, as on a Cluster

    def failing(commands: list[tuple[Any, ...]]) -> list[Any]:
        raise failure

    store.run_many = failing  # type: ignore[method-assign]
    service = IMService(rpc, store, Conversations(store), Erasure(store), max_text_chars=100, max_pull_limit=100)
    chat = _chat()
    failures_before = _index_failures()
    message = rpc.Message(Chat=chat.id, Text="stored", Sender=chat.first)
    answer = service.Send(rpc.SendRequest(message=message))
    assert (answer.Code, answer.Msg) == (0, "success")
    assert [m.send_time for m in MessageStore(store.client, 60).read(chat, 0, 10, False).items] == [answer.SendTime]
    assert _index_failures() == failures_before + 1


@pytest.fixture
def busy_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "busy", extra=["--busy-reply-threshold", "50"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_send_refused_busy_is_a_503_not_stored(busy_redis: RedisServer) -> None:
    """Past busy-reply-threshold, Redis answers BUSY to every command while a
    script runs: the send did not run, and says so (not a 500)."""
    store = MessageStore(connect_redis(busy_redis.url, 2.0, 4, 0.5), idempotency_ttl_s=60)
    chat = _chat()
    store.append(chat, chat.first, "before")  # the script is loaded, the connection open
    script = "local t = redis.call('TIME') repeat until redis.call('TIME')[1] - t[1] >= 2 return 1"
    stall = threading.Thread(target=busy_redis.client().eval, args=(script, 0))
    stall.start()
    try:

        def busy() -> bool:
            try:
                busy_redis.client().ping()
            except redis.ResponseError as e:
                return str(e).startswith("BUSY")
            return False

        wait_until(busy, 10, "Redis to answer BUSY")
        with pytest.raises(StorageUnavailable, match=r"busy.*; not stored"):
            store.append(chat, chat.first, "refused")
    finally:
        stall.join()
    assert _texts(store, chat) == ["before"]


class Server(RedisServer):
    """A RedisServer run by another binary: `valkey-server` speaks the same
    protocol, configuration and replication."""

    def __init__(self, binary: str, directory: Path, extra: list[str] | None = None) -> None:
        super().__init__(directory, extra=extra)
        self.argv[0] = binary


# Debian 12's redis-server is 7.0. Since Redis 7.2, and in Valkey (forked
# from 7.2, which the compose and Kubernetes images' redis:7.2 behaves as
# here), WAIT waits for the connection's last *write*, no longer for
# whatever its last command saw: a replay, which writes nothing, would not
# wait at all. valkey-server: Debian bookworm-backports.
SERVERS = [
    "redis-server",
    pytest.param(
        "valkey-server",
        # scripts/test.sh installs it; in CI its absence fails rather than skips.
        marks=pytest.mark.skipif(
            not shutil.which("valkey-server") and not os.environ.get("CI"),
            reason="no valkey-server (bookworm-backports)",
        ),
    ),
]


@pytest.fixture(params=SERVERS)
def replicated(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[RedisServer, RedisServer]]:
    master = Server(request.param, tmp_path / "master")
    master.start()
    replica = Server(request.param, tmp_path / "replica", extra=["--replicaof", "127.0.0.1", str(master.port)])
    try:
        replica.start()
        wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up", 30, "the replica")
        yield master, replica
    finally:
        if replica.alive():
            os.kill(replica.pid, signal.SIGCONT)
        replica.stop()
        master.stop()


def test_a_replay_is_not_acknowledged_before_the_original_is_replicated(
    replicated: tuple[RedisServer, RedisServer],
) -> None:
    """REDIS_WAIT_REPLICAS=1. The original send times out waiting for its
    replica (held back with SIGSTOP): 503, stored on the master only. The
    client retries with the same key through another connection (another
    RPC server, say): the replay must not be acknowledged while the replica
    still lacks the original, or a failover could lose an acknowledged
    send. Once the replica has caught up, the replay is acknowledged, with
    the original's send_time, and nothing more is stored."""
    master, replica = replicated

    def store() -> MessageStore:  # each with its own connections, as each RPC server has
        return MessageStore(
            connect_redis(master.url, 2.0, 4, 0.5), idempotency_ttl_s=60, wait_replicas=1, wait_timeout_ms=200
        )

    first, second = store(), store()
    chat = _chat()
    assert first.append(chat, chat.first, "replicated", key="k0") > 0
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        with pytest.raises(StorageUnavailable, match="not replicated"):
            first.append(chat, chat.first, "original", key="k1")
        with pytest.raises(StorageUnavailable, match="not replicated"):
            second.append(chat, chat.first, "original", key="k1")  # the replay: not acknowledged yet
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    sent = [m.send_time for m in second.read(chat, 0, 10, False).items]

    def replica_caught_up() -> bool:
        return replica.client().xlen(f"im:v1:{{{chat.id}}}:m") == 2

    wait_until(replica_caught_up, 30, "the replica to catch up")
    assert second.append(chat, chat.first, "original", key="k1") == sent[1]
    assert _texts(second, chat) == ["replicated", "original"]
