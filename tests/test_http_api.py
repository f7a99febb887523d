"""The HTTP API against a real stack: the seed's examples, both pull
encodings, the data model's promises, and every validation error."""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.conftest import Api
from tests.servers import ROOT, Stack

# --- The seed's own examples ------------------------------------------------


def test_ping(api: Api) -> None:
    r = api.session.get(api.base_url + "/ping")
    assert r.status_code == 200
    assert r.json() == {"message": "pong"}


def test_seed_send_example_stores_and_returns_send_time(api: Api, chat: str) -> None:
    # curl --location 'localhost:8080/api/send' --header 'Content-Type: application/json' --data '{...}'
    member = chat.split(":")[1]
    r = api.session.post(
        api.base_url + "/api/send",
        data=json.dumps({"chat": chat, "text": "hello", "sender": member}),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200
    send_time = r.json()["send_time"]
    assert isinstance(send_time, int) and send_time > 1_600_000_000_000_000  # microseconds
    page = api.pull_ok(chat)
    assert page == {
        "messages": [{"chat": chat, "text": "hello", "sender": member, "send_time": send_time}],
        "has_more": False,
        "next_cursor": 0,
        "history_truncated": False,
    }


def test_seed_pull_example_json_body_on_get_reverse(api: Api, chat: str) -> None:
    a, b = chat.split(":")
    t1 = api.send_ok(chat, "Hello how are you?", a)
    t2 = api.send_ok(chat, "I am good!", b)
    page = api.pull_ok(chat, cursor=0, limit=10, reverse=True)
    assert [(m["text"], m["sender"], m["send_time"]) for m in page["messages"]] == [
        ("I am good!", b, t2),
        ("Hello how are you?", a, t1),
    ]
    assert page["has_more"] is False and page["next_cursor"] == 0


def test_json_body_wins_over_query_string(api: Api, chat: str) -> None:
    """The seed's screenshot: ?chat=a1:a2... in the URL, another chat in the body."""
    api.send_ok(chat, "from the body's chat", chat.split(":")[0])
    r = api.session.get(
        api.base_url + "/api/pull?chat=a1:a2&cursor=0&limit=2&reverse=true",
        json={"chat": chat, "cursor": 0, "limit": 10, "reverse": True},
    )
    assert r.status_code == 200
    assert [m["text"] for m in r.json()["messages"]] == ["from the body's chat"]


def test_query_string_pull(api: Api, chat: str) -> None:
    a = chat.split(":")[0]
    times = [api.send_ok(chat, f"m{i}", a) for i in range(3)]
    r = api.session.get(api.base_url + "/api/pull", params={"chat": chat, "cursor": 0, "limit": 2, "reverse": "TRUE"})
    assert r.status_code == 200
    body = r.json()
    assert [m["send_time"] for m in body["messages"]] == [times[2], times[1]]
    assert body["has_more"] is True and body["next_cursor"] == times[0]
    r = api.session.get(api.base_url + "/api/pull", params={"chat": chat, "cursor": times[1], "reverse": "0"})
    assert [m["text"] for m in r.json()["messages"]] == ["m1", "m2"]


def test_send_as_form_query_string_and_multipart(api: Api, chat: str) -> None:
    a, b = chat.split(":")
    url = api.base_url + "/api/send"
    assert api.session.post(url, data={"chat": chat, "text": "form", "sender": a}).status_code == 200
    assert api.session.post(url, params={"chat": chat, "text": "query", "sender": b}).status_code == 200
    multipart = {"chat": (None, chat), "text": (None, "multipart"), "sender": (None, a.upper())}
    assert api.session.post(url, files=multipart).status_code == 200
    assert [(m["text"], m["sender"]) for m in api.pull_all(chat)] == [("form", a), ("query", b), ("multipart", a)]


def test_send_accepts_sender_and_receiver_from_the_seed_table(api: Api, chat: str) -> None:
    a, b = chat.split(":")
    r = api.session.post(api.base_url + "/api/send", json={"sender": b, "receiver": a, "text": "hi"})
    assert r.status_code == 200, r.text
    assert [m["sender"] for m in api.pull_all(chat)] == [b]


def test_pull_form_encoding(api: Api, chat: str) -> None:
    api.send_ok(chat, "x", chat.split(":")[0])
    r = api.session.get(api.base_url + "/api/pull", data={"chat": chat, "limit": "1"})
    assert r.status_code == 200 and [m["text"] for m in r.json()["messages"]] == ["x"]


def test_empty_pull_has_every_key(api: Api, chat: str) -> None:
    assert api.pull_ok(chat) == {"messages": [], "has_more": False, "next_cursor": 0, "history_truncated": False}


def test_response_fields_match_the_http_idl(api: Api, chat: str) -> None:
    proto = (ROOT / "idl" / "idl_http.proto").read_text()

    def fields(message: str) -> set[str]:
        body = re.search(rf"message {message} \{{(.*?)\}}", proto, re.S)
        assert body, message
        return set(re.findall(r"^\s*(?:repeated\s+)?\w+\s+(\w+)\s*=", body.group(1), re.M))

    a = chat.split(":")[0]
    send = api.send(chat, "x", a).json()
    page = api.pull_ok(chat)
    assert set(send) == fields("SendResponse")
    assert set(page) == fields("PullResponse")
    assert set(page["messages"][0]) == fields("Message")


def test_chat_is_echoed_as_written_and_sender_is_lowercase(api: Api, chat: str) -> None:
    a, b = chat.split(":")
    written = f"{b.upper()}:{a}"
    r = api.send(written, "hi", b.upper())
    assert r.status_code == 200
    [message] = api.pull_ok(written)["messages"]
    assert message["chat"] == written
    assert message["sender"] == b
    assert api.pull_ok(chat)["messages"][0]["chat"] == chat  # the same chat


# --- Data model ---------------------------------------------------------------


def test_identical_messages_in_the_same_second_are_all_kept(api: Api, chat: str) -> None:
    a = chat.split(":")[0]
    times = [api.send_ok(chat, "same text", a) for _ in range(20)]
    assert times == sorted(set(times))  # unique, strictly increasing
    assert [m["send_time"] for m in api.pull_all(chat)] == times


def test_limit_defaults_to_ten_and_is_clamped(api: Api, chat: str, thrift_client: Any, rpc: Any) -> None:
    a = chat.split(":")[0]
    client = thrift_client()
    for i in range(105):
        assert client.Send(rpc.SendRequest(message=rpc.Message(Chat=chat, Text=str(i), Sender=a))).Code == 0
    assert len(api.pull_ok(chat)["messages"]) == 10
    assert len(api.pull_ok(chat, limit=0)["messages"]) == 10
    for limit in (1000, 2**31 - 1, 2**40):  # 2**40: beyond int32, clamped before the Thrift call
        page = api.pull_ok(chat, limit=limit)
        assert len(page["messages"]) == 100 and page["has_more"] is True
    assert len(api.pull_all(chat)) == 105


def test_cursor_is_an_inclusive_send_time_in_both_directions(api: Api, chat: str) -> None:
    a = chat.split(":")[0]
    t = [api.send_ok(chat, str(i), a) for i in range(5)]
    assert [m["text"] for m in api.pull_ok(chat, cursor=t[2])["messages"]] == ["2", "3", "4"]
    assert [m["text"] for m in api.pull_ok(chat, cursor=t[2], reverse=True)["messages"]] == ["2", "1", "0"]
    assert [m["text"] for m in api.pull_ok(chat, cursor=t[2] + 1)["messages"]] == ["3", "4"]
    assert [m["text"] for m in api.pull_ok(chat, cursor=t[2] - 1, reverse=True)["messages"]] == ["1", "0"]
    page = api.pull_ok(chat, cursor=0, limit=2)
    assert page["next_cursor"] == t[2] and page["has_more"] is True
    page = api.pull_ok(chat, cursor=t[3], limit=2)
    assert page["next_cursor"] == 0 and page["has_more"] is False  # exact: no empty extra page


@pytest.mark.parametrize("reverse", [False, True])
def test_paging_with_concurrent_writers_yields_each_message_once(api: Api, chat: str, reverse: bool) -> None:
    a, b = chat.split(":")
    for i in range(40):
        api.send_ok(chat, f"before-{i}", a)
    stop = threading.Event()

    def write() -> None:
        writer = Api(api.base_url)
        i = 0
        while not stop.is_set() and i < 300:
            writer.send_ok(chat, f"during-{i}", b)
            i += 1

    writers = [threading.Thread(target=write) for _ in range(3)]
    for w in writers:
        w.start()
    try:
        paged: list[dict[str, Any]] = []
        cursor = 0
        while True:
            page = api.pull_ok(chat, cursor=cursor, limit=7, reverse=reverse)
            paged += page["messages"]
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
    finally:
        stop.set()
        for w in writers:
            w.join()

    times = [m["send_time"] for m in paged]
    everything = [m["send_time"] for m in api.pull_all(chat)]
    if reverse:
        # Every message up to the newest at the start, newest first, none skipped.
        assert times == sorted(t for t in everything if t <= times[0])[::-1]
    else:
        # Every message up to the last page, oldest first, none skipped.
        assert times == [t for t in everything if t <= times[-1]]
    assert len(set(times)) == len(times)
    assert sum(m["text"].startswith("before-") for m in paged) == 40


def test_1000_concurrent_sends_are_each_stored_exactly_once(api: Api, chat: str) -> None:
    """1000 clients at once, each retrying a 503 with its Idempotency-Key
    (as a real client would): every message is stored exactly once."""
    a, b = chat.split(":")
    start = threading.Barrier(1000, timeout=60)
    unavailable = []

    def send(i: int) -> int:
        key = uuid.uuid4().hex
        start.wait()
        for _ in range(100):
            try:
                r = requests.post(
                    api.base_url + "/api/send",
                    json={"chat": chat, "text": f"message {i}", "sender": (a, b)[i % 2]},
                    headers={"Idempotency-Key": key},
                    timeout=10,
                )
            except requests.ConnectionError:
                unavailable.append(i)
                continue
            if r.status_code == 503:
                unavailable.append(i)
                continue
            assert r.status_code == 200, r.text
            return int(r.json()["send_time"])
        raise AssertionError(f"message {i} was never acknowledged")

    with ThreadPoolExecutor(max_workers=1000) as pool:
        acknowledged = list(pool.map(send, range(1000)))

    stored = api.pull_all(chat)
    assert len(stored) == 1000
    assert sorted(int(m["text"].split()[1]) for m in stored) == list(range(1000))
    assert sorted(acknowledged) == [m["send_time"] for m in stored]
    print(f"{len(unavailable)} of 1000 sends were retried after a 503 or a refused connection")


def test_idempotent_retry_returns_the_first_result_and_stores_once(api: Api, chat: str) -> None:
    a, b = chat.split(":")
    first = api.send(chat, "once", a, key="retry-1")
    again = api.send(chat, "once", a.upper(), key="retry-1")  # same sender, canonically
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    conflict = api.send(chat, "something else", a, key="retry-1")
    assert conflict.status_code == 422
    assert conflict.json()["code"] == 422
    other_sender = api.send(chat, "once", b, key="retry-1")
    assert other_sender.status_code == 422
    assert [m["text"] for m in api.pull_all(chat)] == ["once"]
    # Keys are scoped to a chat: the same key elsewhere is independent.
    tag = uuid.uuid4().hex[:8]
    assert api.send(f"c-{tag}:d-{tag}", "once", f"c-{tag}", key="retry-1").status_code == 200


# --- Errors -------------------------------------------------------------------

BIG = "x" * 70_000


def _send_body(valid_chat: str, /, **override: Any) -> dict[str, Any]:
    """A valid send body for `valid_chat`, with fields overridden (... = left out)."""
    body: dict[str, Any] = {"chat": valid_chat, "text": "hello", "sender": valid_chat.split(":")[0]}
    body.update(override)
    return {k: v for k, v in body.items() if v is not ...}


# (what, method, path, request kwargs given the chat, expected status, message pattern)
ERROR_CASES: list[tuple[str, str, str, Any, int, str]] = [
    (
        "malformed JSON",
        "POST",
        "/api/send",
        lambda c: {"data": '{"chat":', "headers": {"Content-Type": "application/json"}},
        400,
        "malformed JSON",
    ),
    ("JSON array", "POST", "/api/send", lambda c: {"json": [c]}, 400, "must be an object"),
    (
        "JSON nested too deep",
        "POST",
        "/api/send",
        lambda c: {"data": "[" * 60_000, "headers": {"Content-Type": "application/json"}},
        400,
        "malformed JSON",
    ),
    (
        "malformed multipart",
        "POST",
        "/api/send",
        lambda c: {"data": "garbage", "headers": {"Content-Type": "multipart/form-data; boundary=xyz"}},
        400,
        "malformed multipart",
    ),
    (
        "form not UTF-8",
        "POST",
        "/api/send",
        lambda c: {"data": b"text=\xff", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        400,
        "not valid UTF-8",
    ),
    (
        "limit a float",
        "GET",
        "/api/pull",
        lambda c: {"json": {"chat": c, "limit": 1e2}},
        400,
        "limit must be an integer",
    ),
    ("chat not a string", "POST", "/api/send", lambda c: {"json": _send_body(c, chat=7)}, 400, "chat must be a string"),
    (
        "text not a string",
        "POST",
        "/api/send",
        lambda c: {"json": _send_body(c, text=["x"])},
        400,
        "text must be a string",
    ),
    (
        "sender not a string",
        "POST",
        "/api/send",
        lambda c: {"json": _send_body(c, sender=True)},
        400,
        "sender must be a string",
    ),
    ("missing chat", "POST", "/api/send", lambda c: {"json": _send_body(c, chat=...)}, 400, "chat is required"),
    ("missing sender", "POST", "/api/send", lambda c: {"json": _send_body(c, sender=...)}, 400, "sender is required"),
    (
        "chat without colon",
        "POST",
        "/api/send",
        lambda c: {"json": _send_body(c, chat="alice")},
        400,
        "member1>:<member2",
    ),
    (
        "chat with three members",
        "POST",
        "/api/send",
        lambda c: {"json": _send_body(c, chat=c + ":x")},
        400,
        "member1>:<member2",
    ),
    (
        "empty member",
        "POST",
        "/api/send",
        lambda c: {"json": _send_body(c, chat=":" + c.split(":")[0])},
        400,
        "chat member is required",
    ),
    (
        "bad member characters",
        "POST",
        "/api/send",
        lambda c: {"json": _send_body(c, chat="a b:c", sender="c")},
        400,
        "invalid chat member",
    ),
    (
        "sender not in chat",
        "POST",
        "/api/send",
        lambda c: {"json": _send_body(c, sender="mallory")},
        400,
        "not a member",
    ),
    ("empty text", "POST", "/api/send", lambda c: {"json": _send_body(c, text="")}, 400, "text is required"),
    ("text too long", "POST", "/api/send", lambda c: {"json": _send_body(c, text="é" * 4097)}, 400, "longer than 4096"),
    (
        "lone surrogate",
        "POST",
        "/api/send",
        lambda c: {
            "data": json.dumps(_send_body(c)).replace("hello", "\\ud800"),
            "headers": {"Content-Type": "application/json"},
        },
        400,
        "not valid Unicode",
    ),
    (
        "bad idempotency key",
        "POST",
        "/api/send",
        lambda c: {"json": _send_body(c), "headers": {"Idempotency-Key": "has space"}},
        400,
        "idempotency key",
    ),
    ("body too large", "POST", "/api/send", lambda c: {"json": _send_body(c, text=BIG)}, 413, "larger than 65536"),
    (
        "cursor not an integer",
        "GET",
        "/api/pull",
        lambda c: {"json": {"chat": c, "cursor": "5"}},
        400,
        "cursor must be an integer",
    ),
    (
        "cursor a float",
        "GET",
        "/api/pull",
        lambda c: {"json": {"chat": c, "cursor": 1.5}},
        400,
        "cursor must be an integer",
    ),
    (
        "limit a boolean",
        "GET",
        "/api/pull",
        lambda c: {"json": {"chat": c, "limit": True}},
        400,
        "limit must be an integer",
    ),
    (
        "reverse a string in JSON",
        "GET",
        "/api/pull",
        lambda c: {"json": {"chat": c, "reverse": "true"}},
        400,
        "reverse must be a boolean",
    ),
    (
        "reverse=yes in a query",
        "GET",
        "/api/pull",
        lambda c: {"params": {"chat": c, "reverse": "yes"}},
        400,
        "reverse must be a boolean",
    ),
    (
        "cursor=abc in a query",
        "GET",
        "/api/pull",
        lambda c: {"params": {"chat": c, "cursor": "abc"}},
        400,
        "cursor must be an integer",
    ),
    ("chat given twice", "GET", "/api/pull", lambda c: {"params": [("chat", c), ("chat", c)]}, 400, "more than once"),
    (
        "negative cursor",
        "GET",
        "/api/pull",
        lambda c: {"json": {"chat": c, "cursor": -1}},
        400,
        "cursor must not be negative",
    ),
    (
        "negative limit",
        "GET",
        "/api/pull",
        lambda c: {"json": {"chat": c, "limit": -1}},
        400,
        "limit must not be negative",
    ),
    ("cursor beyond int64", "GET", "/api/pull", lambda c: {"json": {"chat": c, "cursor": 2**63}}, 400, "out of range"),
    ("pull without chat", "GET", "/api/pull", lambda c: {}, 400, "chat is required"),
    ("pull malformed chat", "GET", "/api/pull", lambda c: {"params": {"chat": "a:b:c"}}, 400, "member1>:<member2"),
    ("unknown route", "GET", "/api/nope", lambda c: {}, 404, "not found"),
    ("wrong method on send", "GET", "/api/send", lambda c: {}, 405, "method not allowed"),
    ("wrong method on pull", "POST", "/api/pull", lambda c: {"json": {"chat": c}}, 405, "method not allowed"),
    (
        "5000-digit limit in a form",
        "GET",
        "/api/pull",
        lambda c: {"data": {"chat": c, "limit": "9" * 5000}},
        400,
        "out of range",
    ),
    ("20-digit cursor", "GET", "/api/pull", lambda c: {"params": {"chat": c, "cursor": "1" * 20}}, 400, "out of range"),
    ("chat null", "POST", "/api/send", lambda c: {"json": _send_body(c, chat=None)}, 400, "chat must not be null"),
    ("reverse null", "GET", "/api/pull", lambda c: {"json": {"chat": c, "reverse": None}}, 400, "must not be null"),
    (
        "unknown query field",
        "GET",
        "/api/pull",
        lambda c: {"params": {"chat": c, "revrse": "1"}},
        400,
        "unknown field 'revrse'",
    ),
    ("chat and receiver", "POST", "/api/send", lambda c: {"json": _send_body(c, receiver="x")}, 400, "not both"),
    (
        "NUL in a member name",
        "POST",
        "/api/send",
        lambda c: {"json": _send_body(c, chat="a\u0000b:c", sender="c")},
        400,
        "invalid chat member",
    ),
    (
        "NUL in the sender",
        "POST",
        "/api/send",
        lambda c: {"json": _send_body(c, sender="a\u0000")},
        400,
        "invalid sender",
    ),
    ("space in a member name", "GET", "/api/pull", lambda c: {"params": {"chat": "a b:c"}}, 400, "invalid chat member"),
    (
        "65-character member",
        "GET",
        "/api/pull",
        lambda c: {"params": {"chat": "a" * 65 + ":b"}},
        400,
        "invalid chat member",
    ),
    (
        "30,000-character chat",
        "POST",
        "/api/send",
        lambda c: {"json": _send_body(c, chat="a" * 30_000 + ":b")},
        400,
        "invalid chat member",
    ),
    (
        "limit as a string in JSON",
        "GET",
        "/api/pull",
        lambda c: {"json": {"chat": c, "limit": "10"}},
        400,
        "limit must be an integer",
    ),
    (
        "limit beyond 2**63",
        "GET",
        "/api/pull",
        lambda c: {"params": {"chat": c, "limit": str(2**63)}},
        400,
        "out of range",
    ),
    (
        "cursor a float in a query",
        "GET",
        "/api/pull",
        lambda c: {"params": {"chat": c, "cursor": "1.5"}},
        400,
        "cursor must be an integer",
    ),
    (
        "reverse yes in JSON",
        "GET",
        "/api/pull",
        lambda c: {"json": {"chat": c, "reverse": "yes"}},
        400,
        "reverse must be a boolean",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "pattern"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_bad_input_gets_a_clear_json_error_and_changes_nothing(
    api: Api, chat: str, method: str, path: str, kwargs: Any, status: int, pattern: str
) -> None:
    stored = api.send_ok(chat, "already here", chat.split(":")[0])
    r = api.session.request(method, api.base_url + path, timeout=10, **kwargs(chat))
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["code"] == status
    assert re.search(pattern, body["msg"]), body
    assert [(m["text"], m["send_time"]) for m in api.pull_all(chat)] == [("already here", stored)]


def test_longest_text_is_accepted_in_code_points(api: Api, chat: str) -> None:
    text = "\U0001f600" * 4096  # 4096 code points, 16 KiB of UTF-8
    assert api.send(chat, text, chat.split(":")[0]).status_code == 200
    assert api.pull_all(chat)[0]["text"] == text


def test_an_oversize_body_gets_413_before_it_is_sent(stack: Stack) -> None:
    """The server answers from the Content-Length alone: a client announcing
    100 MB gets 413 after sending only its headers."""
    with socket.create_connection(("127.0.0.1", stack.http.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000000\r\n\r\n{"chat": '
        )
        response = b""

        def whole() -> bool:  # the head, and as much body as its Content-Length says
            head, found, body = response.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)\r$", head)
            return bool(found and length and len(body) >= int(length.group(1)))

        while not whole():
            chunk = sock.recv(65536)  # (the socket's 10 s timeout is the deadline)
            assert chunk, response
            response += chunk
        head, _, body = response.decode().partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 413")
        assert json.loads(body)["code"] == 413
        assert sock.recv(65536) == b""  # then the server hangs up instead of draining 100 MB
