"""Where the RPC servers are, and which one a new connection should try.

Sources: a static list (RPC_ADDR="h1:8888,h2:8888"); DNS (RPC_DNS=
"name:port": every A/AAAA record of the name, as a Kubernetes headless
service publishes its pods); or etcd (RPC_ETCD: the servers registered the
way Kitex's registry-etcd does, under kitex/registry-etcd/<service>/, so
Kitex servers are found as well as ours; watched, so a change is seen at
once). DNS and etcd are read again every RPC_REFRESH_S seconds.

New connections go round-robin over the healthy endpoints. An endpoint that
refuses or times out a connect is ejected for RPC_EJECT_S seconds, then
probed back in: the next connect may try it again, and a success makes it
healthy. If every endpoint is ejected, they are all tried
anyway: being wrong about an outage costs less than refusing to look.
"""

from __future__ import annotations

import atexit
import logging
import socket
import time
from collections.abc import Callable

import gevent
from prometheus_client import Gauge

from http_server.config import parse_addresses
from plumbing.kitex_etcd import etcd_client, service_prefix, tcp_address

log = logging.getLogger(__name__)

Endpoint = tuple[str, int]

EJECTED = Gauge(
    "rpc_client_endpoints_ejected", "RPC endpoints ejected after a connect failure", multiprocess_mode="max"
)


def static(addresses: str) -> Callable[[], list[Endpoint]]:
    endpoints = parse_addresses(addresses)
    return lambda: endpoints


def dns(name_and_port: str) -> Callable[[], list[Endpoint]]:
    name, _, port = name_and_port.rpartition(":")

    def resolve() -> list[Endpoint]:
        records = socket.getaddrinfo(name, int(port), type=socket.SOCK_STREAM)
        return sorted({(str(record[4][0]), int(record[4][1])) for record in records})

    return resolve


class EtcdSource:
    """The servers registered under kitex/registry-etcd/<service>/.

    A watch on the prefix (started on first use, in the worker process)
    marks the list changed as soon as a server registers or leaves; the
    periodic re-read stays as a safety net, since a watch stream can die
    without a word.

    etcd3gw reads a watch's stream in a thread of its own pool, and that
    pool's exit hook joins its threads: a watch left open kept every worker
    from exiting after "Worker exiting", until gunicorn killed it at the end
    of its graceful timeout. So the watch is cancelled at exit, whatever
    ends the worker (a hook registered after etcd3gw's, which runs first)."""

    def __init__(self, endpoints: str, service: str) -> None:
        self._client = etcd_client(endpoints, timeout_s=2)
        self._prefix = service_prefix(service)
        self._changed = False
        self._watcher: gevent.Greenlet | None = None
        self._cancel: Callable[[], None] | None = None  # the open watch's
        self._closed = False

    def changed(self) -> bool:
        changed, self._changed = self._changed, False
        return changed

    def __call__(self) -> list[Endpoint]:
        if self._watcher is None and not self._closed:
            self._watcher = gevent.spawn(self._watch)
            atexit.register(self.close)
        try:
            entries = self._client.get_prefix(self._prefix)
        except Exception as e:  # etcd3gw wraps transport errors in its own types
            raise OSError(f"etcd: {e}") from e
        found = [address for address in (tcp_address(value) for value, _ in entries) if address is not None]
        return sorted(set(found))

    def close(self) -> None:
        """Stop watching (and watch no more)."""
        self._closed = True
        self._stop_watch()

    def _watch(self) -> None:
        while not self._closed:
            try:
                events, self._cancel = self._client.watch_prefix(self._prefix)
                if self._closed:  # closed while the watch was being opened
                    self._stop_watch()
                for _event in events:
                    self._changed = True
            except Exception as e:
                log.debug("etcd watch ended (%s); watching again", e)
            self._stop_watch()  # its thread ends with the stream
            gevent.sleep(1)

    def _stop_watch(self) -> None:
        cancel, self._cancel = self._cancel, None
        if cancel is not None:
            cancel()  # shuts the stream's socket: the thread reading it returns


class Endpoints:
    def __init__(
        self,
        source: Callable[[], list[Endpoint]],
        refresh_s: float,
        eject_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._clock = clock
        self._refresh_s = refresh_s
        self._eject_s = eject_s
        self._endpoints: list[Endpoint] = []
        self._resolved_at = float("-inf")
        self._ejected_until: dict[Endpoint, float] = {}
        self._next = 0

    def order(self) -> list[Endpoint]:
        """Every endpoint, to try in this order: healthy ones round-robin
        (starting one further each call), then ejected ones whose probe time
        has come, then the rest."""
        now = self._clock()
        self._refresh(now)
        count = len(self._endpoints)
        if not count:
            return []
        start, self._next = self._next % count, self._next + 1
        rotated = self._endpoints[start:] + self._endpoints[:start]
        healthy = [e for e in rotated if self._ejected_until.get(e, 0) <= now]
        ejected = sorted((e for e in rotated if e not in healthy), key=lambda e: self._ejected_until[e])
        return healthy + ejected

    def failed(self, endpoint: Endpoint) -> None:
        if endpoint not in self._ejected_until:
            log.warning("ejecting RPC endpoint %s:%d for %.0f s after a connect failure", *endpoint, self._eject_s)
        self._ejected_until[endpoint] = self._clock() + self._eject_s
        EJECTED.set(len(self._ejected_until))

    def succeeded(self, endpoint: Endpoint) -> None:
        if self._ejected_until.pop(endpoint, None) is not None:
            log.info("RPC endpoint %s:%d is back", *endpoint)
            EJECTED.set(len(self._ejected_until))

    def _refresh(self, now: float) -> None:
        changed = getattr(self._source, "changed", None)
        if now - self._resolved_at < self._refresh_s and not (changed and changed()):
            return
        self._resolved_at = now
        try:
            endpoints = self._source()
        except OSError as e:  # DNS down: keep what we had
            log.warning("cannot resolve the RPC endpoints (%s); keeping %d known", e, len(self._endpoints))
            return
        if endpoints != self._endpoints:
            log.info("RPC endpoints: %s", ", ".join(f"{h}:{p}" for h, p in endpoints) or "none")
        self._endpoints = endpoints
        for gone in set(self._ejected_until) - set(endpoints):
            del self._ejected_until[gone]
