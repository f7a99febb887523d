"""Pure logic of the HTTP tier's input and output: params.py (typed fields,
bodies) and codec.py (the JSON tables), table by table, with no server.
Every row sits at a boundary a mutation of the code would move."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import falcon
import falcon.testing
import pytest

from http_server import codec
from http_server.errors import ApiError
from http_server.params import INT64_MAX, INT64_MIN, Params, read_params

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def _error(call: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(ApiError) as e:
        call(*args)
    return e.value.status_code, str(e.value.description)


# --- Params.integer -------------------------------------------------------------

# (text in a query string or form, the integer, or the error's message)
TEXT_INTEGERS: list[tuple[str, int | str]] = [
    ("0", 0),
    ("-0", 0),
    ("+7", 7),
    ("007", 7),
    ("0" * 30 + "1", 1),  # leading zeros do not count towards the 19 digits
    ("9223372036854775807", INT64_MAX),
    ("-9223372036854775808", INT64_MIN),
    ("9223372036854775808", "n is out of range (64-bit integer)"),
    ("-9223372036854775809", "n is out of range (64-bit integer)"),
    ("9999999999999999999", "n is out of range (64-bit integer)"),  # 19 digits, beyond int64
    ("1" * 20, "n is out of range (64-bit integer)"),
    ("9" * 5000, "n is out of range (64-bit integer)"),  # refused before int() (which refuses over 4300 digits itself)
    (" 5", "n must be an integer"),
    ("5 ", "n must be an integer"),
    ("5.0", "n must be an integer"),
    ("1e3", "n must be an integer"),
    ("0x10", "n must be an integer"),
    ("1_000", "n must be an integer"),
    ("\u0661\u0662", "n must be an integer"),  # Arabic-Indic digits: int() would take them
    ("--1", "n must be an integer"),
    ("+", "n must be an integer"),
]


@pytest.mark.parametrize(("text", "expected"), TEXT_INTEGERS, ids=[repr(t[0])[:30] for t in TEXT_INTEGERS])
def test_integers_in_text(text: str, expected: int | str) -> None:
    params = Params({"n": text}, typed=False)
    if isinstance(expected, str):
        assert _error(params.integer, "n") == (400, expected)
    else:
        assert params.integer("n") == expected


# (a JSON value, the integer, or the error's message)
JSON_INTEGERS: list[tuple[Any, int | str]] = [
    (0, 0),
    (INT64_MAX, INT64_MAX),
    (INT64_MIN, INT64_MIN),
    (INT64_MAX + 1, "n is out of range (64-bit integer)"),
    (INT64_MIN - 1, "n is out of range (64-bit integer)"),
    (10**400, "n is out of range (64-bit integer)"),
    (True, "n must be an integer"),
    (False, "n must be an integer"),
    (1.0, "n must be an integer"),
    ("5", "n must be an integer"),
    ([5], "n must be an integer"),
    ({"n": 5}, "n must be an integer"),
    (None, "n must not be null"),
]


@pytest.mark.parametrize(("value", "expected"), JSON_INTEGERS, ids=[repr(t[0])[:30] for t in JSON_INTEGERS])
def test_integers_in_json(value: Any, expected: int | str) -> None:
    params = Params({"n": value}, typed=True)
    if isinstance(expected, str):
        assert _error(params.integer, "n") == (400, expected)
    else:
        assert params.integer("n") == expected


# --- Params.boolean, Params.string, absent, repeated and unknown fields --------

BOOLEANS: list[tuple[Any, bool, bool | str]] = [
    # (value, typed (JSON), the boolean or the error's message)
    ("true", False, True),
    ("TRUE", False, True),
    ("1", False, True),
    ("false", False, False),
    ("False", False, False),
    ("0", False, False),
    ("yes", False, "r must be a boolean (true, false, 1 or 0)"),
    ("2", False, "r must be a boolean (true, false, 1 or 0)"),
    (True, True, True),
    (False, True, False),
    ("true", True, "r must be a boolean (true or false)"),
    (1, True, "r must be a boolean (true or false)"),
    (0, True, "r must be a boolean (true or false)"),
    (None, True, "r must not be null"),
]


@pytest.mark.parametrize(("value", "typed", "expected"), BOOLEANS)
def test_booleans(value: Any, typed: bool, expected: bool | str) -> None:
    params = Params({"r": value}, typed=typed)
    if isinstance(expected, str):
        assert _error(params.boolean, "r") == (400, expected)
    else:
        assert params.boolean("r") is expected


STRINGS: list[tuple[Any, bool, str]] = [
    ("a:b", False, "a:b"),
    ("a:b", True, "a:b"),
    ("é\U0001f600", True, "é\U0001f600"),
    (7, True, "s must be a string"),
    (True, True, "s must be a string"),
    (["a"], True, "s must be a string"),
    (None, True, "s must not be null"),
    ("\ud800", True, "s is not valid Unicode (lone surrogate)"),
    (["a", "b"], False, "s is given more than once"),
]


@pytest.mark.parametrize(("value", "typed", "expected"), STRINGS)
def test_strings(value: Any, typed: bool, expected: str) -> None:
    params = Params({"s": value}, typed=typed)
    if expected == value:
        assert params.string("s") == expected
    else:
        assert _error(params.string, "s") == (400, expected)


@pytest.mark.parametrize("typed", [False, True])
def test_absent_fields_are_none(typed: bool) -> None:
    params = Params({}, typed=typed)
    assert (params.string("s"), params.integer("n"), params.boolean("r")) == (None, None, None)


def test_a_repeated_text_field_is_refused_whatever_its_type() -> None:
    params = Params({"n": ["1", "2"], "r": ["true", "true"]}, typed=False)
    assert _error(params.integer, "n") == (400, "n is given more than once")
    assert _error(params.boolean, "r") == (400, "r is given more than once")


def test_unknown_names_are_refused_in_text_and_ignored_in_json() -> None:
    known = ["chat", "cursor"]
    Params({"chat": "a:b"}, typed=False).reject_unknown(known)
    Params({"chat": "a:b", "extra": 1}, typed=True).reject_unknown(known)
    assert _error(Params({"chat": "a:b", "zz": "1", "aa": "1"}, typed=False).reject_unknown, known) == (
        400,
        "unknown field 'aa'; expected one of: chat, cursor",
    )


# --- codec: the tables, as decode and encode use them ---------------------------

THRIFT_NAMES = [
    ("chat", "Chat"),
    ("send_time", "SendTime"),
    ("has_more", "HasMore"),
    ("next_cursor", "NextCursor"),
    ("history_truncated", "HistoryTruncated"),
    ("last_send_time", "LastSendTime"),
    ("chats_deleted", "ChatsDeleted"),
]


@pytest.mark.parametrize(("json_name", "thrift"), THRIFT_NAMES)
def test_thrift_names(json_name: str, thrift: str) -> None:
    assert codec.thrift_name(json_name) == thrift


CLAMPS = [
    (INT64_MIN, I32_MIN),
    (-(2**40), I32_MIN),
    (I32_MIN - 1, I32_MIN),
    (I32_MIN, I32_MIN),
    (-1, -1),
    (0, 0),
    (I32_MAX, I32_MAX),
    (I32_MAX + 1, I32_MAX),
    (INT64_MAX, I32_MAX),
]


@pytest.mark.parametrize(("value", "clamped"), CLAMPS)
def test_int32_clamp(value: int, clamped: int) -> None:
    assert codec.clamp_int32(value) == clamped


# Each request message decoded from JSON: every field read by its type's reader.
DECODED = [
    (
        "PullRequest",
        {"chat": "a:b", "cursor": INT64_MAX, "limit": I32_MAX + 1, "reverse": True, "wait": 3},
        {"chat": "a:b", "cursor": INT64_MAX, "limit": I32_MAX + 1, "reverse": True, "wait": 3},
    ),
    ("PullRequest", {}, {"chat": None, "cursor": None, "limit": None, "reverse": None, "wait": None}),
    (
        "SendRequest",
        {"chat": "a:b", "text": "t", "sender": "a"},
        {"chat": "a:b", "text": "t", "sender": "a", "receiver": None},
    ),
    ("SubscribeRequest", {"chat": "a:b", "cursor": 0}, {"chat": "a:b", "cursor": 0}),
    ("ListChatsRequest", {"user": "u", "cursor": 1, "limit": 2}, {"user": "u", "cursor": 1, "limit": 2}),
]


@pytest.mark.parametrize(("message", "given", "decoded"), DECODED)
def test_decode(message: str, given: dict[str, Any], decoded: dict[str, Any]) -> None:
    assert codec.decode(message, Params(given, typed=True)) == decoded


# A value of the wrong type for each kind of field: the reader is the field's type's.
WRONG_TYPES = [
    ("PullRequest", "chat", 1, "chat must be a string"),
    ("PullRequest", "cursor", True, "cursor must be an integer"),
    ("PullRequest", "cursor", "1", "cursor must be an integer"),
    ("PullRequest", "limit", False, "limit must be an integer"),
    ("PullRequest", "wait", 1.5, "wait must be an integer"),
    ("PullRequest", "reverse", 1, "reverse must be a boolean (true or false)"),
    ("SendRequest", "receiver", 1, "receiver must be a string"),
    ("ListChatsRequest", "cursor", INT64_MAX + 1, "cursor is out of range (64-bit integer)"),
]


@pytest.mark.parametrize(("message", "field", "value", "error"), WRONG_TYPES)
def test_decode_refuses_a_wrong_type(message: str, field: str, value: Any, error: str) -> None:
    assert _error(codec.decode, message, Params({field: value}, typed=True)) == (400, error)


def test_decode_refuses_an_unknown_name_in_text() -> None:
    assert _error(codec.decode, "SubscribeRequest", Params({"chat": "a:b", "limit": "1"}, typed=False))[1].startswith(
        "unknown field 'limit'; expected one of: chat, cursor"
    )


def _message(send_time: int = 5) -> SimpleNamespace:
    return SimpleNamespace(Chat="a:b", Text="hi", Sender="a", SendTime=send_time)


# (message, a Thrift-like value, its JSON): every key present, defaults filled in.
ENCODED = [
    (
        "PullResponse",
        SimpleNamespace(Messages=None, HasMore=None, NextCursor=None, HistoryTruncated=None),
        {"messages": [], "has_more": False, "next_cursor": 0, "history_truncated": False},
    ),
    ("PullResponse", None, {"messages": [], "has_more": False, "next_cursor": 0, "history_truncated": False}),
    (
        "PullResponse",
        SimpleNamespace(Messages=[_message(INT64_MAX)], HasMore=True, NextCursor=INT64_MAX, HistoryTruncated=True),
        {
            "messages": [{"chat": "a:b", "text": "hi", "sender": "a", "send_time": INT64_MAX}],
            "has_more": True,
            "next_cursor": INT64_MAX,
            "history_truncated": True,
        },
    ),
    ("Message", SimpleNamespace(), {"chat": "", "text": "", "sender": "", "send_time": 0}),
    (
        "ListChatsResponse",
        SimpleNamespace(
            Chats=[
                SimpleNamespace(Chat="a:b", LastSendTime=5, LastMessage=None),
                SimpleNamespace(Chat="a:c", LastSendTime=4, LastMessage=_message(4)),
            ],
            HasMore=False,
            NextCursor=0,
        ),
        {
            "chats": [
                {"chat": "a:b", "last_send_time": 5, "last_message": None},
                {
                    "chat": "a:c",
                    "last_send_time": 4,
                    "last_message": {"chat": "a:b", "text": "hi", "sender": "a", "send_time": 4},
                },
            ],
            "has_more": False,
            "next_cursor": 0,
        },
    ),
    (
        "AdminResponse",
        SimpleNamespace(ChatsDeleted=None, MessagesDeleted=2**40),
        {"chats_deleted": 0, "messages_deleted": 2**40},
    ),
]


@pytest.mark.parametrize(("message", "value", "encoded"), ENCODED)
def test_encode(message: str, value: Any, encoded: dict[str, Any]) -> None:
    out = codec.encode(message, value)
    assert out == encoded
    assert [type(v) for v in out.values()] == [type(v) for v in encoded.values()]  # False, not 0; 0, not None


# --- read_params: bodies ---------------------------------------------------------

LIMIT = 64


def _request(body: bytes, content_type: str = "application/json", chunked: bool = False, **headers: str) -> Any:
    """A Falcon request with `body`: with a Content-Length, or chunked (none)."""
    env = falcon.testing.create_environ(
        method="POST", path="/", query_string="chat=q:q", body=body, headers={"Content-Type": content_type, **headers}
    )
    if chunked:
        env.pop("CONTENT_LENGTH", None)
        env["HTTP_TRANSFER_ENCODING"] = "chunked"
        env["wsgi.input"] = io.BytesIO(body)
    return falcon.Request(env)


def _json_of(size: int) -> bytes:
    body = b'{"chat": "a:b"}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_of_exactly_the_limit_is_read(chunked: bool) -> None:
    body = _json_of(LIMIT)
    assert len(body) == LIMIT
    assert read_params(_request(body, chunked=chunked), LIMIT).string("chat") == "a:b"


@pytest.mark.parametrize("chunked", [False, True])
def test_one_byte_over_the_limit_is_413(chunked: bool) -> None:
    assert _error(read_params, _request(_json_of(LIMIT + 1), chunked=chunked), LIMIT) == (
        413,
        f"request body larger than {LIMIT} bytes",
    )


class _BrokenChunks(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:
        raise OSError("Non-hex data")


def test_a_malformed_chunked_body_is_400_and_closes() -> None:
    req = _request(b"", chunked=True)
    req.env["wsgi.input"] = req.stream = _BrokenChunks()
    with pytest.raises(ApiError) as e:
        read_params(req, LIMIT)
    assert (e.value.status_code, e.value.description) == (400, "malformed chunked body: Non-hex data")
    assert e.value.headers is not None and e.value.headers["Connection"] == "close"


@pytest.mark.parametrize("coding", ["gzip", "chunked, gzip", "gzip, chunked", "identity"])
def test_other_transfer_codings_are_400_and_close(coding: str) -> None:
    with pytest.raises(ApiError) as e:
        read_params(_request(b'{"chat": "a:b"}', **{"Transfer-Encoding": coding}), LIMIT)
    assert e.value.status_code == 400 and "Transfer-Encoding" in str(e.value.description)
    assert e.value.headers is not None and e.value.headers["Connection"] == "close"


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("body", [b"", b"  \r\n "])
def test_an_empty_body_leaves_the_query_string(body: bytes, chunked: bool) -> None:
    assert read_params(_request(body, chunked=chunked), LIMIT).string("chat") == "q:q"


BODIES: list[tuple[str, bytes, str, dict[str, Any] | str]] = [
    # (content type, body, the fields as read, or the error's message)
    ("application/json", b'{"chat": "a:b", "n": 1}', {"chat": "a:b", "n": 1}),
    ("application/json; charset=utf-8", b'{"chat": "a:b"}', {"chat": "a:b"}),
    ("text/plain", b'{"chat": "a:b"}', {"chat": "a:b"}),  # JSON whatever the type, as the seed
    ("application/json", b"[1]", "the JSON body must be an object"),
    ("application/json", b'{"chat": ', "malformed JSON body"),
    ("application/json", b"[" * 100_000, "malformed JSON body"),
    ("application/x-www-form-urlencoded", b"chat=a%3Ab&n=1", {"chat": "a:b", "n": "1"}),
    ("Application/X-WWW-Form-Urlencoded; charset=utf-8", b"chat=a:b", {"chat": "a:b"}),
    ("application/x-www-form-urlencoded", b"chat=\xff", "the form body is not valid UTF-8"),
    ("application/x-www-form-urlencoded", b"n=1&n=2", {"n": ["1", "2"]}),
    ("application/x-www-form-urlencoded", b"chat=&n=1", {"n": "1"}),  # an empty value is absent
]


@pytest.mark.parametrize(("content_type", "body", "expected"), BODIES, ids=[f"{b[0]}-{b[1][:12]!r}" for b in BODIES])
def test_bodies(content_type: str, body: bytes, expected: dict[str, Any] | str) -> None:
    req = _request(body, content_type)
    if isinstance(expected, str):
        status, msg = _error(read_params, req, 1 << 20)
        assert status == 400 and msg.startswith(expected), msg
    else:
        params = read_params(req, 1 << 20)
        assert params._fields == expected


def _multipart(*parts: tuple[str, str, bytes]) -> bytes:
    """A multipart body of (extra headers, name, content) parts, boundary "b"."""
    out = b""
    for headers, name, content in parts:
        out += f'--b\r\nContent-Disposition: form-data; name="{name}"{headers}\r\n\r\n'.encode() + content + b"\r\n"
    return out + b"--b--\r\n"


MULTIPART: list[tuple[str, bytes, dict[str, Any] | str]] = [
    ("plain fields", _multipart(("", "chat", b"a:b"), ("", "n", b"-1")), {"chat": "a:b", "n": "-1"}),
    (
        "text/plain part",
        _multipart(("\r\nContent-Type: text/plain; charset=utf-8", "text", "é".encode())),
        {"text": "é"},
    ),
    (
        "latin-1 part",
        _multipart(("\r\nContent-Type: text/plain; charset=latin-1", "text", b"\xe9")),
        {"text": "é"},
    ),
    ("repeated", _multipart(("", "n", b"1"), ("", "n", b"2"), ("", "n", b"3")), {"n": [["1", "2"], "3"]}),
    ("file part", _multipart(('; filename="a.txt"', "text", b"x")), "form field text must be text, not a file"),
    (
        "file part, text/plain",
        _multipart(('; filename="a.txt"\r\nContent-Type: text/plain', "text", b"x")),
        "form field text must be text, not a file",
    ),
    (
        "JSON part",
        _multipart(("\r\nContent-Type: application/json", "text", b"{}")),
        "form field text must be text, not a file",
    ),
    (
        "unknown charset",
        _multipart(("\r\nContent-Type: text/plain; charset=nope", "text", b"x")),
        "malformed multipart form",
    ),
    ("no closing boundary", b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx', "malformed multipart form"),
]


@pytest.mark.parametrize(("body", "expected"), [m[1:] for m in MULTIPART], ids=[m[0] for m in MULTIPART])
def test_multipart(body: bytes, expected: dict[str, Any] | str) -> None:
    req = _request(body, "multipart/form-data; boundary=b")
    if isinstance(expected, str):
        status, msg = _error(read_params, req, 1 << 20)
        assert status == 400 and msg.startswith(expected), msg
    else:
        assert read_params(req, 1 << 20)._fields == expected
