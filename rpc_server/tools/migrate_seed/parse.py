"""The seed's sorted-set members as messages: Go's json.Marshal of
{"sender", "message", "timestamp"}, scored by the timestamp in seconds.
Each valid member gets the send_time timestamp * 10**6 + its position
within that second; an invalid one is counted by reason."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from rpc_server.chat_id import Chat, canonical_member
from rpc_server.errors import InvalidArgument

US_PER_S = 1_000_000
# The largest timestamp whose send_times (and their position) fit in an int64 (Thrift's i64).
MAX_TIMESTAMP = (2**63 - 1) // US_PER_S - 1
# How far after the target Redis's clock a seed timestamp may lie (clock skew between the seed's hosts and it).
DEFAULT_MAX_FUTURE_S = 3600

# Why a member was skipped: its reason key in the report, and what it means.
INVALID_REASONS = {
    "not_json": "not UTF-8 JSON",
    "not_object": "not a JSON object",
    "bad_fields": "sender, message or timestamp missing or of the wrong type",
    "timestamp_mismatch": "timestamp is not the member's score",
    "timestamp_range": f"timestamp outside 1..{MAX_TIMESTAMP}",
    "timestamp_future": "timestamp dated after the target Redis's clock + --max-future-s",
    "sender_not_member": "sender is not a member of the chat",
    "bad_text": "message is not valid Unicode",
}


@dataclass(frozen=True)
class SeedMessage:
    send_time: int  # wanted: timestamp * 10**6 + position within the second
    sender: str  # canonical (lowercase)
    text: str


def parse_member(member: bytes, score: float, chat: Chat, latest: int = MAX_TIMESTAMP) -> tuple[str, str, int] | str:
    """(sender, text, timestamp) of a seed member, or why it is invalid
    (a key of INVALID_REASONS). `latest`: the last timestamp accepted."""
    try:
        value = json.loads(member.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is one
        return "not_json"
    if not isinstance(value, dict):
        return "not_object"
    sender, text, timestamp = value.get("sender"), value.get("message"), value.get("timestamp")
    if not isinstance(sender, str) or not isinstance(text, str) or type(timestamp) is not int:
        return "bad_fields"
    if timestamp != score:
        return "timestamp_mismatch"
    if not 1 <= timestamp <= MAX_TIMESTAMP:
        return "timestamp_range"
    if timestamp > latest:
        return "timestamp_future"
    try:
        sender = canonical_member(sender)
    except InvalidArgument:
        return "sender_not_member"
    if not chat.has_member(sender):
        return "sender_not_member"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a \ud800 escape
        return "bad_text"
    return sender, text, timestamp


def seed_messages(
    members: Iterable[tuple[bytes, float]], chat: Chat, invalid: Counter[str], latest: int = MAX_TIMESTAMP
) -> tuple[list[SeedMessage], int]:
    """The chat's valid messages in order, with their wanted send_times, and
    how many members were read. Invalid ones (and those dated after
    `latest`) are counted into `invalid`."""
    ordered = sorted(set(members), key=lambda pair: (pair[1], pair[0]))  # ZRANGE order; one copy of each
    messages: list[SeedMessage] = []
    second, position = -1, 0
    for member, score in ordered:
        parsed = parse_member(member, score, chat, latest)
        if isinstance(parsed, str):
            invalid[parsed] += 1
            continue
        sender, text, timestamp = parsed
        position = position + 1 if timestamp == second else 0
        second = timestamp
        messages.append(SeedMessage(timestamp * US_PER_S + position, sender, text))
    return messages, len(ordered)
