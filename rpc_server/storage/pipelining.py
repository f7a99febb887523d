"""Running the store's Redis commands: coalesced into pipelines, and on a
Cluster routed to their shard by us, never by redis-py's cluster pipeline.

Coalescing. Measured here, redis-py's client side costs 70-90 us per
unpipelined command (a pooled connection checked for readability with a
poll, packing, a send and a receive, parsing), against about 6 us per
command in a pipeline. Under load, many greenlets wait on Redis at once;
like Lettuce's and ioredis's auto-pipelining, each call joins a queue, and a
few "lanes" each send whatever has queued up as one pipeline per round
trip. At low load a lane is free and a command goes out alone, at once;
under load batches grow by themselves. With `appendfsync always`, one batch
of writes also shares one fsync.

Semantics are those of single commands: each caller gets its own reply or
its own error (a NOSCRIPT, say); a connection error or timeout fails every
command of the batch, whose outcome is then unknown, exactly as for one
command alone. Nothing is sent twice: a plain redis-py pipeline sends its
commands once when its connection's Retry allows no retries (ours:
redis_client.connect_redis).

Cluster routing. redis-py's ClusterPipeline re-runs, one by one, every
command of a batch that timed out or met a MOVED/ASK/TRYAGAIN, whatever
`retry=` says: after a stall, a send ran twice. It also asked a node for
each EVALSHA's keys (COMMAND GETKEYS), an extra round trip. So on a Cluster
each command goes to the master of its first key's slot (CRC16, computed
here; the slot map is redis-py's, refreshed from CLUSTER SLOTS), and
commands are coalesced per node into plain pipelines on that node's own
connection pool, whose connections never retry. A MOVED or ASK reply, a
CLUSTERDOWN or TRYAGAIN, or a slot that no master covers fail that command
alone (it did not run: "not stored"), and a timeout or connection error
fails that node's batch (outcome unknown); either way the slot map is read
again in the background, so that the next call goes to the right node. The
caller's retry, with its idempotency key, is the only retry.

Deadlines (rpc_server.deadline). Each command carries its call's Deadline.
Nothing is sent after its `send_by`: a command still waiting then, in the
queue or for its batch's pooled connection (or connect), is dropped
unsent, and its caller gets NotSent ("not stored"): Redis never saw it. The
caller stops waiting at `send_by` if its command is still queued (so a
lane held up by a stalled Redis does not hold it), and at `answer_by` if it
was sent (then the outcome is unknown). A batch waits for a pooled
connection until its latest `send_by` (REDIS_POOL_WAIT_MS caps it), and for
its replies until its latest `answer_by` (REDIS_TIMEOUT_MS, the socket
timeout, caps each read).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

import gevent
import redis
from gevent.event import AsyncResult
from redis.exceptions import AskError, ClusterDownError, RedisClusterException, TryAgainError

from rpc_server.deadline import NO_DEADLINE, Deadline
from rpc_server.observability import COMMANDS_NOT_SENT


class NotSent(redis.RedisError):
    """The command was never sent to Redis: it did not run."""


class QueuedPastDeadline(NotSent):
    """Its call's deadline left no time to send it (it waited in the queue)."""


class NoConnection(NotSent, redis.ConnectionError):
    """No connection to Redis in time: none free in the pool, or connecting failed."""


#: Errors after which the cluster's slot map may be stale: read it again.
TOPOLOGY_ERRORS = (
    AskError,  # and MovedError
    ClusterDownError,
    TryAgainError,
    RedisClusterException,  # SlotNotCoveredError
    redis.ConnectionError,
    redis.TimeoutError,
)


class Runner(Protocol):
    """Where the store's commands go: one Redis, or a Cluster's masters."""

    def execute(self, *args: Any, deadline: Deadline = NO_DEADLINE) -> Any:
        """Run one command and return its reply (raise its error)."""
        ...

    def execute_many(self, commands: list[tuple[Any, ...]], deadline: Deadline = NO_DEADLINE) -> list[Any]:
        """Run several commands, likely in one round trip per node; a reply
        per command, or the exception it failed with (not raised)."""
        ...

    def client_for(self, key: str) -> redis.Redis:
        """The plain (never retrying) client of the Redis that holds `key`."""
        ...

    def topology_may_have_changed(self) -> None:
        """A failure hinted that the node map is stale (no-op on one Redis)."""
        ...


class Command:
    """One command on its way: queued, then sent or dropped; its reply or
    error arrives in `result`."""

    __slots__ = ("args", "deadline", "dropped", "result", "sent")

    def __init__(self, args: tuple[Any, ...], deadline: Deadline) -> None:
        self.args = args
        self.deadline = deadline
        self.result = AsyncResult()
        self.sent = False
        self.dropped = False

    def drop(self, error: NotSent) -> None:
        self.dropped = True
        COMMANDS_NOT_SENT.labels(type(error).__name__).inc()
        self.result.set_exception(error)

    def outcome(self) -> Any:
        """Its reply, or the exception it failed with (not raised), within
        its deadline (see the module's docstring)."""
        self.result.wait(_seconds(self.deadline.until_send_by()))
        if not self.result.ready() and not self.sent:
            self.drop(QueuedPastDeadline("the call's deadline passed before the command could be sent"))
        if not self.result.ready():
            self.result.wait(_seconds(self.deadline.until_answer_by()))
        if not self.result.ready():
            return redis.TimeoutError("no reply from Redis by the call's deadline")
        return self.result.value if self.result.successful() else self.result.exception


class AutoPipeline:
    """Coalesces the commands of concurrent callers into pipelines on one
    plain Redis client (lanes >= 1), or sends each alone (lanes == 0)."""

    def __init__(self, client: redis.Redis, lanes: int = 2, max_batch: int = 256) -> None:
        self._client = client
        self._lanes = lanes
        self._max_batch = max_batch
        self._queue: deque[Command] = deque()
        self._busy_lanes = 0

    @property
    def client(self) -> redis.Redis:
        return self._client

    def execute(self, *args: Any, deadline: Deadline = NO_DEADLINE) -> Any:
        """Run one command (as for `redis.Redis.execute_command`) and return its reply."""
        reply = self.submit(args, deadline).outcome()
        if isinstance(reply, Exception):
            raise reply
        return reply

    def execute_many(self, commands: list[tuple[Any, ...]], deadline: Deadline = NO_DEADLINE) -> list[Any]:
        """Run several commands, likely in one round trip; a reply per command,
        or the exception it failed with (not raised)."""
        return collect([self.submit(args, deadline) for args in commands])

    def client_for(self, key: str) -> redis.Redis:
        return self._client

    def topology_may_have_changed(self) -> None:
        pass

    def submit(self, args: tuple[Any, ...], deadline: Deadline = NO_DEADLINE) -> Command:
        """Queue one command; its reply or error arrives in its `result`."""
        command = Command(args, deadline)
        if not self._lanes:  # no coalescing: the command alone, now
            send_batch(self._client, [command])
            return command
        self._queue.append(command)
        if self._busy_lanes < self._lanes:
            self._busy_lanes += 1
            gevent.spawn(self._drain)
        return command

    def _drain(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))]
                send_batch(self._client, batch)
        finally:
            self._busy_lanes -= 1


def send_batch(client: redis.Redis, batch: list[Command]) -> None:
    """Send the commands of `batch` still within their deadlines as one
    pipeline on one pooled connection of `client`, and give each its reply
    or error. The others are dropped unsent (NotSent)."""
    batch = _sendable(batch)
    if not batch:
        return
    pool = client.connection_pool
    try:
        with _within(max(c.deadline.send_by for c in batch)):
            connection = pool.get_connection()
    except (_Expired, redis.ConnectionError, redis.TimeoutError, OSError) as e:
        why = "no free Redis connection in time" if isinstance(e, _Expired) else f"cannot connect to Redis: {e}"
        for command in batch:
            command.drop(NoConnection(why))
        return
    batch = _sendable(batch)
    if not batch:
        pool.release(connection)
        return
    pipe = client.pipeline(transaction=False)
    pipe.connection = connection  # released to the pool by execute(), whatever happens
    for command in batch:
        pipe.execute_command(*command.args)
        command.sent = True
    try:
        with _within(max(c.deadline.answer_by for c in batch)):
            replies = pipe.execute(raise_on_error=False)
    except Exception as e:  # the connection failed or no reply in time: every outcome is unknown
        if isinstance(e, _Expired):
            e = redis.TimeoutError("no reply from Redis by the calls' deadline")
        for command in batch:
            command.result.set_exception(e)
        return
    for command, reply in zip(batch, replies, strict=True):
        if isinstance(reply, Exception):
            command.result.set_exception(reply)
        else:
            command.result.set(reply)


def _sendable(batch: list[Command]) -> list[Command]:
    """The commands that may still be sent; those past their `send_by` are dropped."""
    live = []
    for command in batch:
        if command.dropped:
            continue
        if command.deadline.can_send():
            live.append(command)
        else:
            command.drop(QueuedPastDeadline("the call's deadline passed before the command could be sent"))
    return live


class _Expired(Exception):
    """A wait of send_batch reached its deadline (not raised outside it)."""


@contextlib.contextmanager
def _within(instant: float) -> Iterator[None]:
    """Raise _Expired in the block at `instant` (monotonic; inf: never)."""
    with gevent.Timeout(_seconds(max(instant - time.monotonic(), 0.0)), _Expired):
        yield


def _seconds(seconds: float) -> float | None:
    """gevent's timeout argument: None for no deadline."""
    return None if math.isinf(seconds) else seconds


class ClusterRouter:
    """Each command to the master of its first key's slot, coalesced per
    node on that node's plain client (see the module's docstring)."""

    REFRESH_INTERVAL_S = 0.5

    def __init__(self, cluster: redis.RedisCluster, lanes: int = 2, max_batch: int = 256) -> None:
        self._cluster = cluster
        self._lanes = lanes
        self._max_batch = max_batch
        self._nodes: dict[str, AutoPipeline] = {}
        self._refreshed_at = 0.0
        self._refreshing: gevent.Greenlet | None = None

    def execute(self, *args: Any, deadline: Deadline = NO_DEADLINE) -> Any:
        [reply] = self.execute_many([args], deadline)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def execute_many(self, commands: list[tuple[Any, ...]], deadline: Deadline = NO_DEADLINE) -> list[Any]:
        submitted = []
        for args in commands:
            try:
                node = self._node(command_key(args))
            except RedisClusterException as e:  # no master covers the slot (yet): not sent
                command = Command(args, deadline)
                command.result.set_exception(e)
            else:
                command = node.submit(args, deadline)
            submitted.append(command)
        replies = collect(submitted)
        if any(isinstance(reply, TOPOLOGY_ERRORS) for reply in replies):
            self.topology_may_have_changed()
        return replies

    def client_for(self, key: str) -> redis.Redis:
        try:
            return self._node(key).client
        except RedisClusterException:  # no master covers the slot (yet)
            self.topology_may_have_changed()
            raise

    def topology_may_have_changed(self) -> None:
        """Read the slot map again, in the background, at most twice a second."""
        if self._refreshing is not None or time.monotonic() - self._refreshed_at < self.REFRESH_INTERVAL_S:
            return
        self._refreshed_at = time.monotonic()
        self._refreshing = gevent.spawn(self._refresh)

    def _refresh(self) -> None:
        try:
            with contextlib.suppress(Exception):  # nobody answers yet: the next failure tries again
                self._cluster.nodes_manager.initialize()
        finally:
            self._refreshing = None

    def _node(self, key: str) -> AutoPipeline:
        """The coalescer of the master now serving `key`'s slot (raises
        SlotNotCoveredError when none does)."""
        node = self._cluster.nodes_manager.get_node_from_slot(self._cluster.keyslot(key))
        client = self._cluster.get_redis_connection(node)
        pipeline = self._nodes.get(node.name)
        if pipeline is None or pipeline.client is not client:
            pipeline = self._nodes[node.name] = AutoPipeline(client, self._lanes, self._max_batch)
        return pipeline


def runner(client: redis.Redis, lanes: int) -> Runner:
    """How the store sends commands to `client` (one Redis or a Cluster)."""
    if isinstance(client, redis.RedisCluster):
        return ClusterRouter(client, lanes)
    return AutoPipeline(client, lanes)


def command_key(args: tuple[Any, ...]) -> str:
    """The key that routes a command: a script's first key, a container
    command's key after its subcommand, else its first argument. Every
    command the store sends names a key."""
    name = str(args[0]).upper()
    if name in ("EVALSHA", "EVAL", "FCALL"):
        if int(args[2]) < 1:
            raise ValueError(f"{name} without a key cannot be routed")
        return str(args[3])
    if name in ("XINFO", "OBJECT", "MEMORY"):  # a subcommand first: XINFO STREAM <key>
        return str(args[2])
    return str(args[1])


def collect(commands: list[Command]) -> list[Any]:
    """Each command's reply, or the exception it failed with, in order."""
    return [command.outcome() for command in commands]
