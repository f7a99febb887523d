"""The message store: one Redis stream per chat.

Every key and channel it uses is in keys.py, with the layout.

Semantics the service relies on:

* `append` stores a message exactly once or not at all, in one Lua script
  that also assigns its send_time (microseconds, unique and strictly
  increasing within the chat). It is never retried automatically: a retry
  after a timeout could store the message twice. A retry is the client's
  call, made safe by an idempotency key.
* `read` returns at most `limit` messages from an inclusive send_time cursor,
  in O(log N + limit), and whether more exist (it reads limit + 1).
* Any Redis failure (down, timeout, loading, read-only, out of memory, no
  free pool connection) raises StorageUnavailable; nothing is half-written.
  Around a write (`append`, `check_rate`) its message ends in "; not
  stored" when Redis certainly did not run it (never sent; or refused:
  BUSY, OOM, READONLY, MOVED/ASK, CLUSTERDOWN, TRYAGAIN), else in "; outcome
  unknown" (sent, then the connection failed or no reply came in time).

Deadlines: every write and read takes its call's Deadline
(rpc_server.deadline: `answer_by`, the caller's deadline, and `send_by`,
that less the reply reserve), and Redis's timeouts come from it, the
settings being caps:

* waiting to be sent (the pipelining queue, a pooled connection, the
  connect): until `send_by`, the pool wait capped by REDIS_POOL_WAIT_MS and
  the connect by REDIS_TIMEOUT_MS. Past `send_by` the command is dropped
  unsent (pipelining.NotSent): "not stored". So no write starts whose
  deadline has passed, or leaves less than the reserve to hear back;
* waiting for the reply, once sent: until `answer_by` (a batch: its latest
  one), each socket read capped by REDIS_TIMEOUT_MS. A write sent in time
  has thus at least the reserve (REDIS_REPLY_RESERVE_MS, at most half the
  call's budget) to be answered: a busy Redis or a busy process is waited
  for, and "outcome unknown" means Redis failed mid-write (connection lost,
  or silent past that bound);
* WAIT (`wait_replicas`): its timeout is REDIS_WAIT_TIMEOUT_MS, shortened to
  end before `answer_by`.

Without a deadline (NO_DEADLINE: the operator tools), the caps are the
timeouts, as they were before deadlines.

No library sends a write twice. Every path a command can take, checked
against redis-py 8.1's source:

* One Redis, coalesced (pipelining.AutoPipeline) or not: a plain `Pipeline`
  (no MULTI) or `execute_command`, both run through the connection's
  `Retry.call_with_retry`, and our connections' Retry allows 0 retries
  (redis_client.connect_redis): the first timeout or connection error is
  raised, the batch having been sent once. redis-py's default (10 retries)
  would re-send a write whose reply was lost.
* A Cluster: never redis-py's `ClusterPipeline`, which re-runs one by one,
  through the cluster client, each command of a batch that timed out or
  met MOVED/ASK/TRYAGAIN, whatever `retry=` says (a stalled shard stored
  sends twice, and charged rate limits twice), and which asked a node
  `COMMAND GETKEYS` for every EVALSHA. pipelining.ClusterRouter sends each
  command to the master of its first key's slot (computed here, no round
  trip) on that node's own client, which redis-py creates with a Retry of 0
  retries: as for one Redis. A MOVED, ASK, TRYAGAIN or CLUSTERDOWN reply,
  or a slot no master covers, is an error for that command only (it did not
  run: "not stored"), and the slot map is read again in the background.
* The cluster client itself (`RedisCluster.execute_command`: erasure,
  reindex, sweep's scans, PING, SCRIPT LOAD): our `retry=` of 0 retries
  gives one attempt, so a timeout or connection error is raised. Within
  that attempt it follows MOVED and ASK and waits out TRYAGAIN: each of
  those replies means the command did not run, so the one it then sends is
  its first run.
* The WAIT pipeline (`_append_replicated`): a plain pipeline on the chat
  master's own client, as above. Too few replicas in time is a 503
  (outcome unknown), never a new attempt.
* NOSCRIPT (`eval_script`, `_append_replicated`): Redis answers NOSCRIPT
  before running anything, so loading the script (on the node that said
  it) and sending the call again runs it once. In a batch, NOSCRIPT fails
  that command alone. redis-py's `Script` objects are not used.
* Connecting (and its handshake) happens before a command is sent; the
  connect timeout raises, it is not retried either. No health-check PING
  is interleaved (health_check_interval 0).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import redis

from rpc_server.chat_id import Chat
from rpc_server.deadline import NO_DEADLINE, Deadline
from rpc_server.errors import IdempotencyConflict, RateLimited, SendTimeExhausted, StorageUnavailable
from rpc_server.paging import (
    EMPTIED_BY_AN_OLDER_VERSION,
    Page,
    TrimMark,
    history_truncated,
    make_page,
    parse_trim_mark,
    range_bounds,
)
from rpc_server.storage.keys import (
    ALL_CHAT_STREAMS,
    chat_of_key,
    idempotency_index_key,
    idempotency_key,
    notify_channel,
    rate_key,
    stream_key,
    trim_mark_key,
    user_chats_key,
)
from rpc_server.storage.pipelining import Command, NoConnection, collect, runner, send_batch
from rpc_server.storage.redis_client import storage_errors
from rpc_server.storage.scripts import LuaScript

# send.lua's statuses that are failures (0 is stored, 1 a replay: both answered with their send_time)
CONFLICT, EXHAUSTED = 2, 3


class StoredMessage(NamedTuple):
    send_time: int
    sender: str
    text: str


def fingerprint(sender: str, text: str) -> str:
    """What an idempotent retry must repeat: same sender and text."""
    return hashlib.blake2b(f"{sender}\0{text}".encode(), digest_size=16).hexdigest()


class MessageStore:
    def __init__(
        self,
        client: redis.Redis,
        idempotency_ttl_s: int,
        rate_per_s: float = 0.0,
        rate_burst: int = 10,
        pipeline_lanes: int = 2,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 200,
        retention_max_age_s: int = 0,
        retention_max_messages: int = 0,
    ) -> None:
        self._redis = client
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        # Commands go out coalesced into pipelines, or one by one with 0 lanes;
        # on a Cluster, each to its key's master (pipelining.py).
        self._commands = runner(client, pipeline_lanes)
        self._idempotency_ttl_s = idempotency_ttl_s
        self._retention = [retention_max_age_s * 1_000_000, retention_max_messages]
        self._send_script = LuaScript("send.lua", "decimal.lua", "retention.lua")
        self._sweep_script = LuaScript("sweep.lua", "decimal.lua", "retention.lua")
        # On one Redis the send script also updates both members' conversation
        # lists, atomically; a Cluster keeps them on other shards (conversations.py).
        self.updates_lists_on_append = not isinstance(client, redis.RedisCluster)
        self._rate_script = LuaScript("rate_limit.lua")
        self._rate_interval_us = round(1_000_000 / rate_per_s) if rate_per_s > 0 else 0
        self._rate_tolerance_us = self._rate_interval_us * max(rate_burst - 1, 0)

    def check_rate(self, sender: str, deadline: Deadline = NO_DEADLINE) -> None:
        """Raise RateLimited if `sender` sends faster than the configured rate
        (after a burst). Off when the rate is 0. A separate script from the
        append: in a cluster the sender's key lives on its own shard."""
        if not self._rate_interval_us:
            return
        with storage_errors(sending=True):
            wait_ms = int(
                self.eval_script(
                    self._rate_script,
                    [rate_key(sender)],
                    [self._rate_interval_us, self._rate_tolerance_us],
                    deadline,
                )
            )
        if wait_ms > 0:
            raise RateLimited(f"too many messages from {sender!r}; retry in {wait_ms} ms", retry_after_ms=wait_ms)

    def append(
        self, chat: Chat, sender: str, text: str, key: str | None = None, deadline: Deadline = NO_DEADLINE
    ) -> int:
        """Store one message and return its send_time.

        With `key`, a repeat of the same (sender, text) returns the first
        send_time without storing anything; a different message with the
        same key raises IdempotencyConflict.
        """
        keys, args = self._send_arguments(chat, sender, text, key)
        with storage_errors(sending=True):
            if self._wait_replicas:
                status, send_time = self._append_replicated(keys, args, deadline)
            else:
                status, send_time = self.eval_script(self._send_script, keys, args, deadline)
        if status == CONFLICT:
            raise IdempotencyConflict("idempotency key already used for a different message in this chat")
        if status == EXHAUSTED:
            raise SendTimeExhausted(
                f"chat {chat.id!r} can take no more messages: its last send_time ({send_time}) is the largest "
                "possible; delete the chat or repair its data"
            )
        return int(send_time)

    def append_command(self, chat: Chat, sender: str, text: str) -> tuple[Any, ...]:
        """The EVALSHA that append() sends for a message without a key (the
        benchmark loads chats with it); its script is `send_script`."""
        return self.send_script.command(*self._send_arguments(chat, sender, text, None))

    @property
    def send_script(self) -> LuaScript:
        return self._send_script

    def _send_arguments(self, chat: Chat, sender: str, text: str, key: str | None) -> tuple[list[str], list[str | int]]:
        """send.lua's KEYS and ARGV."""
        keys = [stream_key(chat), trim_mark_key(chat)]
        if key is not None:
            keys += [idempotency_key(chat, key), idempotency_index_key(chat)]
        lists = chat.members if self.updates_lists_on_append else ()
        keys += [user_chats_key(member) for member in lists]
        args: list[str | int] = [sender, text, fingerprint(sender, text), self._idempotency_ttl_s, *self._retention]
        args += ["1" if key is not None else "0", chat.id if lists else "", notify_channel(chat)]
        args.append("1" if self._wait_replicas else "0")  # a replay writes, so that WAIT covers the original
        return keys, args

    def read(
        self, chat: Chat, cursor: int, limit: int, reverse: bool, deadline: Deadline = NO_DEADLINE
    ) -> Page[StoredMessage]:
        """Up to `limit` messages from `cursor` (a send_time, inclusive).

        Ascending: send_time >= cursor, oldest first, 0 = from the oldest.
        Reverse: send_time <= cursor, newest first, 0 = from the newest.
        The page's `truncated` says whether retention removed messages that
        this page or a later one in the same direction would have held.
        """
        first, last = range_bounds(cursor, reverse)
        command = "XREVRANGE" if reverse else "XRANGE"
        # The page, then the trim mark: a trim in between can only make the
        # flag true for a page that lost nothing, never the other way round.
        commands = [(command, stream_key(chat), first, last, "COUNT", limit + 1), ("GET", trim_mark_key(chat))]
        with storage_errors():
            entries, mark = self._raise_first_error(self.run_many(commands, deadline))
            trim_mark = self._resolved(chat, parse_trim_mark(mark))
        fetched = [_stored(entry) for entry in entries]
        page = make_page(fetched, limit, lambda m: m.send_time)
        truncated = history_truncated(cursor, reverse, page.has_more, trim_mark)
        return Page(page.items, page.has_more, page.next_cursor, truncated)

    def _resolved(self, chat: Chat, mark: TrimMark | None) -> TrimMark | None:
        """An older version's mark of an emptied chat ("-1") made exact: the
        boundary is past the stream's last ID (one more command, only then)."""
        if mark is not EMPTIED_BY_AN_OLDER_VERSION:
            return mark
        try:
            info = self.run("XINFO", "STREAM", stream_key(chat))
        except redis.ResponseError:  # no such stream any more: nothing to tell
            return None
        fields = info if isinstance(info, dict) else dict(zip(info[::2], info[1::2], strict=True))
        return TrimMark(_send_time(str(fields["last-generated-id"])) + 1)

    def apply_retention(self, chat: Chat) -> int:
        """Trim `chat` by the retention settings now (as each send does to
        its own chat); return how many messages were trimmed."""
        with storage_errors():
            return int(self.eval_script(self._sweep_script, [stream_key(chat), trim_mark_key(chat)], self._retention))

    @property
    def client(self) -> redis.Redis:
        return self._redis

    def run(self, *args: Any, deadline: Deadline = NO_DEADLINE) -> Any:
        """One Redis command, coalesced with concurrent ones (raises Redis errors)."""
        return self._commands.execute(*args, deadline=deadline)

    def run_many(self, commands: list[tuple[Any, ...]], deadline: Deadline = NO_DEADLINE) -> list[Any]:
        """Several commands at once (one round trip per node when
        pipelining); each one's reply, or the exception it failed with, in
        order."""
        return self._commands.execute_many(commands, deadline)

    @staticmethod
    def _raise_first_error(replies: list[Any]) -> list[Any]:
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def last_messages(self, chats: list[Chat]) -> list[StoredMessage | None]:
        """Each chat's newest message (None: no message, or no such chat)."""
        replies = self.run_many([("XREVRANGE", stream_key(chat), "+", "-", "COUNT", 1) for chat in chats])
        with storage_errors():
            self._raise_first_error(replies)
        return [_stored(reply[0]) if reply else None for reply in replies]

    def chats(self) -> Iterator[Chat]:
        """Every chat that has a stream, by SCAN: O(all keys), for the
        operator tools and repairs, never for a request."""
        with storage_errors():
            for key in self._redis.scan_iter(match=ALL_CHAT_STREAMS, count=1000, _type="stream"):
                chat = chat_of_key(key)
                if chat is not None:
                    yield chat

    def ping(self) -> bool:
        with storage_errors():
            return bool(self._redis.ping())

    def _append_replicated(self, keys: list[str], args: list[str | int], deadline: Deadline) -> Any:
        """The send script, then WAIT for replicas, in one pipeline on one
        connection to the chat's master: acknowledged means replicated to
        `wait_replicas` replicas. (WAIT has no key: it must follow the
        script on the script's own connection.)

        WAIT waits for this connection's last write (Redis >= 7.2; 7.0
        waited for whatever its last command saw). A replay answered from
        the idempotency record writes nothing, so its WAIT would return at
        once, though the original, sent on another connection (or by another
        RPC server), may not have reached a replica yet. So in this mode
        send.lua rewrites the record on a replay: a write after the
        original's in the replication stream, which WAIT then covers.
        (WAITAOF, Redis 7.2+, counts the same per-connection offset; reading
        replicas' offsets from INFO would mean polling.)"""
        master = self._commands.client_for(keys[0])
        command = self._send_script.command(keys, args)
        for attempt in range(2):
            # WAIT gives up in time for the reply to reach the caller by its deadline.
            wait_ms = max(1, int(min(self._wait_timeout_ms, deadline.until_answer_by() * 1000 - 1)))
            script, wait = Command(command, deadline), Command(("WAIT", self._wait_replicas, wait_ms), deadline)
            send_batch(master, [script, wait])
            reply, replicas = collect([script, wait])
            if isinstance(reply, (redis.ConnectionError, redis.TimeoutError, NoConnection)):
                self._commands.topology_may_have_changed()  # the master may be gone: learn who replaced it
                raise reply
            if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 0:
                master.script_load(self._send_script.source)  # it did not run
                continue
            break
        if isinstance(reply, (redis.exceptions.AskError, redis.exceptions.ClusterDownError)):
            self._commands.topology_may_have_changed()  # MOVED, ASK or CLUSTERDOWN: it did not run here
            raise reply
        if isinstance(reply, Exception):
            raise reply
        if isinstance(replicas, Exception) or int(replicas) < self._wait_replicas:
            raise StorageUnavailable(f"stored but not replicated within {wait_ms} ms; outcome unknown")
        return reply

    def eval_script(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int], deadline: Deadline = NO_DEADLINE
    ) -> Any:
        """Run a script, coalesced with concurrent commands (scripts.py: NOSCRIPT)."""
        execute = functools.partial(self._commands.execute, deadline=deadline)
        return script.run(execute, self._commands.client_for, keys, args)


def _stored(entry: tuple[str, dict[str, str]]) -> StoredMessage:
    """A stream entry (ID, fields) as XRANGE returns it, decoded."""
    entry_id, fields = entry
    return StoredMessage(_send_time(entry_id), fields["s"], fields["t"])


def _send_time(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])
