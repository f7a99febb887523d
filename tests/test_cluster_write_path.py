"""The write path on a real 3-master Redis Cluster when a slot moves or is
served by nobody: such a command did not run, so it is an error (a send
"not stored"), never sent again by a library; and a send already stored is
acknowledged whatever happens to its conversation-list update after it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import gevent
import pytest
import redis
from redis.cluster import PRIMARY
from redis.crc import key_slot

from rpc_server.chat_id import Chat, parse_chat
from rpc_server.errors import StorageUnavailable
from rpc_server.storage.keys import stream_key, user_chats_key
from rpc_server.storage.redis_client import connect_redis
from rpc_server.storage.store import MessageStore
from tests.servers import RedisCluster, RedisServer, RpcServer, scrape_metrics, thrift_client, wait_until


def _store(cluster: RedisCluster, lanes: int = 2) -> MessageStore:
    return MessageStore(connect_redis("", 1.0, 8, 0.5, cluster.addresses), idempotency_ttl_s=60, pipeline_lanes=lanes)


def _texts(cluster: RedisCluster, chat: Chat) -> list[str]:
    port = cluster.nodes[0].port
    client = redis.RedisCluster(host="127.0.0.1", port=port, decode_responses=True, require_full_coverage=False)
    try:
        return [fields["t"] for _, fields in client.xrange(stream_key(chat))]
    finally:
        client.close()


@pytest.mark.parametrize("lanes", [2, 0], ids=["pipelined", "unpipelined"])
def test_a_moved_reply_is_not_stored_and_not_sent_again(cluster: RedisCluster, lanes: int) -> None:
    """The client's slot map sends the chat's script to a node that does not
    serve its slot: MOVED. The send answers "not stored" (it did not run,
    and nothing runs it again); the map is read again, and the next send
    goes to the right node."""
    store = _store(cluster, lanes)
    chat = parse_chat(f"moved-{uuid.uuid4().hex[:8]}:x")
    slot = key_slot(stream_key(chat).encode())
    nodes = store.client.nodes_manager
    right = nodes.slots_cache[slot][0].name
    nodes.slots_cache[slot] = [
        next(n for n in nodes.nodes_cache.values() if n.server_type == PRIMARY and n.name != right)
    ]
    with pytest.raises(StorageUnavailable, match="not stored"):
        store.append(chat, chat.first, "sent to the wrong node")
    assert _texts(cluster, chat) == []

    def map_read_again() -> bool:
        gevent.sleep(0.01)  # the refresh runs in a greenlet
        return bool(nodes.slots_cache[slot][0].name == right)

    wait_until(map_read_again, 10, "the slot map to be read again")
    store.append(chat, chat.first, "sent to the right node")
    assert _texts(cluster, chat) == ["sent to the right node"]


def _masters(cluster: RedisCluster) -> list[RedisServer]:
    return [n for n in cluster.nodes if cluster.role(n) == "master"]


def _chat_with_list_elsewhere(tag: str) -> tuple[Chat, int]:
    """A chat, and the slot of its first member's conversation list: not
    the chat's own slot nor its other member's list's."""
    while True:
        chat = parse_chat(f"u-{tag}-{uuid.uuid4().hex[:6]}:v-{tag}-{uuid.uuid4().hex[:6]}")
        slot = key_slot(user_chats_key(chat.first).encode())
        others = {key_slot(stream_key(chat).encode()), key_slot(user_chats_key(chat.second).encode())}
        if slot not in others:
            return chat, slot


def _uncover(cluster: RedisCluster, slot: int) -> int:
    """Make `slot` served by no master, in every node's view; return the
    port of its master, to give it back later."""
    slots = cluster.nodes[0].client().execute_command("CLUSTER", "SLOTS")
    owner = next(int(master[1]) for start, end, master, *_ in slots if start <= slot <= end)
    for node in _masters(cluster):
        node.client().execute_command("CLUSTER", "DELSLOTS", slot)
    return owner


def _covered(cluster: RedisCluster, slot: int) -> bool:
    for node in _masters(cluster):
        slots = node.client().execute_command("CLUSTER", "SLOTS")
        if not any(start <= slot <= end for start, end, *_ in slots):
            return False
    return True


@pytest.mark.parametrize("lanes", ["2", "0"], ids=["pipelined", "unpipelined"])
def test_a_stored_send_is_acknowledged_when_its_list_update_fails(
    cluster: RedisCluster, tmp_path: Path, rpc: Any, lanes: str
) -> None:
    """The slot of a member's conversation list is served by nobody (its
    master gave it up): sends in that chat are stored and answered 200, the
    failed list update counted; once the slot is served again, the next
    send repairs the list."""
    chat, slot = _chat_with_list_elsewhere(uuid.uuid4().hex[:6])
    owner = _uncover(cluster, slot)
    server = RpcServer(
        tmp_path, "redis://unused:1/0", REDIS_CLUSTER_NODES=cluster.addresses, REDIS_PIPELINE_LANES=lanes
    )
    try:
        server.start()  # with a slot served by nobody: the others are served
        _check_acknowledged_and_repaired(cluster, server, rpc, chat, slot, owner)
    finally:
        if not _covered(cluster, slot):
            cluster.node(owner).client().execute_command("CLUSTER", "ADDSLOTS", slot)
        server.stop()


def _check_acknowledged_and_repaired(
    cluster: RedisCluster, server: RpcServer, rpc: Any, chat: Chat, slot: int, owner: int
) -> None:
    client = thrift_client(rpc, server.port)
    metrics = f"http://127.0.0.1:{server.metrics_port}/metrics"
    try:
        wait_until(lambda: scrape_metrics(metrics), 20, "the metrics port")
        failures_before = scrape_metrics(metrics).get("conversation_index_failures_total", 0)
        texts = [f"while uncovered {i}" for i in range(4)]
        for text in texts:
            message = rpc.Message(Chat=chat.id, Text=text, Sender=chat.second)
            answer = client.Send(rpc.SendRequest(message=message))
            assert (answer.Code, answer.Msg) == (0, "success"), text
        assert _texts(cluster, chat) == texts
        failures = scrape_metrics(metrics)["conversation_index_failures_total"] - failures_before
        assert failures == len(texts)
        listed = client.ListChats(rpc.ListChatsRequest(User=chat.second))
        assert [c.Chat for c in listed.Chats] == [chat.id]  # the other member's list was updated

        cluster.node(owner).client().execute_command("CLUSTER", "ADDSLOTS", slot)
        wait_until(lambda: _covered(cluster, slot), 30, "the slot to be served again")

        def repaired() -> bool:  # the RPC server reads the slot map again after a failure
            message = rpc.Message(Chat=chat.id, Text="after", Sender=chat.second)
            assert client.Send(rpc.SendRequest(message=message)).Code == 0
            listed = client.ListChats(rpc.ListChatsRequest(User=chat.first))
            return bool(listed.Code == 0 and [c.Chat for c in listed.Chats] == [chat.id])

        wait_until(repaired, 30, "the next send to repair the list")
    finally:
        client.close()
