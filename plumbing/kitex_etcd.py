"""The etcd layout of Kitex's registry-etcd (kitex-contrib/registry-etcd),
shared by the RPC server, which registers in it, and the HTTP server,
which resolves RPC servers from it; a Kitex client or server reads and
writes the same keys:

    key    kitex/registry-etcd/<service name>/<host:port>
    value  {"network":"tcp","address":"<host:port>","weight":10,"tags":{}}

This is etcd's namespace, not Redis's: no storage key lives here.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from etcd3gw.client import Etcd3Client

KEY_PREFIX = "kitex/registry-etcd/"


def service_prefix(service: str) -> str:
    """The prefix under which every instance of `service` is registered."""
    return f"{KEY_PREFIX}{service}/"


def instance_value(address: str) -> str:
    """The JSON Go's encoding/json writes for Kitex's registry info (no spaces)."""
    return json.dumps({"network": "tcp", "address": address, "weight": 10, "tags": {}}, separators=(",", ":"))


def tcp_address(value: str | bytes) -> tuple[str, int] | None:
    """(host, port) of a registration's value, or None if it is not TCP."""
    info = json.loads(value)
    if info.get("network", "tcp") != "tcp":
        return None
    host, _, port = info["address"].rpartition(":")
    return host.strip("[]"), int(port)


def etcd_client(endpoints: str, timeout_s: float) -> Etcd3Client:
    """A client (etcd's JSON gateway) for the first of `endpoints` ("http://host:2379,...")."""
    first = endpoints.split(",")[0].strip()
    url = urlsplit(first if "://" in first else f"http://{first}")
    return Etcd3Client(host=url.hostname or "127.0.0.1", port=url.port or 2379, protocol=url.scheme, timeout=timeout_s)
