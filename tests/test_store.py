"""The message store against a real redis-server: send_time assignment,
key layout, and failure mapping, below the Thrift service."""

from __future__ import annotations

import uuid

import pytest
import redis

from rpc_server.chat_id import parse_chat
from rpc_server.errors import IdempotencyConflict, StorageUnavailable
from rpc_server.storage.keys import idempotency_key, stream_key
from rpc_server.storage.redis_client import connect_redis
from rpc_server.storage.store import MessageStore
from tests.servers import Stack, free_port


def _chat() -> str:
    tag = uuid.uuid4().hex[:8]
    return f"x-{tag}:y-{tag}"


def test_keys_are_versioned_and_share_the_chat_hash_tag() -> None:
    chat = parse_chat("B:a")
    assert stream_key(chat) == "im:v1:{a:b}:m"
    assert idempotency_key(chat, "k1") == "im:v1:{a:b}:k:k1"


def test_send_time_is_bumped_past_a_future_last_message(stack: Stack, store: MessageStore) -> None:
    """If Redis's clock goes back (or another server's ran ahead), send_times
    still increase strictly within the chat."""
    chat = parse_chat(_chat())
    future = 4_000_000_000_000_000  # year 2096, in microseconds
    stack.redis.client().xadd(stream_key(chat), {"s": "x", "t": "from the future"}, id=f"{future}-0")
    assert store.append(chat, chat.first, "now") == future + 1
    assert store.append(chat, chat.first, "now") == future + 2


def test_send_time_stays_increasing_after_the_stream_is_trimmed_empty(stack: Stack, store: MessageStore) -> None:
    chat = parse_chat(_chat())
    future = 4_000_000_000_000_000
    client = stack.redis.client()
    client.xadd(stream_key(chat), {"s": "x", "t": "old"}, id=f"{future}-0")
    client.xtrim(stream_key(chat), maxlen=0)
    assert client.xlen(stream_key(chat)) == 0
    assert store.append(chat, chat.first, "after trim") == future + 1


def test_stored_fields_and_read_back(stack: Stack, store: MessageStore) -> None:
    chat = parse_chat(_chat())
    t = store.append(chat, chat.second, "hi")
    [(entry_id, fields)] = stack.redis.client().xrange(stream_key(chat))
    assert entry_id == f"{t}-0"
    assert fields == {"s": chat.second, "t": "hi"}
    page = store.read(chat, 0, 10, reverse=False)
    assert [(m.send_time, m.sender, m.text) for m in page.items] == [(t, chat.second, "hi")]


def test_idempotency_record_expires(stack: Stack, store: MessageStore) -> None:
    chat = parse_chat(_chat())
    t = store.append(chat, chat.first, "hi", key="k")
    assert store.append(chat, chat.first, "hi", key="k") == t
    with pytest.raises(IdempotencyConflict):
        store.append(chat, chat.first, "other", key="k")
    ttl = stack.redis.client().ttl(idempotency_key(chat, "k"))
    assert 0 < ttl <= 60


def test_unreachable_redis_raises_storage_unavailable() -> None:
    store = MessageStore(connect_redis(f"redis://127.0.0.1:{free_port()}/0", 0.2, 2, 0.2), 60)
    chat = parse_chat("a:b")
    with pytest.raises(StorageUnavailable):
        store.append(chat, "a", "x")
    with pytest.raises(StorageUnavailable):
        store.read(chat, 0, 10, reverse=False)


def test_out_of_memory_raises_storage_unavailable_and_stores_nothing(stack: Stack, store: MessageStore) -> None:
    client = stack.redis.client()
    chat = parse_chat(_chat())
    configured = client.config_get("maxmemory")["maxmemory"]
    client.config_set("maxmemory", "1")
    try:
        with pytest.raises(StorageUnavailable, match="storage full"):
            store.append(chat, chat.first, "x")
    finally:
        client.config_set("maxmemory", configured)
    assert client.exists(stream_key(chat)) == 0


def test_no_command_is_retried(stack: Stack) -> None:
    """redis-py retries by default; a retried script after a timeout could
    store a message twice."""
    client = connect_redis(stack.redis.url, 1.0, 2, 0.5)
    retry = client.connection_pool.connection_kwargs["retry"]
    assert retry.get_retries() == 0
    assert isinstance(client.connection_pool, redis.BlockingConnectionPool)


def test_with_wait_replicas_a_send_without_a_replica_is_not_acknowledged(stack: Stack) -> None:
    """REDIS_WAIT_REPLICAS=1 on a Redis with no replica: WAIT confirms nobody,
    so the send is not acknowledged (503, outcome unknown), though stored."""
    client = connect_redis(stack.redis.url, 1.0, 4, 0.5)
    store = MessageStore(client, idempotency_ttl_s=60, wait_replicas=1, wait_timeout_ms=50)
    chat = parse_chat(_chat())
    with pytest.raises(StorageUnavailable, match="not replicated"):
        store.append(chat, chat.first, "unreplicated")
    assert [m.text for m in store.read(chat, 0, 10, reverse=False).items] == ["unreplicated"]
