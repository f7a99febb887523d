"""The HTTP API's JSON codec, written by hand from idl/idl_http.proto.

Why not protobuf's `json_format`: proto3's JSON mapping renders int64 as
strings, leaves out fields at their default (an empty page would lose
"messages" and "has_more"), and accepts "123" for a number; the seed's
contract is plain JSON numbers, every key present, strict types. The tables
below name each message's fields and proto types; tests check them against
the descriptors generated from the .proto (scripts/api-regen.sh) and against
the OpenAPI spec, so the .proto stays the single source of the HTTP API.

JSON names are the proto's (snake_case); the Thrift names are their
CamelCase (send_time <-> SendTime), which is how the two IDLs line up.
"""

from __future__ import annotations

from typing import Any

from http_server.params import Params

# message -> {JSON field name: proto type}
MESSAGES: dict[str, dict[str, str]] = {
    "Message": {"chat": "string", "text": "string", "sender": "string", "send_time": "int64"},
    "SendRequest": {"chat": "string", "text": "string", "sender": "string", "receiver": "string"},
    "SendResponse": {"send_time": "int64"},
    "PullRequest": {"chat": "string", "cursor": "int64", "limit": "int32", "reverse": "bool", "wait": "int32"},
    "PullResponse": {
        "messages": "repeated Message",
        "has_more": "bool",
        "next_cursor": "int64",
        "history_truncated": "bool",
    },
    "SubscribeRequest": {"chat": "string", "cursor": "int64"},
    "ListChatsRequest": {"user": "string", "cursor": "int64", "limit": "int32"},
    "ChatSummary": {"chat": "string", "last_send_time": "int64", "last_message": "Message"},
    "ListChatsResponse": {"chats": "repeated ChatSummary", "has_more": "bool", "next_cursor": "int64"},
    "AdminResponse": {"chats_deleted": "int32", "messages_deleted": "int64"},
    "EraseUserResponse": {"chats_deleted": "int32", "messages_deleted": "int64", "done": "bool"},
}

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def thrift_name(json_name: str) -> str:
    return "".join(part.capitalize() for part in json_name.split("_"))


def decode(message: str, params: Params) -> dict[str, Any]:
    """Read `message`'s fields from a request, strictly typed; absent -> None."""
    fields = MESSAGES[message]
    params.reject_unknown(fields)
    readers = {"string": params.string, "int64": params.integer, "int32": params.integer, "bool": params.boolean}
    return {name: readers[kind](name) for name, kind in fields.items()}


def encode(message: str, value: Any) -> dict[str, Any]:
    """Write a Thrift struct (or any object with the CamelCase attributes) as
    `message`'s JSON: every key present, defaults filled in (an absent
    nested message is null)."""
    out: dict[str, Any] = {}
    for name, attribute, kind, item in _ENCODING[message]:
        field = getattr(value, attribute, None)
        if kind == "repeated":
            out[name] = [encode(item, element) for element in field or ()]
        elif kind == "message":  # a nested message: null when absent
            out[name] = encode(item, field) if field is not None else None
        elif kind == "bool":
            out[name] = bool(field)
        elif kind == "string":
            out[name] = field or ""
        else:
            out[name] = field or 0
    return out


def _encoding(fields: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(JSON name, Thrift attribute, kind, nested message) per field, worked
    out once: per request, thrift_name() for every field of every message of
    a page was a twentieth of the HTTP worker's time on a pull (py-spy)."""
    table = []
    for name, kind in fields.items():
        if kind.startswith("repeated "):
            table.append((name, thrift_name(name), "repeated", kind.removeprefix("repeated ")))
        elif kind in MESSAGES:
            table.append((name, thrift_name(name), "message", kind))
        else:
            table.append((name, thrift_name(name), kind, ""))
    return table


_ENCODING = {message: _encoding(fields) for message, fields in MESSAGES.items()}


def clamp_int32(value: int) -> int:
    """Thrift's Limit is an i32: clamp before the call (the service clamps
    further to its maximum, and rejects negatives)."""
    return min(max(value, INT32_MIN), INT32_MAX)
