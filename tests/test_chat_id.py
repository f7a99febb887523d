"""Chat identity: pure logic, no server."""

import pytest

from rpc_server.chat_id import Chat, canonical_member, parse_chat
from rpc_server.errors import InvalidArgument


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("a1:a2", "a1:a2"),
        ("a2:a1", "a1:a2"),
        ("Jack:marcus", "jack:marcus"),
        ("MARCUS:jack", "jack:marcus"),
        ("a:a", "a:a"),  # a note to self
        ("x.y-z_1:A.B", "a.b:x.y-z_1"),
        ("a" * 64 + ":b", "a" * 64 + ":b"),
    ],
)
def test_canonical_chat_is_lowercase_and_sorted(written: str, canonical: str) -> None:
    assert parse_chat(written).id == canonical


@pytest.mark.parametrize(
    ("written", "error"),
    [
        ("", "chat is required"),
        (None, "chat is required"),
        ("a1", "form"),
        ("a:b:c", "form"),
        (":b", "chat member is required"),
        ("a:", "chat member is required"),
        ("a b:c", "invalid chat member"),
        ("a{x}:b", "invalid chat member"),
        ("é:b", "invalid chat member"),
        ("a" * 65 + ":b", "invalid chat member"),
        (b"a:\xff", "valid UTF-8"),
    ],
)
def test_malformed_chats_are_rejected(written: object, error: str) -> None:
    with pytest.raises(InvalidArgument, match=error):
        parse_chat(written)


def test_membership_uses_canonical_names() -> None:
    chat = parse_chat("Jack:Marcus")
    assert chat == Chat("jack", "marcus")
    assert chat.has_member(canonical_member("JACK"))
    assert not chat.has_member("alice")


def test_unicode_lowercasing_is_ascii_only() -> None:
    # str.lower() would map the Kelvin sign to "k"; the name rule rejects it first.
    with pytest.raises(InvalidArgument):
        canonical_member("\u212a")


def test_members_are_distinct_and_sorted() -> None:
    assert parse_chat("B:a").members == ("a", "b")
    assert parse_chat("a:A").members == ("a",)  # a note to self has one member
