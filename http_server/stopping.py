"""Set when this gunicorn worker begins to stop (SIGTERM, or a quick stop):
long-lived responses (event streams) end at once instead of holding the
graceful stop. Its own module, with nothing else in it, because the worker
class imports it in gunicorn's master, before gevent patches anything."""

from gevent.event import Event

STOPPING = Event()
