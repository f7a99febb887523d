"""When Redis is full (maxmemory reached; deploy/redis.conf never evicts):
sends get 503 "storage full; not stored" with Retry-After and store nothing, every
message acknowledged before is still there, reads keep working, the RPC
server counts the refusals, and raising maxmemory at run time lets sends
through again without restarting anything."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import Api
from tests.servers import Stack, scrape_metrics

pytestmark = pytest.mark.fault  # reconfigures its own redis-server at run time

CHAT = "alice:bob"
PADDING = "x" * 4000  # near MAX_TEXT_CHARS: Redis fills in a few hundred sends
HEADROOM_BYTES = 512 * 1024  # maxmemory is set this far above what Redis uses at the start
MAX_SENDS, DEADLINE_S = 2000, 60.0


def _rpc_metrics(stack: Stack) -> dict[str, float]:
    return scrape_metrics(f"http://127.0.0.1:{stack.rpc.metrics_port}/metrics")


def _stored(api: Api, reverse: bool = False) -> list[tuple[int, str, str, str]]:
    """Every message of CHAT, as (send_time, chat, sender, text), paged with limit 7."""
    return [(m["send_time"], m["chat"], m["sender"], m["text"]) for m in api.pull_all(CHAT, reverse, limit=7)]


def test_a_full_redis_refuses_sends_with_503_keeps_what_it_has_and_recovers_at_run_time(own_stack: Stack) -> None:
    admin = own_stack.redis.client()
    configured = admin.config_get("maxmemory")["maxmemory"]
    assert configured == str(2 * 1024**3)  # deploy/redis.conf's default, `maxmemory 2gb`
    run_id = admin.info("server")["run_id"]
    api = Api(own_stack.http.url)

    # A few sends first: the RPC server's Redis connections and scripts take
    # memory of their own on first use. Then fill Redis through the real HTTP
    # API until a send is refused.
    acked = [(api.send_ok(CHAT, f"warm-up {i}", "alice"), CHAT, "alice", f"warm-up {i}") for i in range(4)]
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) + HEADROOM_BYTES)
    refused: tuple[int, str, str, requests.Response] | None = None
    deadline = time.monotonic() + DEADLINE_S
    for i in range(MAX_SENDS):
        assert time.monotonic() < deadline, f"Redis not full after {i} sends in {DEADLINE_S} s"
        sender, text = ("alice", "bob")[i % 2], f"{i:05d} {PADDING}"
        r = api.send(CHAT, text, sender, key=f"k{i}")
        if r.status_code == 503:
            refused = (i, sender, text, r)
            break
        assert r.status_code == 200, r.text
        acked.append((int(r.json()["send_time"]), CHAT, sender, text))
    assert refused is not None, f"no send refused in {MAX_SENDS} sends"
    i_refused, refused_sender, refused_text, response = refused
    assert len(acked) >= 20, response.text
    # Right at the limit, a send may still slip in whenever Redis frees a
    # buffer; hold the limit below what Redis now uses, so that it stays full.
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - HEADROOM_BYTES // 2)

    # What the client sees: 503, a JSON body saying why, and when to retry.
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"code": 503, "msg": "storage full; not stored"}
    assert int(response.headers["Retry-After"]) >= 1
    # Further sends, to this chat or a new one, are refused the same way.
    for chat, sender in ((CHAT, "bob"), ("carol:dave", "carol")):
        again = api.send(chat, "still full?", sender)
        assert (again.status_code, again.json()) == (503, {"code": 503, "msg": "storage full; not stored"})
    refusals = 3  # the first, and these two

    # Reads keep working, and nothing stored changed: every acknowledged
    # message, intact and in order, in both directions; the refused ones absent.
    assert _stored(api) == acked
    assert _stored(api, reverse=True) == acked[::-1]
    assert api.pull_ok("carol:dave")["messages"] == []
    assert api.pull_ok(CHAT, limit=1, reverse=True)["messages"][0]["send_time"] == acked[-1][0]
    health = requests.get(own_stack.http.url + "/healthz", timeout=10)
    assert health.status_code == 200, health.text  # still ready: it serves reads

    # Operators see it on the RPC server's metrics.
    metrics = _rpc_metrics(own_stack)
    assert metrics["storage_full_total"] == refusals
    assert metrics['redis_errors_total{kind="OutOfMemoryError"}'] == refusals
    assert metrics['rpc_calls_total{code="503",method="Send"}'] == refusals

    # Raise maxmemory at run time: sends succeed again, with no restart.
    admin.config_set("maxmemory", configured)
    retried = api.send(CHAT, refused_text, refused_sender, key=f"k{i_refused}")  # the client's retry, same key
    assert retried.status_code == 200, retried.text
    acked.append((int(retried.json()["send_time"]), CHAT, refused_sender, refused_text))
    replay = api.send(CHAT, refused_text, refused_sender, key=f"k{i_refused}")
    assert (replay.status_code, replay.json()["send_time"]) == (200, acked[-1][0])  # stored once
    after = api.send_ok(CHAT, "after", "bob")
    acked.append((after, CHAT, "bob", "after"))
    assert _stored(api) == acked
    assert api.send("carol:dave", "hello", "dave").status_code == 200

    assert admin.info("server")["run_id"] == run_id  # the same redis-server throughout
    assert own_stack.rpc.alive() and own_stack.http.alive()
    assert _rpc_metrics(own_stack)["storage_full_total"] == refusals
