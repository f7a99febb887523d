"""GET /api/subscribe: a chat's messages as Server-Sent Events.

Every message with send_time >= cursor, oldest first, then each new one as
it is stored: `id:` is the send_time, `data:` the message's JSON. A client
that reconnects with `Last-Event-ID` resumes right after that event
(cursor = id + 1), so nothing is missed and nothing repeated. After the
largest id there can be (2^63 - 1) nothing can follow: the stream is kept,
with heartbeats only, since a browser's EventSource treats a refusal as
final and would reconnect for ever to a stream that ends.

The stream is a loop of long-poll pulls through the RPC server, from the
cursor after the last event sent: the HTTP tier still speaks only Thrift,
and a wake-up that was missed delays an event, never loses one. An empty
long-poll sends a comment line (a heartbeat), so that proxies keep an idle
stream open. A client that does not read is dropped after the worker's
socket timeout (HTTP_KEEPALIVE_S): nothing is buffered for it.

Streams end at once, cleanly, when the worker stops (SIGTERM), or when the
RPC server or Redis fails: the client reconnects, with Last-Event-ID, to
this server or another.

A subscription that cannot be served now (the worker is stopping, it has
SSE_MAX_STREAMS streams, or the RPC server or Redis is unavailable) is
refused with a 200 event stream that says why and ends: `retry:` (the
reconnection delay), then an `unavailable` event whose data is the
`{"code": 503, "msg"}` a JSON client would have got. Never with a non-200
status: a browser's EventSource treats any other answer as final and never
reconnects, whereas after this one it reconnects by itself, with
Last-Event-ID. Bad input (400, 401, 403) is final, and answered as usual.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import falcon
import gevent

from http_server import codec
from http_server.admission import Overloaded, count_refused
from http_server.errors import ApiError
from http_server.message_service import MessageService
from http_server.params import INT64_MAX, read_params
from http_server.resources import caller
from http_server.stopping import STOPPING, stopped, unless_stopping

_EVENT_ID = re.compile(r"[0-9]{1,19}")
_EMPTY_PAGE = SimpleNamespace(Messages=())


class Subscribe:
    def __init__(self, service: MessageService, max_streams: int, heartbeat_s: int) -> None:
        self._service = service
        self._max_streams = max_streams
        self._heartbeat_s = heartbeat_s
        self._streams = 0

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = codec.decode("SubscribeRequest", read_params(req, 4096))
        chat, cursor = fields["chat"] or "", _resume_cursor(req) or fields["cursor"] or 0
        req.context.chat = chat
        if STOPPING.is_set():
            _refuse(resp, "this server is stopping; reconnect", retry_s=1)
            return
        if self._streams >= self._max_streams:
            _refuse(resp, f"too many streams on this server ({self._max_streams}); retry", retry_s=1)
            return
        # The first page before the stream starts: bad input is answered as
        # usual (400, 403), not mid-stream.
        try:
            first = self._pull(chat, cursor, req, wait_s=0)
        except ApiError as e:
            if e.status_code != 503:
                raise
            if isinstance(e, Overloaded):
                count_refused(req.path)
            retry_s = int(dict(e.headers or ()).get("Retry-After", "1"))
            _refuse(resp, e.description or "storage unavailable", retry_s)
            return
        _stream_headers(resp)
        resp.stream = self._events(chat, cursor, first, req)

    def _events(self, chat: str, cursor: int, page: Any, req: falcon.Request) -> Iterator[bytes]:
        self._streams += 1
        try:
            yield b": stream of " + chat.encode() + b"\n\n"
            while True:
                for message in page.Messages or ():
                    yield _event(message)
                    cursor = message.SendTime + 1
                if not page.Messages:
                    yield b": heartbeat\n\n"
                page = self._wait(chat, cursor, req)
                if page is None:  # stopping, or the service failed: the client reconnects
                    return
        finally:
            self._streams -= 1

    def _wait(self, chat: str, cursor: int, req: falcon.Request) -> Any | None:
        """The next page, long-polled; None when the worker stops first or
        the call fails."""
        try:
            page = unless_stopping(self._pull, chat, cursor, req, self._heartbeat_s)
        except ApiError:
            return None
        return None if stopped(page) else page

    def _pull(self, chat: str, cursor: int, req: falcon.Request, wait_s: int) -> Any:
        if cursor > INT64_MAX:  # after the last possible send_time: nothing can follow
            return self._past_the_end(chat, req, wait_s)
        return self._service.pull(chat, cursor, 100, False, caller(req), req.context.request_id, wait_s)

    def _past_the_end(self, chat: str, req: falcon.Request, wait_s: int) -> Any:
        """An empty page for a cursor beyond any send_time (it does not fit
        Thrift's i64); the first one still checks the chat (400, 403, 503)."""
        if wait_s:
            gevent.sleep(wait_s)  # (a heartbeat's wait, ended at once when the worker stops)
        else:
            self._service.pull(chat, INT64_MAX, 1, False, caller(req), req.context.request_id)
        return _EMPTY_PAGE


def _stream_headers(resp: falcon.Response) -> None:
    resp.content_type = "text/event-stream"
    resp.set_header("Cache-Control", "no-cache")
    resp.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer the stream


def _refuse(resp: falcon.Response, reason: str, retry_s: int) -> None:
    """A stream that says why it cannot be served now, and ends; the client
    reconnects after `retry_s` (see the module's docstring)."""
    _stream_headers(resp)
    data = json.dumps({"code": 503, "msg": reason})
    resp.data = f"retry: {retry_s * 1000}\nevent: unavailable\ndata: {data}\n\n".encode()


def _resume_cursor(req: falcon.Request) -> int | None:
    """Last-Event-ID (a send_time we sent as `id:`) + 1, if the header is
    there: INT64_MAX + 1 after the last possible one."""
    last = req.get_header("Last-Event-ID")
    if last is None:
        return None
    if not _EVENT_ID.fullmatch(last.strip()) or int(last) > INT64_MAX:
        raise ApiError(400, f"Last-Event-ID must be the id of an event of this stream (a send_time, 0 to {INT64_MAX})")
    return int(last) + 1


def _event(message: Any) -> bytes:
    data = json.dumps(codec.encode("Message", message), ensure_ascii=False)
    return f"id: {message.SendTime}\ndata: {data}\n\n".encode()
