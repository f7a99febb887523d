"""A stalled shard of a real 3-master Redis Cluster under concurrent sends:
no library re-sends a write on our behalf.

A shard runs a busy script for longer than every Redis wait in force (a
pooled connection, then a reply), while 120 sends (half with an idempotency
key) arrive at once; three rounds, each stalling another master for
another length of time. Redis still runs every command it received once
the stall ends, so a send that timed out may be stored: its 503 says the
outcome is unknown, and a retry with the same key stores nothing new.

Two RPC servers: without rate limiting, the sends' chats are on the stalled
shard (the send script stalls); with it, the senders' rate-limit states are
there too (the rate check stalls first). What must hold: every text stored
at most once, every acknowledged one exactly once (at the send_time
acknowledged), each sender's rate-limit state (GCRA) moved on at most once
per call made and at least once per send acknowledged.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from rpc_server.chat_id import parse_chat
from rpc_server.storage.keys import rate_key, stream_key
from tests.servers import RedisCluster, RedisServer, RpcServer, scrape_metrics, thrift_client, wait_until

pytestmark = pytest.mark.fault

REDIS_TIMEOUT_MS, REDIS_POOL_WAIT_MS = 300, 200
LONGEST_WAIT_S = (REDIS_TIMEOUT_MS + REDIS_POOL_WAIT_MS) / 1000  # a pooled connection, then a reply
STALLS_S = (2 * LONGEST_WAIT_S, 3 * LONGEST_WAIT_S, 4 * LONGEST_WAIT_S)  # a round each
RATE_INTERVAL_US = 1_000_000_000  # RATE_LIMIT_PER_S=0.001: each rate check moves the sender's state 1000 s on
SENDERS = 120

BUSY_SCRIPT = """
local start = redis.call('TIME')
repeat
  local now = redis.call('TIME')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) >= tonumber(ARGV[1])
return 1
"""


@dataclass
class Sender:
    name: str
    chat: str
    keyed: bool
    calls: int = 0
    acked: int = 0


@dataclass
class Answer:
    sender: Sender
    text: str
    key: str | None
    code: int
    msg: str
    send_time: int


@dataclass
class Target:
    rpc_server: RpcServer
    rate_limited: bool


@pytest.fixture(scope="module", params=["send script stalled", "rate check stalled"])
def target(
    cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Target]:
    rate_limit = {"RATE_LIMIT_PER_S": "0.001", "RATE_LIMIT_BURST": "1000"}  # never refuses here: only counts
    server = RpcServer(
        tmp_path_factory.mktemp("rpc"),
        "redis://unused:1/0",
        REDIS_CLUSTER_NODES=cluster.addresses,
        REDIS_TIMEOUT_MS=str(REDIS_TIMEOUT_MS),
        REDIS_POOL_WAIT_MS=str(REDIS_POOL_WAIT_MS),
        # Calls without TimeoutMs get a deadline far beyond the stalls, so the
        # caps above end every wait, as this test means (deadlines: test_deadlines.py).
        RPC_DEFAULT_TIMEOUT_MS="60000",
        REDIS_REPLY_RESERVE_MS="10000",
        **(rate_limit if request.param == "rate check stalled" else {}),
    )
    server.start()
    try:
        yield Target(server, rate_limited=request.param == "rate check stalled")
    finally:
        server.stop()


def _masters_by_slot(cluster: RedisCluster) -> dict[int, int]:
    slots = cluster.nodes[0].client().execute_command("CLUSTER", "SLOTS")
    return {slot: int(master[1]) for start, end, master, *_ in slots for slot in range(start, end + 1)}


def _shard(owner: dict[int, int], key: str) -> int:
    return owner[key_slot(key.encode())]


def _senders(owner: dict[int, int], stalled: int, rate_limited: bool, count: int = SENDERS) -> list[Sender]:
    """`count` senders, each with a chat of its own on the stalled shard,
    and, when rate limiting is on, the rate-limit state too."""
    senders: list[Sender] = []
    while len(senders) < count:
        name = f"s-{uuid.uuid4().hex[:10]}"
        if rate_limited and _shard(owner, rate_key(name)) != stalled:
            continue
        while True:
            chat = parse_chat(f"{name}:p-{uuid.uuid4().hex[:10]}")
            if _shard(owner, stream_key(chat)) == stalled:
                break
        senders.append(Sender(name, chat.id, keyed=len(senders) % 2 == 0))
    return senders


def _stalled(node: RedisServer) -> bool:
    """Whether `node` leaves a PING unanswered for 50 ms."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        sock.settimeout(0.05)
        try:
            sock.recv(16)
        except TimeoutError:
            return True
    return False


def _send(client: Any, rpc: Any, sender: Sender, text: str, key: str | None) -> Answer:
    sender.calls += 1
    message = rpc.Message(Chat=sender.chat, Text=text, Sender=sender.name)
    r = client.Send(rpc.SendRequest(message=message, IdempotencyKey=key))
    if r.Code == 0:
        sender.acked += 1
    return Answer(sender, text, key, r.Code, r.Msg, r.SendTime or 0)


def _send_when(go: threading.Event, client: Any, rpc: Any, sender: Sender, text: str, key: str | None) -> Answer:
    go.wait()
    return _send(client, rpc, sender, text, key)


def _stored(cluster_client: redis.RedisCluster, chat: str) -> list[tuple[str, int]]:
    entries = cluster_client.xrange(stream_key(parse_chat(chat)))
    return [(fields["t"], int(entry_id.partition("-")[0])) for entry_id, fields in entries]


def test_a_stalled_shard_never_makes_a_write_run_twice(cluster: RedisCluster, target: Target, rpc: Any) -> None:
    owner = _masters_by_slot(cluster)
    cluster_client = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port, decode_responses=True)
    started_us = _redis_time_us(cluster.nodes[0])
    rpc_server = target.rpc_server
    metrics = f"http://127.0.0.1:{rpc_server.metrics_port}/metrics"
    clients = [thrift_client(rpc, rpc_server.port, timeout_ms=120_000) for _ in range(SENDERS)]
    wait_until(lambda: scrape_metrics(metrics), 20, "the metrics port")
    everyone: list[Sender] = []
    try:
        # Each round stalls another master: whichever node the client treats
        # specially (its default node, say) is stalled once.
        masters = sorted(cluster.nodes, key=lambda n: n.port)
        for round_, (stalled, stall_s) in enumerate(zip(masters, STALLS_S, strict=True)):
            # The sends must reach the shard while it is stalled; on a busy
            # machine they may all arrive after a short stall has ended (no
            # timeout: the round tested nothing). Then again, stalling longer.
            for attempt in range(4):
                senders = _senders(owner, stalled.port, target.rate_limited)
                everyone += senders
                if _round(round_, stalled, stall_s * 2**attempt, senders, clients, rpc, metrics, cluster_client):
                    break
                print(f"\nround {round_}: every send arrived after the stall ended; again, stalling longer")
            else:
                pytest.fail(f"round {round_}: no send met the stall in 4 attempts")
        if target.rate_limited:
            _check_rate_state(cluster_client, everyone, started_us)
    finally:
        for client in clients:
            client.close()
        cluster_client.close()


def _round(
    round_: int,
    stalled: RedisServer,
    stall_s: float,
    senders: list[Sender],
    clients: list[Any],
    rpc: Any,
    metrics: str,
    cluster_client: redis.RedisCluster,
) -> bool:
    """One round: every sender at once while `stalled` runs a busy script
    for `stall_s`; then the checks. Whether timeouts occurred (False: the
    round tested nothing, though every check held)."""
    timeouts_before = scrape_metrics(metrics).get('redis_errors_total{kind="TimeoutError"}', 0)
    texts = [f"r{round_}-{s.name}-{uuid.uuid4().hex[:6]}" for s in senders]
    keys = [uuid.uuid4().hex if s.keyed else None for s in senders]
    with ThreadPoolExecutor(len(senders)) as pool:  # first without a stall: open pooled connections
        warm = list(pool.map(lambda c, s: _send(c, rpc, s, f"warm-{s.name}", None), clients, senders))
    assert {(a.code, a.msg) for a in warm} == {(0, "success")}
    go = threading.Event()
    with ThreadPoolExecutor(len(senders)) as pool:
        futures = [
            pool.submit(_send_when, go, c, rpc, s, t, k)
            for c, s, t, k in zip(clients, senders, texts, keys, strict=True)
        ]
        stall = threading.Thread(target=stalled.client().eval, args=(BUSY_SCRIPT, 0, int(stall_s * 1e6)))
        stall.start()
        wait_until(lambda node=stalled: _stalled(node), 10, "the shard to stall")
        go.set()  # every sender at once, while the shard is stalled
        answers = [f.result() for f in futures]
    stall.join()

    # Whether timeouts occurred: whether this round tested something.
    timed_out = [a for a in answers if a.code == 503 and "timed out" in a.msg]
    timeouts = scrape_metrics(metrics).get('redis_errors_total{kind="TimeoutError"}', 0) - timeouts_before
    tested = bool(timed_out) and timeouts > 0
    # Every failure is a 503 that says whether the message was stored.
    failures = [(a.code, a.msg) for a in answers if a.code != 0]
    assert all(code == 503 and ("outcome" in msg or "not stored" in msg) for code, msg in failures), failures

    # Once the stall is over, the client's retry with the same key stores nothing new.
    before_retry = {s.chat: dict(_stored(cluster_client, s.chat)) for s in senders}
    for a in [a for a in answers if a.code != 0 and a.key is not None]:
        retried = _send(clients[0], rpc, a.sender, a.text, a.key)
        assert retried.code == 0, (retried.code, retried.msg)
        if a.text in before_retry[a.sender.chat]:  # it had been stored: the retry is answered from it
            assert retried.send_time == before_retry[a.sender.chat][a.text]
        answers.append(retried)

    _check_stored_once(cluster_client, senders, warm + answers, round_)
    acked = sum(a.code == 0 for a in answers[: len(senders)])
    ran_anyway = sum(a.text in before_retry[a.sender.chat] for a in answers[: len(senders)] if a.code)
    print(
        f"\nround {round_} (stall {stall_s:.2f} s): {acked} acknowledged, {len(failures)} 503"
        f" ({len(timed_out)} timed out, {ran_anyway} of them stored once the stall ended),"
        f" {len(answers) - len(senders)} retried with their key, nothing stored twice"
    )
    return tested


def _check_stored_once(
    cluster_client: redis.RedisCluster, senders: list[Sender], answers: list[Answer], round_: int
) -> None:
    stored: dict[str, list[int]] = {}
    for s in senders:
        for text, send_time in _stored(cluster_client, s.chat):
            stored.setdefault(text, []).append(send_time)
    twice = {text: times for text, times in stored.items() if len(times) > 1}
    acked = {(a.text, a.send_time) for a in answers if a.code == 0}
    acked_twice = [text for text, _ in acked if text in twice]
    assert not twice, f"round {round_}: {len(twice)} texts stored twice, {len(acked_twice)} of them acknowledged"
    lost = [(text, t) for text, t in acked if stored.get(text) != [t]]
    assert not lost, f"round {round_}: acknowledged but not stored exactly once as acknowledged: {lost[:5]}"


def _check_rate_state(cluster_client: redis.RedisCluster, senders: list[Sender], started_us: int) -> None:
    """Each rate check that ran moved the sender's state one interval on:
    as many moves as acknowledged sends at least, as calls made at most."""
    wrong = []
    for s in senders:
        state = cluster_client.get(rate_key(s.name))
        checks = (int(state) - started_us) // RATE_INTERVAL_US if state else 0
        if not s.acked <= checks <= s.calls:
            wrong.append((s.name, s.acked, checks, s.calls))
    assert not wrong, f"(sender, acknowledged, rate checks run, calls) out of order: {wrong[:5]} of {len(wrong)}"


def _redis_time_us(node: RedisServer) -> int:
    seconds, micros = node.client().time()
    return int(seconds) * 1_000_000 + int(micros)


def test_a_pipelined_send_costs_one_round_trip_per_script(cluster: RedisCluster, target: Target, rpc: Any) -> None:
    """Each script call names its shard by its first key: no COMMAND GETKEYS
    round trip to ask a node where it goes."""
    # Counted from a quiet cluster: no call of an earlier test still in flight
    # (a stalled round's sends may still be queued on a node), and every
    # master holding the scripts already (else its first EVALSHA is a
    # NOSCRIPT, counted, then sent again: found when an earlier test stopped
    # before it had sent to every master).
    metrics = f"http://127.0.0.1:{target.rpc_server.metrics_port}/metrics"
    wait_until(lambda: scrape_metrics(metrics).get("rpc_calls_in_flight", 1) == 0, 60, "no call in flight")
    owner = _masters_by_slot(cluster)
    tag = uuid.uuid4().hex[:8]
    warm = thrift_client(rpc, target.rpc_server.port)
    try:
        for port in sorted(set(owner.values())):  # each master
            for s in _senders(owner, port, target.rate_limited, count=1):
                answer = _send(warm, rpc, s, f"warm-{tag}", None)
                assert answer.code == 0, (answer.code, answer.msg)
    finally:
        warm.close()
    for node in cluster.nodes:
        node.client().config_resetstat()
    sends, threads = 50, 10

    def send_all(thread: int) -> list[int]:
        """Sends thread, thread + threads, ...: one client per thread (a
        thriftpy2 client is not thread-safe: shared, it once sent a call twice)."""
        client = thrift_client(rpc, target.rpc_server.port)
        try:
            codes = []
            for i in range(thread, sends, threads):
                message = rpc.Message(Chat=f"rt{i}-{tag}:peer-{tag}", Text="hello", Sender=f"rt{i}-{tag}")
                codes.append(int(client.Send(rpc.SendRequest(message=message)).Code))
            return codes
        finally:
            client.close()

    with ThreadPoolExecutor(threads) as pool:
        codes = [code for batch in pool.map(send_all, range(threads)) for code in batch]
    assert codes == [0] * sends
    calls = {"evalsha": 0, "command|getkeys": 0}
    for node in cluster.nodes:
        stats = node.client().info("commandstats")
        for command in calls:
            calls[command] += int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    scripts_per_send = 2 if target.rate_limited else 1
    assert calls == {"evalsha": sends * scripts_per_send, "command|getkeys": 0}
