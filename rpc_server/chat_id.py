"""Chat identity: parsing "<member1>:<member2>" into one canonical chat.

The seed lowercases the two names and sorts them, so "b:a" and "A:b" are the
same chat as "a:b". We keep that and pin down what a member name may be, so
that a chat ID is always safe inside a Redis key and its Cluster hash tag
(no braces, colons or spaces can appear in a name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rpc_server.errors import InvalidArgument

MAX_MEMBER_LEN = 64
_MEMBER = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_MEMBER_LEN}}}")


@dataclass(frozen=True)
class Chat:
    """A canonical chat: two lowercase member names, sorted (`a:a` allowed)."""

    first: str
    second: str

    @property
    def id(self) -> str:
        return f"{self.first}:{self.second}"

    def has_member(self, name: str) -> bool:
        return name in (self.first, self.second)

    @property
    def members(self) -> tuple[str, ...]:
        """The distinct members, sorted: one for a note to self (`a:a`)."""
        return (self.first,) if self.first == self.second else (self.first, self.second)


def canonical_member(name: object, what: str = "sender") -> str:
    """Validate a member name and return its canonical (ASCII-lowercase) form."""
    if isinstance(name, bytes):  # what thriftpy2 hands over for invalid UTF-8
        raise InvalidArgument(f"{what} must be valid UTF-8")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{what} is required")
    if not _MEMBER.fullmatch(name):
        raise InvalidArgument(
            f"invalid {what}: a member name is 1-{MAX_MEMBER_LEN} ASCII letters, digits, '_', '.' or '-'"
        )
    return name.lower()


def parse_chat(chat: object) -> Chat:
    """Parse a chat ID as a client wrote it; raise InvalidArgument if malformed."""
    if isinstance(chat, bytes):
        raise InvalidArgument("chat must be valid UTF-8")
    if not isinstance(chat, str) or not chat:
        raise InvalidArgument("chat is required")
    parts = chat.split(":")
    if len(parts) != 2:
        raise InvalidArgument("invalid chat: expected the form '<member1>:<member2>'")
    first, second = sorted(canonical_member(part, "chat member") for part in parts)
    return Chat(first, second)


def parse_chat_or_none(chat: str) -> Chat | None:
    """A chat ID found in storage (a key's hash tag, a list entry): parsed,
    or None if it is not one of ours."""
    try:
        return parse_chat(chat)
    except InvalidArgument:
        return None
