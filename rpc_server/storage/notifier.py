"""Wake-ups for waiting pulls (long-poll), through Redis, so that a send on
any RPC replica wakes a waiter on any other.

The send script publishes each new message's send_time with SPUBLISH (Redis
7 sharded pub/sub) on the chat's channel, `im:v1:{a:b}:n`: atomic with the
write, and, carrying the chat's hash tag, on the chat's own shard. Each
process holds one upstream SSUBSCRIBE per chat that someone here waits on,
however many wait, on one pub/sub connection, and fans a notice out to its
local waiters (gevent events).

A notice only says "look again": every waiter re-reads from its cursor, so
a notice missed (while the connection to Redis is down, say) can delay a
delivery, never lose or reorder a message. When the connection fails, every
waiter is woken to re-read, and redis-py subscribes again on reconnect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import gevent
import redis
from gevent.event import Event

from rpc_server.chat_id import Chat
from rpc_server.errors import StorageUnavailable
from rpc_server.observability import WAITING
from rpc_server.storage.keys import notify_channel

log = logging.getLogger(__name__)


class TooManyWaiters(StorageUnavailable):
    """This process already holds its maximum of waiting calls: retry later."""


class Notifier:
    def __init__(self, client: redis.Redis, max_waiters: int) -> None:
        self._client = client
        self._max_waiters = max_waiters
        self._waiters: dict[str, set[Event]] = {}
        self._count = 0
        self._pubsub = client.pubsub()
        # A Cluster's pub/sub polls each shard's connection in turn, each for
        # up to this long: short, or a notice on one shard waits on the others.
        self._poll_s = 0.05 if isinstance(client, redis.RedisCluster) else 1.0
        self._reader: gevent.Greenlet | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def watch(self, chat: Chat) -> Iterator[Event]:
        """An event set whenever a message may have been added to `chat`
        (or on shutdown, or when the connection to Redis failed). Register
        before reading, so that nothing can arrive unseen in between."""
        if self._closed:  # shutting down: no waiting; the caller answers what it has
            ended = Event()
            ended.set()
            yield ended
            return
        if self._count >= self._max_waiters:
            raise TooManyWaiters(f"too many waiting calls on this server ({self._max_waiters}); retry")
        channel = notify_channel(chat)
        event = Event()
        waiters = self._waiters.setdefault(channel, set())
        waiters.add(event)
        self._count += 1
        WAITING.inc()
        try:
            if len(waiters) == 1:
                self._subscribe(channel)
            yield event
        finally:
            waiters.discard(event)
            self._count -= 1
            WAITING.dec()
            if not waiters and self._waiters.get(channel) is waiters:
                del self._waiters[channel]
                self._unsubscribe(channel)

    def close(self) -> None:
        """Wake every waiter for good: on shutdown, waits end at once."""
        self._closed = True
        self._wake_all()
        if self._reader is not None:
            self._reader.kill(block=False)

    def _subscribe(self, channel: str) -> None:
        try:
            self._pubsub.ssubscribe(channel)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            # Subscribed again on reconnect (redis-py keeps the list); until
            # then the waiter times out and re-reads, like any missed notice.
            log.warning("cannot subscribe to %s yet: %s", channel, e)
        if self._reader is None or self._reader.dead:
            self._reader = gevent.spawn(self._read)

    def _unsubscribe(self, channel: str) -> None:
        try:
            self._pubsub.sunsubscribe(channel)
        except (redis.ConnectionError, redis.TimeoutError):
            self._pubsub.shard_channels.pop(channel, None)  # not to be subscribed again on reconnect

    def _read(self) -> None:
        while not self._closed:
            started = time.monotonic()
            try:
                message = self._pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=self._poll_s)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                log.warning("notification connection failed (%s); waiters re-read", e)
                self._wake_all()
                gevent.sleep(0.2)
                continue
            if message is None:
                if time.monotonic() - started < self._poll_s / 2:
                    # Back at once: a (un)subscribe confirmation, or nothing to
                    # wait on (a Cluster's pub/sub with no subscription returns
                    # at once). Never spin, which would starve every other
                    # greenlet of this process; and with waiters, not long.
                    gevent.sleep(0.001 if self._waiters else self._poll_s)
                continue
            for event in self._waiters.get(_text(message["channel"]), ()):
                event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
