"""The store, the RPC server and the HTTP API unchanged on a real 3-master
Redis Cluster (REDIS_CLUSTER_NODES): every chat's keys share one hash tag,
so its script runs on one shard, and chats spread over all shards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from rpc_server.chat_id import parse_chat
from rpc_server.storage.conversations import Conversations
from rpc_server.storage.erasure import Erasure
from rpc_server.storage.keys import stream_key, user_chats_key
from rpc_server.storage.redis_client import connect_redis
from rpc_server.storage.store import MessageStore
from tests.conftest import Api
from tests.servers import HttpServer, RedisCluster, RpcServer, scrape_metrics, wait_until


@pytest.fixture(scope="module")
def cluster_servers(cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, RpcServer]]:
    directory = tmp_path_factory.mktemp("cluster-stack")
    rpc = RpcServer(directory, "redis://unused:1/0", REDIS_CLUSTER_NODES=cluster.addresses)
    rpc.start()
    http = HttpServer(directory, rpc.port)
    http.start()
    try:
        yield Api(http.url), rpc
    finally:
        http.stop()
        rpc.stop()


@pytest.fixture(scope="module")
def cluster_api(cluster_servers: tuple[Api, RpcServer]) -> Api:
    return cluster_servers[0]


def _store(cluster: RedisCluster) -> MessageStore:
    return MessageStore(connect_redis("", 1.0, 8, 0.5, cluster.addresses), idempotency_ttl_s=60)


def test_chats_spread_over_every_shard(cluster: RedisCluster) -> None:
    store = _store(cluster)
    tag = uuid.uuid4().hex[:6]
    for i in range(60):
        chat = parse_chat(f"u{i}-{tag}:v{i}-{tag}")
        assert store.append(chat, chat.first, "hello", key=f"k{i}") > 0  # the key's record shares the slot
        assert [m.text for m in store.read(chat, 0, 10, reverse=False).items] == ["hello"]
    sizes = [node.client().dbsize() for node in cluster.nodes]
    assert all(size > 0 for size in sizes), sizes


def test_scripts_are_loaded_again_after_a_flush(cluster: RedisCluster) -> None:
    store = _store(cluster)
    chat = parse_chat(f"flush-{uuid.uuid4().hex[:6]}:x")
    store.append(chat, chat.first, "before")
    for node in cluster.nodes:
        node.client().script_flush()
    store.append(chat, chat.first, "after")  # NOSCRIPT: loaded again, run once
    assert [m.text for m in store.read(chat, 0, 10, reverse=False).items] == ["before", "after"]


def test_the_api_works_unchanged_on_the_cluster(cluster_api: Api) -> None:
    tag = uuid.uuid4().hex[:6]
    chats = [f"a{i}-{tag}:b{i}-{tag}" for i in range(20)]
    sent: dict[str, list[int]] = {}
    for chat in chats:
        a, b = chat.split(":")
        sent[chat] = [cluster_api.send_ok(chat, f"m{n}", (a, b)[n % 2]) for n in range(7)]
    for chat in chats:
        assert [m["send_time"] for m in cluster_api.pull_all(chat, limit=3)] == sent[chat]
        newest: Any = cluster_api.pull_all(chat, reverse=True, limit=2)
        assert [m["send_time"] for m in newest] == sent[chat][::-1]
    key = uuid.uuid4().hex
    first = cluster_api.send(chats[0], "once", chats[0].split(":")[0], key=key)
    again = cluster_api.send(chats[0], "once", chats[0].split(":")[0], key=key)
    assert first.json() == again.json()
    # Conversation lists, updated after the append (another shard): the chat is listed.
    listed = requests.get(cluster_api.base_url + "/api/chats", params={"user": chats[0].split(":")[0]}, timeout=10)
    assert [c["chat"] for c in listed.json()["chats"]] == [chats[0]]
    assert listed.json()["chats"][0]["last_send_time"] == first.json()["send_time"]
    assert cluster_api.session.get(cluster_api.base_url + "/healthz").json()["storage"] == "ok"


def test_conversation_lists_deletion_and_erasure_span_the_shards(cluster: RedisCluster) -> None:
    """A user's list lives on the user's shard, the chats on theirs: lists,
    reindex, deletion and erasure (which scans every master) still agree."""
    store = _store(cluster)
    assert not store.updates_lists_on_append  # the lists live on other shards
    conversations, erasure = Conversations(store), Erasure(store)
    tag = uuid.uuid4().hex[:6]
    user = f"hub-{tag}"
    # Each peer a random name of its own: names differing in one digit have
    # correlated CRC16 slots, which all fell on one shard in a CI run.
    chats = [parse_chat(f"{user}:p-{uuid.uuid4().hex[:8]}") for _ in range(12)]
    for chat in chats:
        conversations.touch(chat, store.append(chat, chat.second, "hi"))
    slots = {cluster.shard_of(stream_key(chat))[0] for chat in chats}
    assert len(slots) > 1  # the chats really are on several shards

    listed = conversations.list(user, 0, 100).items
    assert [s.chat for s in listed] == chats[::-1]
    store.client.delete(user_chats_key(user))
    assert conversations.rebuild()["chats"] >= len(chats)
    assert [s.chat for s in conversations.list(user, 0, 100).items] == chats[::-1]

    assert erasure.delete_chat(chats[0]).chats == 1
    assert chats[0] not in [s.chat for s in conversations.list(user, 0, 100).items]
    erased = erasure.erase_user(user, budget_s=60)
    assert (erased.chats, erased.messages, erased.done) == (11, 11, True)
    assert conversations.list(user, 0, 100).items == []
    assert all(store.read(chat, 0, 10, reverse=False).items == [] for chat in chats)
    assert conversations.list(chats[1].second, 0, 10).items == []


def test_a_waiting_pull_is_woken_on_the_cluster(cluster_servers: tuple[Api, RpcServer]) -> None:
    """Sharded pub/sub: the send script publishes on the chat's shard, where
    the RPC server's subscription for that chat lives."""
    api, rpc = cluster_servers
    metrics = f"http://127.0.0.1:{rpc.metrics_port}/metrics"
    tag = uuid.uuid4().hex[:6]
    for i in range(6):  # several chats, so that several shards take part
        chat = f"lp{i}-{tag}:q-{tag}"
        with ThreadPoolExecutor(1) as pool:
            params = {"chat": chat, "cursor": 0, "wait": 20}
            pending = pool.submit(requests.get, api.base_url + "/api/pull", params=params, timeout=30)
            wait_until(lambda: scrape_metrics(metrics)["rpc_pulls_waiting"] >= 1, 60, "the pull to wait")
            sent = api.send_ok(chat, "wake", chat.split(":")[0])
            assert [m["send_time"] for m in pending.result().json()["messages"]] == [sent]
