"""The HTTP edge against the shared stack: every integer field at its type's
bounds through each encoding (JSON, query string, form, multipart) on every
route that takes one, and through Thrift; bodies at the size limit, with a
Content-Length and chunked; multipart forms; the metrics' label values.

Each case is one request on a chat seeded once for the module, so the
tables stay fast."""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Api
from tests.servers import HttpServer, Stack

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
MAX_BODY_BYTES = 65536  # the stack's (the default)


@dataclass(frozen=True)
class Seeded:
    """A chat holding two messages, for the cases to read."""

    chat: str
    user: str
    send_times: list[int]


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> Seeded:
    api = Api(stack.http.url)
    tag = uuid.uuid4().hex[:10]
    chat = f"edge-{tag}:other-{tag}"
    return Seeded(chat, f"edge-{tag}", [api.send_ok(chat, f"m{i}", f"edge-{tag}") for i in range(2)])


# --- Integer fields at their bounds, through every encoding --------------------


def _encoded(encoding: str, fields: dict[str, Any]) -> dict[str, Any]:
    """requests' keyword arguments carrying `fields` in `encoding`."""
    text = {name: str(value).lower() if isinstance(value, bool) else str(value) for name, value in fields.items()}
    if encoding == "json":
        return {"json": fields}
    if encoding == "query":
        return {"params": text}
    if encoding == "form":
        return {"data": text}
    assert encoding == "multipart"
    return {"files": {name: (None, value) for name, value in text.items()}}


ENCODINGS = ["json", "query", "form", "multipart"]

# What a case expects: a status and a pattern of the error message, or a
# check of the 200 answer (given the seeded chat).
Check = Callable[[Any, Seeded], None]


def _all_messages(body: Any, s: Seeded) -> None:
    assert [m["send_time"] for m in body["messages"]] == s.send_times, body


def _newest_first(body: Any, s: Seeded) -> None:
    assert [m["send_time"] for m in body["messages"]] == s.send_times[::-1], body


def _no_message(body: Any, s: Seeded) -> None:
    assert body["messages"] == [] and body["has_more"] is False and body["next_cursor"] == 0, body


def _the_chat(body: Any, s: Seeded) -> None:
    assert [c["chat"] for c in body["chats"]] == [s.chat], body
    assert body["chats"][0]["last_send_time"] == s.send_times[-1], body


def _no_chat(body: Any, s: Seeded) -> None:
    assert body == {"chats": [], "has_more": False, "next_cursor": 0}, body


def _first_event_is_the_oldest(events: list[str], s: Seeded) -> None:
    assert events[:2] == [f"id: {s.send_times[0]}", f"id: {s.send_times[1]}"], events


def _no_event(events: list[str], s: Seeded) -> None:
    assert events == [], events


OUT_OF_RANGE = (400, "is out of range")


def _negative(field: str) -> tuple[int, str]:
    return (400, f"{field} must not be negative")


def _cursor_cases(at_zero: Check, beyond_int32: Check, at_max: Check) -> list[tuple[int, Any]]:
    return [
        (I64_MIN - 1, OUT_OF_RANGE),
        (I64_MIN, _negative("cursor")),
        (I32_MIN - 1, _negative("cursor")),
        (-1, _negative("cursor")),
        (0, at_zero),
        (I32_MAX + 1, beyond_int32),
        (I64_MAX - 1, at_max),
        (I64_MAX, at_max),
        (I64_MAX + 1, OUT_OF_RANGE),
    ]


def _int32_cases(field: str, ok: Check) -> list[tuple[int, Any]]:
    """An int32 field takes any int64 and is clamped (limit to the server's
    maximum; wait to PULL_MAX_WAIT_S): beyond int64 it is a 400."""
    return [
        (I64_MIN - 1, OUT_OF_RANGE),
        (I64_MIN, _negative(field)),
        (-(2**40), _negative(field)),
        (I32_MIN - 1, _negative(field)),
        (I32_MIN, _negative(field)),
        (-1, _negative(field)),
        (0, ok),
        (I32_MAX, ok),
        (I32_MAX + 1, ok),
        (I64_MAX, ok),
        (I64_MAX + 1, OUT_OF_RANGE),
    ]


# (name, route, field, the other fields given the seeded chat, [(value, expectation)])
INTEGER_FIELDS: list[tuple[str, str, str, Callable[[Seeded], dict[str, Any]], list[tuple[int, Any]]]] = [
    (
        "pull-cursor",
        "/api/pull",
        "cursor",
        lambda s: {"chat": s.chat},
        _cursor_cases(_all_messages, _all_messages, _no_message),
    ),
    (
        "pull-reverse-cursor",
        "/api/pull",
        "cursor",
        lambda s: {"chat": s.chat, "reverse": True},
        _cursor_cases(_newest_first, _no_message, _newest_first),
    ),
    ("pull-limit", "/api/pull", "limit", lambda s: {"chat": s.chat}, _int32_cases("limit", _all_messages)),
    # A page that is not empty answers at once, whatever the wait.
    ("pull-wait", "/api/pull", "wait", lambda s: {"chat": s.chat}, _int32_cases("wait", _all_messages)),
    ("chats-cursor", "/api/chats", "cursor", lambda s: {"user": s.user}, _cursor_cases(_the_chat, _no_chat, _the_chat)),
    ("chats-limit", "/api/chats", "limit", lambda s: {"user": s.user}, _int32_cases("limit", _the_chat)),
    (
        "subscribe-cursor",
        "/api/subscribe",
        "cursor",
        lambda s: {"chat": s.chat},
        _cursor_cases(_first_event_is_the_oldest, _first_event_is_the_oldest, _no_event),
    ),
]

INTEGER_CASES = [
    pytest.param(route, others_of, field, value, expected, encoding, id=f"{name}={value}-{encoding}")
    for name, route, field, others_of, cases in INTEGER_FIELDS
    for value, expected in cases
    for encoding in ENCODINGS
]


def _answer(r: requests.Response) -> str:
    """A response, for an assertion's message: an event stream's head only
    (reading its body would wait for the stream's end)."""
    if r.headers.get("Content-Type", "").startswith("text/event-stream"):
        return f"{r.status_code} event stream: {next(r.iter_lines(decode_unicode=True), '')!r}..."
    return f"{r.status_code} {r.text}"


def _stream_events(response: requests.Response) -> list[str]:
    """The `id:` lines of an event stream's first page: events up to the
    first heartbeat (an empty first page) or the first two events."""
    ids: list[str] = []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("id: "):
            ids.append(line)
            if len(ids) == 2:
                break
        elif line == ": heartbeat":
            break
    return ids


@pytest.mark.parametrize(("route", "others_of", "field", "value", "expected", "encoding"), INTEGER_CASES)
def test_integer_fields_at_their_bounds(
    api: Api,
    seeded: Seeded,
    route: str,
    others_of: Callable[[Seeded], dict[str, Any]],
    field: str,
    value: int,
    expected: Any,
    encoding: str,
) -> None:
    fields = {**others_of(seeded), field: value}
    streams = route == "/api/subscribe"
    with api.session.get(api.base_url + route, timeout=(5, 20), stream=streams, **_encoded(encoding, fields)) as r:
        if isinstance(expected, tuple):
            status, pattern = expected
            assert r.status_code == status, _answer(r)
            assert r.json()["code"] == status and re.search(pattern, r.json()["msg"]), r.text
            return
        assert r.status_code == 200, _answer(r)
        expected(_stream_events(r) if streams else r.json(), seeded)


# Last-Event-ID: a send_time this stream sent as `id:`. After the largest
# possible one nothing can follow: a 200 stream without events (a browser's
# EventSource treats any other status as final), never a 503.
LAST_EVENT_IDS: list[tuple[str, Any]] = [
    ("0", _first_event_is_the_oldest),
    (str(I64_MAX - 1), _no_event),
    (str(I64_MAX), _no_event),
    (str(I64_MAX + 1), (400, "Last-Event-ID")),
    ("9" * 19, (400, "Last-Event-ID")),
    ("1" * 20, (400, "Last-Event-ID")),
    ("-1", (400, "Last-Event-ID")),
    (str(I64_MIN), (400, "Last-Event-ID")),
    ("x", (400, "Last-Event-ID")),
]


@pytest.mark.parametrize(("last_event_id", "expected"), LAST_EVENT_IDS, ids=[c[0] for c in LAST_EVENT_IDS])
def test_last_event_id_at_its_bounds(api: Api, seeded: Seeded, last_event_id: str, expected: Any) -> None:
    with api.session.get(
        api.base_url + "/api/subscribe",
        params={"chat": seeded.chat},
        headers={"Last-Event-ID": last_event_id},
        stream=True,
        timeout=(5, 20),
    ) as r:
        if isinstance(expected, tuple):
            status, pattern = expected
            assert r.status_code == status, _answer(r)
            assert re.search(pattern, r.json()["msg"]), r.text
            return
        assert r.status_code == 200, _answer(r)
        assert r.headers["Content-Type"].startswith("text/event-stream")
        expected(_stream_events(r), seeded)


def test_a_stream_resumed_after_the_last_possible_id_stays_open_with_heartbeats(
    stack: Stack, seeded: Seeded, tmp_path: Path
) -> None:
    """`Last-Event-ID: 2**63-1`: nothing can come after it; the stream is
    kept, with heartbeats and no event, rather than refused (the browser
    would give up) or ended (the browser would reconnect for ever)."""
    server = HttpServer(tmp_path, stack.rpc.port, workers=1, SSE_HEARTBEAT_S="1")
    server.start()
    try:
        with requests.get(
            server.url + "/api/subscribe",
            params={"chat": seeded.chat},
            headers={"Last-Event-ID": str(I64_MAX)},
            stream=True,
            timeout=(5, 20),
        ) as r:
            assert r.status_code == 200, _answer(r)
            lines: list[str] = []
            for line in r.iter_lines(decode_unicode=True):
                lines.append(line)
                if lines.count(": heartbeat") == 3:
                    break
            assert not [line for line in lines if line.startswith(("id:", "data:"))], lines
    finally:
        server.stop()


# --- The same bounds through Thrift ---------------------------------------------

# (call, request fields given the seeded chat, expected Code, Msg pattern or a check of the response)
THRIFT_CASES: list[tuple[str, str, Callable[[Seeded], dict[str, Any]], int, Any]] = [
    ("pull cursor min", "Pull", lambda s: {"Chat": s.chat, "Cursor": I64_MIN, "Limit": 0}, 400, "cursor"),
    ("pull cursor -1", "Pull", lambda s: {"Chat": s.chat, "Cursor": -1, "Limit": 0}, 400, "cursor"),
    ("pull cursor max", "Pull", lambda s: {"Chat": s.chat, "Cursor": I64_MAX, "Limit": 0}, 0, 0),
    (
        "pull cursor max reverse",
        "Pull",
        lambda s: {"Chat": s.chat, "Cursor": I64_MAX, "Limit": 0, "Reverse": True},
        0,
        2,
    ),
    (
        "pull cursor max waiting",
        "Pull",
        lambda s: {"Chat": s.chat, "Cursor": I64_MAX - 1, "Limit": 0, "WaitMs": 1},
        0,
        0,
    ),
    ("pull limit min", "Pull", lambda s: {"Chat": s.chat, "Cursor": 0, "Limit": I32_MIN}, 400, "limit"),
    ("pull limit max", "Pull", lambda s: {"Chat": s.chat, "Cursor": 0, "Limit": I32_MAX}, 0, 2),
    ("pull wait min", "Pull", lambda s: {"Chat": s.chat, "Cursor": 0, "Limit": 0, "WaitMs": I32_MIN}, 400, "wait"),
    ("pull wait max", "Pull", lambda s: {"Chat": s.chat, "Cursor": 0, "Limit": 0, "WaitMs": I32_MAX}, 0, 2),
    ("chats cursor min", "ListChats", lambda s: {"User": s.user, "Cursor": I64_MIN}, 400, "cursor"),
    ("chats cursor max", "ListChats", lambda s: {"User": s.user, "Cursor": I64_MAX}, 0, 1),
    ("chats limit min", "ListChats", lambda s: {"User": s.user, "Limit": I32_MIN}, 400, "limit"),
    ("chats limit max", "ListChats", lambda s: {"User": s.user, "Limit": I32_MAX}, 0, 1),
]


@pytest.mark.parametrize(
    ("call", "fields", "code", "expected"), [c[1:] for c in THRIFT_CASES], ids=[c[0] for c in THRIFT_CASES]
)
def test_thrift_integers_at_their_bounds(
    thrift_client: Any, rpc: Any, seeded: Seeded, call: str, fields: Any, code: int, expected: Any
) -> None:
    request = getattr(rpc, f"{call}Request")(**fields(seeded))
    response = getattr(thrift_client(), call)(request)
    assert response.Code == code, response
    if code:
        assert re.search(expected, response.Msg), response
    else:
        items = response.Messages if call == "Pull" else response.Chats
        assert len(items) == expected, response


# --- Bodies at the size limit, with a Content-Length and chunked ---------------


def _send_body_of(size: int, chat: str, text: str) -> bytes:
    """A valid JSON send of exactly `size` bytes (padded with whitespace)."""
    body = json.dumps({"chat": chat, "text": text, "sender": chat.split(":")[0]}).encode()
    assert len(body) <= size
    return body[:-1] + b" " * (size - len(body)) + b"}"


def _chunks(body: bytes, size: int = 4000) -> Iterator[bytes]:
    """The body in pieces: requests then sends it chunked."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("size", "status"), [(MAX_BODY_BYTES, 200), (MAX_BODY_BYTES + 1, 413)])
def test_a_body_of_exactly_the_limit_is_read_one_byte_more_is_413(
    api: Api, chat: str, size: int, status: int, chunked: bool
) -> None:
    body = _send_body_of(size, chat, f"size {size}")
    headers = {"Content-Type": "application/json"}
    r = api.session.post(api.base_url + "/api/send", data=_chunks(body) if chunked else body, headers=headers)
    assert r.status_code == status, r.text
    if chunked:
        assert "Content-Length" not in r.request.headers and r.request.headers["Transfer-Encoding"] == "chunked"
    texts = [m["text"] for m in api.pull_all(chat)]
    assert texts == ([f"size {size}"] if status == 200 else []), texts
    if status == 413:
        assert r.json() == {"code": 413, "msg": f"request body larger than {MAX_BODY_BYTES} bytes"}


CHUNKED_BODIES: list[tuple[str, str, str, Callable[[str], bytes], str]] = [
    (
        "json send",
        "POST",
        "/api/send",
        lambda c: json.dumps({"chat": c, "text": "chunked", "sender": c.split(":")[0]}).encode(),
        "application/json",
    ),
    (
        "form send",
        "POST",
        "/api/send",
        lambda c: f"chat={c}&text=chunked&sender={c.split(':')[0]}".encode(),
        "application/x-www-form-urlencoded",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type"), [c[1:] for c in CHUNKED_BODIES], ids=[c[0] for c in CHUNKED_BODIES]
)
def test_a_chunked_body_is_read(
    api: Api, chat: str, method: str, path: str, body: Callable[[str], bytes], content_type: str
) -> None:
    data = body(chat)
    r = api.session.request(
        method, api.base_url + path, data=_chunks(data, 7), headers={"Content-Type": content_type}, timeout=10
    )
    assert r.status_code == 200, r.text
    assert [m["text"] for m in api.pull_all(chat)] == ["chunked"]
    # A pull's JSON body on a GET, chunked too.
    pull = json.dumps({"chat": chat, "reverse": True}).encode()
    r = api.session.get(api.base_url + "/api/pull", data=_chunks(pull, 5), headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and [m["text"] for m in r.json()["messages"]] == ["chunked"], r.text


def _raw_exchange(stack: Stack, request: bytes) -> tuple[str, dict[str, Any], bool]:
    """Send raw bytes; return (status line, JSON body, whether the server then closed)."""
    with socket.create_connection(("127.0.0.1", stack.http.port), timeout=10) as sock:
        sock.sendall(request)
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(65536)
            assert chunk, response
            response += chunk
        head, _, body = response.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *([0-9]+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, response
            body += chunk
        try:
            closed = sock.recv(65536) == b""  # the socket's 10 s timeout is the deadline
        except ConnectionResetError:  # closed with some of the body unread
            closed = True
    return head.decode().split("\r\n")[0], json.loads(body), closed


# (what, head lines after the request line, body bytes, expected status, message pattern)
RAW_BODIES: list[tuple[str, str, bytes, int, str]] = [
    (
        "malformed chunk size",
        "Transfer-Encoding: chunked\r\n",
        b"zz\r\nabc\r\n0\r\n\r\n",
        400,
        "chunked",
    ),
    (
        "chunk longer than said",
        "Transfer-Encoding: chunked\r\n",
        b"2\r\nabcdef\r\n0\r\n\r\n",
        400,
        "chunked",
    ),
    (
        "a transfer coding other than chunked",
        "Transfer-Encoding: gzip\r\n",
        b'{"chat": "a:b"}',
        400,
        "Transfer-Encoding",
    ),
    (
        "chunked not the last coding",
        "Transfer-Encoding: chunked, gzip\r\n",
        b"0\r\n\r\n",
        400,
        "Transfer-Encoding",
    ),
    (
        "endless chunked body",
        "Transfer-Encoding: chunked\r\n",
        b"".join(b"1000\r\n" + b" " * 4096 + b"\r\n" for _ in range(17)),
        413,
        "larger than 65536",
    ),
]


@pytest.mark.parametrize(
    ("head", "body", "status", "pattern"), [c[1:] for c in RAW_BODIES], ids=[c[0] for c in RAW_BODIES]
)
def test_a_body_that_cannot_be_read_is_refused_and_the_connection_closed(
    stack: Stack, head: str, body: bytes, status: int, pattern: str
) -> None:
    request = f"POST /api/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}\r\n".encode() + body
    status_line, answer, closed = _raw_exchange(stack, request)
    assert status_line.startswith(f"HTTP/1.1 {status} "), (status_line, answer)
    assert answer["code"] == status and re.search(pattern, answer["msg"]), answer
    assert closed, "the server kept a connection whose body it did not read"


# --- Multipart and url-encoded forms ----------------------------------------------


def _part(name: str, value: str | bytes, filename: str | None = None, content_type: str | None = None) -> Any:
    """A multipart part, as requests' `files` takes it (no filename and no content type: a plain text field)."""
    return (name, (filename, value, content_type) if content_type else (filename, value))


def _send_parts(c: str, *extra: Any, text: Any = None) -> dict[str, Any]:
    """A multipart send: chat, `text` (a plain field by default), sender, then `extra` parts."""
    parts = [_part("chat", c), text or _part("text", "by multipart"), _part("sender", c.split(":")[0]), *extra]
    return {"files": parts}


# (what, request kwargs given the chat, expected status, message pattern)
FORM_CASES: list[tuple[str, Callable[[str], dict[str, Any]], int, str]] = [
    ("multipart send", lambda c: _send_parts(c), 200, ""),
    (
        "multipart text/plain with a charset",
        lambda c: _send_parts(c, text=_part("text", "by multipart", None, "text/plain; charset=utf-8")),
        200,
        "",
    ),
    ("multipart field twice", lambda c: _send_parts(c, _part("chat", c)), 400, "chat is given more than once"),
    (
        "multipart field three times",
        lambda c: _send_parts(c, _part("text", "a"), _part("text", "b")),
        400,
        "text is given more than once",
    ),
    ("multipart unknown field", lambda c: _send_parts(c, _part("txet", "x")), 400, "unknown field 'txet'"),
    (
        "multipart file part (text/plain)",
        lambda c: _send_parts(c, text=_part("text", "hello", "note.txt", "text/plain")),
        400,
        "text must be text, not a file",
    ),
    (
        "multipart file part (octet-stream)",
        lambda c: _send_parts(c, text=_part("text", "hello", "a.bin", "application/octet-stream")),
        400,
        "text must be text, not a file",
    ),
    (
        "multipart file part without a content type",
        lambda c: _send_parts(c, text=_part("text", "hello", "note.txt")),
        400,
        "text must be text, not a file",
    ),
    (
        "multipart non-text part",
        lambda c: _send_parts(c, text=_part("text", "{}", None, "application/json")),
        400,
        "text must be text, not a file",
    ),
    (
        "multipart unknown charset",
        lambda c: _send_parts(c, text=_part("text", "x", None, "text/plain; charset=nope")),
        400,
        "malformed multipart",
    ),
    (
        "multipart bytes not in the charset",
        lambda c: _send_parts(c, text=_part("text", b"\xff\xfe", None, "text/plain; charset=utf-8")),
        400,
        "malformed multipart",
    ),
    (
        "multipart pull limit not a number",
        lambda c: {"files": [_part("chat", c), _part("limit", "ten")]},
        400,
        "limit must be an integer",
    ),
    (
        "multipart pull reverse not a boolean",
        lambda c: {"files": [_part("chat", c), _part("reverse", "yes")]},
        400,
        "reverse must be a boolean",
    ),
    ("form field twice", lambda c: {"data": [("chat", c), ("chat", c), ("text", "x")]}, 400, "more than once"),
    (
        "form unknown field",
        lambda c: {"data": {"chat": c, "text": "x", "sender": c.split(":")[0], "txet": "x"}},
        400,
        "unknown field 'txet'",
    ),
]


@pytest.mark.parametrize(("kwargs", "status", "pattern"), [c[1:] for c in FORM_CASES], ids=[c[0] for c in FORM_CASES])
def test_forms(api: Api, chat: str, kwargs: Callable[[str], dict[str, Any]], status: int, pattern: str) -> None:
    given = kwargs(chat)
    pulls = any(part[0] in ("limit", "reverse") for part in given.get("files", ()))
    r = api.session.request(
        "GET" if pulls else "POST", api.base_url + ("/api/pull" if pulls else "/api/send"), timeout=10, **given
    )
    assert r.status_code == status, r.text
    if status != 200:
        assert r.json()["code"] == status and re.search(pattern, r.json()["msg"]), r.text
    texts = [m["text"] for m in api.pull_all(chat)]
    assert texts == (["by multipart"] if status == 200 else []), texts


# --- Metrics: bounded label values --------------------------------------------------


def test_unknown_methods_and_routes_count_under_one_label(stack: Stack) -> None:
    """400 requests with made-up methods (and paths) grow /metrics by less
    than 50 KB: they count under method="other" (route="other"), not one
    series each (which grew it by ~5 KB a request, for ever, on disk)."""
    metrics = stack.http.url + "/metrics"
    with requests.Session() as session:
        session.get(stack.http.url + "/api/nope", timeout=10)  # so that the "other" series exist already
        session.request("MADEUP", stack.http.url + "/api/pull", timeout=10)
        before = session.get(metrics, timeout=10).text
        for i in range(400):
            tag = f"{uuid.uuid4().hex}{i}"
            r = session.request(f"X-{tag}".upper(), f"{stack.http.url}/api/{'pull' if i % 2 else tag}", timeout=10)
            assert r.status_code in (400, 404, 405), r.text
        after = session.get(metrics, timeout=10).text
    assert len(after) - len(before) < 50_000, f"/metrics grew from {len(before)} to {len(after)} bytes"
    assert re.search(r'http_requests_total\{method="other",route="other",status="404"\} [0-9.]+', after), after
    assert re.search(r'http_requests_total\{method="other",route="/api/pull",status="[0-9]+"\}', after), after
    assert "X-" not in after


def test_a_body_cut_short_by_the_client_is_not_a_500(stack: Stack, chat: str) -> None:
    """Content-Length 100, seven bytes, then the client shuts its side: the
    body can never arrive, and the answer (if the client still reads one) is
    a 4xx, never a 500; nothing is stored."""
    with socket.create_connection(("127.0.0.1", stack.http.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"chat"'
        )
        sock.shutdown(socket.SHUT_WR)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    status_line = response.split(b"\r\n", 1)[0].decode()
    assert not status_line or re.match(r"HTTP/1\.1 4\d\d ", status_line), response
    log = stack.http.log()
    assert "Traceback" not in log, log[-3000:]
    assert not [line for line in stack.http.log_lines() if line.get("status") == 500], log[-3000:]


def test_a_json_body_sent_as_a_form_says_what_to_change(api: Api, chat: str) -> None:
    """curl -d '{...}' without -H 'Content-Type: application/json' sends
    application/x-www-form-urlencoded: the answer names the header to add."""
    body = json.dumps({"chat": chat, "text": "hi", "sender": chat.split(":")[0]})
    r = api.session.post(
        api.base_url + "/api/send",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert r.status_code == 400, r.text
    assert "Content-Type: application/json" in r.json()["msg"], r.text
    assert api.pull_ok(chat)["messages"] == []
