"""A Redis Cluster master killed under load, with REDIS_WAIT_REPLICAS=1
(acknowledged = on a replica): no acknowledged message is lost; other
shards keep working; the failed shard answers 503 until its replica is
promoted and the old master has rejoined as a replica."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import Api
from tests.load import SendLoad
from tests.servers import HttpServer, RedisCluster, RpcServer, signal, wait_until

pytestmark = pytest.mark.fault


def _chats_on_two_shards(cluster: RedisCluster) -> tuple[str, str]:
    first = "failover-0:peer"
    master, _ = cluster.shard_of(f"im:v1:{{{first}}}:m")
    for i in range(1, 200):
        other = f"failover-{i}:peer"
        if cluster.shard_of(f"im:v1:{{{other}}}:m")[0] != master:
            return first, other
    raise AssertionError("no chat on another shard")


def test_a_master_killed_under_load_loses_no_acknowledged_message(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=5000).start()
    rpc = RpcServer(tmp_path, "redis://unused:1/0", REDIS_CLUSTER_NODES=cluster.addresses, REDIS_WAIT_REPLICAS="1")
    rpc.start()
    http = HttpServer(tmp_path, rpc.port)
    http.start()
    try:
        victim_chat, other_chat = _chats_on_two_shards(cluster)
        master_port, replica_ports = cluster.shard_of(f"im:v1:{{{victim_chat}}}:m")
        master, replica = cluster.node(master_port), cluster.node(replica_ports[0])
        with SendLoad(http.url, victim_chat, http_clients=3) as victim, SendLoad(http.url, other_chat, 3) as other:
            victim.wait_for_acks(100)
            other.wait_for_acks(100)
            master.stop(signal.SIGKILL)
            killed_at = time.monotonic()
            victim.wait_for_errors(5)  # its shard: 503s
            other.wait_for_acks(100, timeout=30)  # the other shards keep going
            wait_until(lambda: cluster.role(replica) == "master", 60, "the replica to be promoted")
            promoted_after = time.monotonic() - killed_at
            master.start()  # its nodes.conf brings it back into the cluster
            wait_until(lambda: cluster.role(master) == "slave", 60, "the old master to rejoin as a replica")
            victim.wait_for_acks(100, timeout=60)  # replicated writes on that shard again
            recovered_after = time.monotonic() - killed_at
            other.wait_for_acks(100)
        api = Api(http.url)
        failed_shard, other_shards = victim.verify(api), other.verify(api)
        print(f"\nfailover: promoted after {promoted_after:.1f}s, writes back after {recovered_after:.1f}s")
        print(f"failed shard: {failed_shard}\nother shard: {other_shards}")
        assert set(victim.errors) <= {"http 503"}
        assert set(other.errors) <= {"http 503"}
        # Other shards: at most a short window of errors while the client re-reads the topology.
        assert sum(other.errors.values()) <= 60, other.errors
    finally:
        http.stop()
        rpc.stop()
        cluster.stop()
