"""A far-future send_time must not poison a chat (issue 12, item 2).

send.lua computes in Lua numbers (doubles), exact only below 2^53 µs (year
2255). A chat whose last stream ID lies beyond that (written by an older
migration of a seed row dated in 2258, or of a row holding milliseconds in
its seconds field) must still take sends, with exact, strictly increasing
send_times; at the very end of the i64 range a send is refused with a clear
409, never a 500. The migration refuses rows dated after now + its skew.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from rpc_server.chat_id import parse_chat
from rpc_server.errors import ServiceError
from rpc_server.storage.keys import stream_key, user_chats_key
from rpc_server.storage.store import MessageStore
from tests.conftest import Api
from tests.servers import Stack
from tests.test_migrate_seed import run_subprocess, write_seed

I64_MAX = 2**63 - 1
YEAR_2258_US = 9_088_000_000_000_123  # > 2**53: a double cannot hold it, nor its successor
assert YEAR_2258_US > 2**53
MS_AS_SECONDS_US = 1_684_758_444_000 * 10**6  # the seed's example timestamp in ms, taken for seconds


def _chat() -> str:
    tag = uuid.uuid4().hex[:8]
    return f"f-{tag}:g-{tag}"


@pytest.mark.parametrize("last", [YEAR_2258_US, MS_AS_SECONDS_US, 2**53, 2**53 + 1])
def test_sends_after_a_last_id_beyond_2_53_are_exact_and_increasing(
    stack: Stack, store: MessageStore, last: int
) -> None:
    chat = parse_chat(_chat())
    stack.redis.client().xadd(stream_key(chat), {"s": chat.first, "t": "far"}, id=f"{last}-0")
    first = store.append(chat, chat.first, "one")
    second = store.append(chat, chat.second, "two", key="k")
    assert (first, second) == (last + 1, last + 2)
    assert store.append(chat, chat.second, "two", key="k") == second  # a replay
    ids = [entry_id for entry_id, _ in stack.redis.client().xrange(stream_key(chat))]
    assert ids == [f"{last}-0", f"{last + 1}-0", f"{last + 2}-0"]
    assert [m.send_time for m in store.read(chat, last + 1, 10, reverse=False).items] == [last + 1, last + 2]


def test_sends_after_the_stream_was_emptied_past_2_53_are_exact(stack: Stack, store: MessageStore) -> None:
    chat = parse_chat(_chat())
    client = stack.redis.client()
    client.xadd(stream_key(chat), {"s": chat.first, "t": "far"}, id=f"{MS_AS_SECONDS_US}-0")
    client.xtrim(stream_key(chat), maxlen=0)
    assert store.append(chat, chat.first, "after") == MS_AS_SECONDS_US + 1


@pytest.mark.parametrize("last", [I64_MAX, 2**64 - 1])
def test_a_chat_at_the_end_of_the_i64_range_refuses_sends_with_409(
    stack: Stack, store: MessageStore, last: int
) -> None:
    chat = parse_chat(_chat())
    client = stack.redis.client()
    client.xadd(stream_key(chat), {"s": chat.first, "t": "last possible"}, id=f"{last}-0")
    with pytest.raises(ServiceError) as refused:
        store.append(chat, chat.first, "one more", key="k")
    assert refused.value.code == 409, refused.value
    assert "send_time" in refused.value.msg
    assert client.xlen(stream_key(chat)) == 1  # nothing stored
    assert client.exists(f"im:v1:{{{chat.id}}}:k:k") == 0


def test_over_http_a_far_future_chat_still_takes_sends_and_the_last_one_is_a_409(stack: Stack) -> None:
    api = Api(stack.http.url)
    client = stack.redis.client()
    far, end = parse_chat(_chat()), parse_chat(_chat())
    client.xadd(stream_key(far), {"s": far.first, "t": "2258"}, id=f"{YEAR_2258_US}-0")
    client.xadd(stream_key(end), {"s": end.first, "t": "end"}, id=f"{I64_MAX}-0")
    r = api.send(far.id, "hello", far.first)
    assert r.status_code == 200, r.text
    assert r.json()["send_time"] == YEAR_2258_US + 1
    r = api.send(end.id, "hello", end.first)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == 409 and "send_time" in r.json()["msg"]


def _sends(api: Api, chat: str, sender: str, n: int) -> list[int]:
    statuses = []
    for i in range(n):
        r: requests.Response = api.send(chat, f"after the migration {i}", sender)
        statuses.append(r.status_code)
    return statuses


def test_the_migration_refuses_rows_dated_in_the_future_and_the_chat_keeps_working(stack: Stack) -> None:
    """The issue's reproduction: one seed row dated 2258, one holding
    milliseconds in the seconds field; each used to make every later send
    to its chat answer 500."""
    tag = uuid.uuid4().hex[:8]
    a, b = f"a-{tag}", f"b-{tag}"
    chat = f"{a}:{b}"
    now = int(time.time())
    year_2258 = 9_088_000_000
    write_seed(
        stack.redis.client(),
        chat,
        [
            (a, "a normal one", now - 60),
            (b, "within the skew", now + 60),
            (a, "dated 2258", year_2258),
            (b, "milliseconds in the seconds field", now * 1000),
        ],
    )
    code, report, stderr = run_subprocess({"REDIS_URL": stack.redis.url}, "--match", chat)
    assert code == 0, stderr
    assert report["invalid_reasons"] == {"timestamp_future": 2}, report
    assert report["messages_added"] == 2
    assert "dated after" in stderr  # the human summary names the reason
    client = stack.redis.client()
    last = client.xrevrange(stream_key(parse_chat(chat)), count=1)[0][0]
    assert int(last.split("-")[0]) == (now + 60) * 10**6
    assert client.zscore(user_chats_key(a), chat) == (now + 60) * 10**6
    api = Api(stack.http.url)
    assert _sends(api, chat, a, 3) == [200, 200, 200]


def test_the_migrations_skew_is_a_flag(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    chat = f"a-{tag}:b-{tag}"
    now = int(time.time())
    write_seed(stack.redis.client(), chat, [(f"a-{tag}", "in two hours", now + 7200)])
    code, report, _ = run_subprocess({"REDIS_URL": stack.redis.url}, "--match", chat, "--dry-run")
    assert code == 0 and report["invalid_reasons"] == {"timestamp_future": 1}
    code, report, _ = run_subprocess({"REDIS_URL": stack.redis.url}, "--match", chat, "--max-future-s", "86400")
    assert code == 0 and report["messages_added"] == 1 and report["messages_invalid"] == 0


def test_a_negative_skew_is_refused(stack: Stack) -> None:
    code, _, stderr = run_subprocess({"REDIS_URL": stack.redis.url}, "--max-future-s", "-1")
    assert code == 2 and "--max-future-s" in stderr
