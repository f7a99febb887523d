"""Registration in etcd, exactly as Kitex's registry-etcd does it, so that a
Kitex client resolving through etcd finds this Python server (and our HTTP
server finds Kitex servers the same way): the key and value of
plumbing.kitex_etcd, under a lease (60 s) refreshed a third of the way
through, and revoked on shutdown, which deletes the key at once. If etcd is unreachable the server
serves anyway and keeps trying to register. One registration per server:
with --workers, the supervisor registers, not each worker.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import gevent

from plumbing.kitex_etcd import etcd_client, instance_value, service_prefix

log = logging.getLogger(__name__)


def advertised_address(host: str, port: int, advertise: str) -> str:
    """`advertise` if given, else host:port with a routable host for 0.0.0.0."""
    if advertise:
        return advertise
    if host in ("0.0.0.0", "", "::"):
        host = socket.gethostbyname(socket.gethostname())
    return f"{host}:{port}"


class EtcdRegistration:
    def __init__(self, endpoints: str, service: str, address: str, ttl_s: int) -> None:
        self._client = etcd_client(endpoints, timeout_s=3.0)
        self._key = service_prefix(service) + address
        self._value = instance_value(address)
        self._ttl_s = ttl_s
        self._lease: Any = None
        self._keeper: gevent.Greenlet | None = None

    def start(self) -> None:
        self._keeper = gevent.spawn(self._keep)

    def stop(self) -> None:
        """Remove the key (by revoking its lease), before the server stops."""
        if self._keeper is not None:
            self._keeper.kill()
        if self._lease is not None:
            try:
                self._lease.revoke()
                log.info("deregistered %s from etcd", self._key)
            except Exception as e:  # etcd gone: the lease expires by itself
                log.warning("could not deregister from etcd (%s); the lease expires in %d s", e, self._ttl_s)

    def _keep(self) -> None:
        while True:
            try:
                if self._lease is None:
                    self._lease = self._client.lease(ttl=self._ttl_s)
                    self._client.put(self._key, self._value, lease=self._lease)
                    log.info("registered %s in etcd (lease %d s)", self._key, self._ttl_s)
                elif self._lease.refresh() <= 0:  # expired meanwhile: register again
                    self._lease = None
                    continue
            except Exception as e:
                log.warning("etcd registration of %s failed (%s); retrying", self._key, e)
                self._lease = None
                gevent.sleep(2)
                continue
            gevent.sleep(self._ttl_s / 3)
