"""Set when this gunicorn worker begins to stop (SIGTERM, or a quick stop):
long-lived responses (event streams) end at once instead of holding the
graceful stop. Its own module, light, because the worker class imports it
in gunicorn's master, before gevent patches anything."""

from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event

STOPPING = Event()

_STOPPED = object()


def unless_stopping(call: Callable[..., Any], *args: Any) -> Any:
    """`call(*args)`, or STOPPED if the worker begins to stop first (the call
    is then abandoned: a long-poll's RPC, whose server ends it anyway)."""
    greenlet = gevent.spawn(call, *args)
    gevent.wait([greenlet, STOPPING], count=1)
    if not greenlet.ready():
        greenlet.kill(block=False)
        return _STOPPED
    return greenlet.get()  # its value, or its exception raised here


def stopped(result: Any) -> bool:
    return result is _STOPPED
