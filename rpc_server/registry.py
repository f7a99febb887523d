"""Registration in etcd, exactly as Kitex's registry-etcd does it, so that a
Kitex client resolving through etcd finds this Python server (and our HTTP
server finds Kitex servers the same way):

    key    kitex/registry-etcd/<service name>/<host:port>
    value  {"network":"tcp","address":"<host:port>","weight":10,"tags":{}}

under a lease (60 s) refreshed a third of the way through, and revoked on
shutdown, which deletes the key at once. If etcd is unreachable the server
serves anyway and keeps trying to register. One registration per server:
with --workers, the supervisor registers, not each worker.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import gevent
from etcd3gw.client import Etcd3Client

log = logging.getLogger(__name__)

KEY_PREFIX = "kitex/registry-etcd/"


def service_prefix(service: str) -> str:
    return f"{KEY_PREFIX}{service}/"


def kitex_value(address: str) -> str:
    """The JSON Go's encoding/json writes for Kitex's registry info (no spaces)."""
    return json.dumps({"network": "tcp", "address": address, "weight": 10, "tags": {}}, separators=(",", ":"))


def advertised_address(host: str, port: int, advertise: str) -> str:
    """`advertise` if given, else host:port with a routable host for 0.0.0.0."""
    if advertise:
        return advertise
    if host in ("0.0.0.0", "", "::"):
        host = socket.gethostbyname(socket.gethostname())
    return f"{host}:{port}"


def etcd_client(endpoints: str, timeout_s: float = 3.0) -> Etcd3Client:
    """A client for the first of ETCD_ENDPOINTS ("http://host:2379,...")."""
    first = endpoints.split(",")[0].strip()
    url = urlsplit(first if "://" in first else f"http://{first}")
    return Etcd3Client(host=url.hostname or "127.0.0.1", port=url.port or 2379, protocol=url.scheme, timeout=timeout_s)


class EtcdRegistration:
    def __init__(self, endpoints: str, service: str, address: str, ttl_s: int) -> None:
        self._client = etcd_client(endpoints)
        self._key = service_prefix(service) + address
        self._value = kitex_value(address)
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
