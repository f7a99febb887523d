"""AutoPipeline against a real redis-server: concurrent callers share
pipelines, yet each gets its own reply or its own error."""

from __future__ import annotations

from typing import Any

import gevent
import pytest
import redis

from rpc_server.storage.pipelining import AutoPipeline, command_key
from tests.servers import Stack, free_port


class CountingClient(redis.Redis):
    pipelines = 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        CountingClient.pipelines += 1
        return super().pipeline(*args, **kwargs)


def test_concurrent_commands_are_coalesced_and_answered_each(stack: Stack) -> None:
    client = CountingClient(port=stack.redis.port, decode_responses=True)
    client.delete("pipelining:n")
    auto = AutoPipeline(client, lanes=2)
    CountingClient.pipelines = 0
    jobs = [gevent.spawn(auto.execute, "INCR", "pipelining:n") for _ in range(200)]
    gevent.joinall(jobs, raise_error=True)
    assert sorted(job.value for job in jobs) == list(range(1, 201))  # each got its own reply
    assert CountingClient.pipelines <= 4  # not 200 round trips


def test_an_error_reply_goes_to_its_own_caller_only(stack: Stack) -> None:
    client = redis.Redis(port=stack.redis.port, decode_responses=True)
    client.set("pipelining:string", "x")
    auto = AutoPipeline(client, lanes=1)
    good = [gevent.spawn(auto.execute, "PING") for _ in range(5)]
    bad = gevent.spawn(auto.execute, "XADD", "pipelining:string", "*", "f", "v")  # WRONGTYPE
    gevent.joinall([*good, bad])
    assert [job.value for job in good] == [True] * 5
    assert isinstance(bad.exception, redis.ResponseError) and "WRONGTYPE" in str(bad.exception)


@pytest.mark.slow
def test_a_connection_failure_fails_every_caller_of_the_batch() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    auto = AutoPipeline(client, lanes=1)
    jobs = [gevent.spawn(auto.execute, "PING") for _ in range(10)]
    gevent.joinall(jobs)
    assert all(isinstance(job.exception, redis.ConnectionError) for job in jobs)
    with pytest.raises(redis.ConnectionError):  # and the next call tries again
        auto.execute("PING")


def test_a_command_is_routed_by_its_first_key() -> None:
    """On a Cluster each command goes to its key's slot, named here without
    asking a node (redis-py's cluster pipeline sent COMMAND GETKEYS)."""
    assert command_key(("EVALSHA", "ab12", 3, "im:v1:{a:b}:m", "im:v1:{a:b}:t", "x", "arg")) == "im:v1:{a:b}:m"
    assert command_key(("XRANGE", "im:v1:{a:b}:m", "-", "+")) == "im:v1:{a:b}:m"
    assert command_key(("ZADD", "im:v1:u:{a}:c", "GT", 5, "a:b")) == "im:v1:u:{a}:c"
    assert command_key(("XINFO", "STREAM", "im:v1:{a:b}:m")) == "im:v1:{a:b}:m"  # the key after the subcommand
    with pytest.raises(ValueError, match="without a key"):
        command_key(("EVALSHA", "ab12", 0, "arg"))
