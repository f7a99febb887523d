"""A metric's child per label values, looked up once.

prometheus_client's `labels()` checks and converts its arguments and takes
a lock on every call; on a per-request path that showed in the profile.
The servers' label values are bounded sets (routes, methods, status codes,
Thrift methods and codes), so a dict of the children stays small.

No prometheus_client import here (see plumbing.logs: gunicorn's master
loads plumbing before the metrics directory is set up): the metric is
passed in.
"""

from __future__ import annotations

from typing import Any


class Children:
    """`Children(metric)(*values)` is `metric.labels(*values)` (each value
    as str), built on the first call with those values."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[object, ...], Any] = {}

    def __call__(self, *values: object) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*(str(value) for value in values))
        return child
