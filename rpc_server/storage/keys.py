"""Every Redis key, channel and SCAN pattern of the store, and nowhere
else: no module outside rpc_server.storage builds or parses one
(tests/test_layers.py checks).

Key layout (every key versioned, and all of a chat's keys in one Redis
Cluster hash slot through the `{a:b}` hash tag):

    im:v1:{<first>:<second>}:m          stream; entry ID "<send_time>-0",
                                        fields s=<sender>, t=<text>
    im:v1:{<first>:<second>}:t          string "<boundary> <first>", once
                                        retention trimmed the chat: every
                                        message before the boundary is gone
                                        (none after); first = the oldest
                                        trimmed (retention.lua; absent or
                                        "0": nothing trimmed)
    im:v1:{<first>:<second>}:n          not a key: the chat's shard channel,
                                        on which each send is announced
    im:v1:{<first>:<second>}:k:<key>    string "<send_time> <fingerprint>",
                                        expires after the idempotency TTL
    im:v1:{<first>:<second>}:k          sorted set, the chat's record index:
                                        member <key> (of each record above),
                                        score when it expires (Unix s);
                                        expires a minute after its last
                                        record at most. Lets a chat's
                                        deletion find its records without a
                                        SCAN (erasure.py)
    im:v1:rl:{<sender>}                 string, the sender's GCRA state (only
                                        with rate limiting on); expires
    im:v1:u:{<user>}:c                  sorted set, the user's conversation
                                        list: member "<first>:<second>",
                                        score the chat's last send_time
    im:v1:u:{<user>}:e                  string, an erasure of the user under
                                        way: where its SCAN resumes (JSON);
                                        expires after an hour (erasure.py)

    im:v1:{<first>:<second>}:migrating  stream, a seed migration's merged
                                        copy of the chat, swapped in by
                                        migrate_seed.lua (seed_import.py)

The seed's own keys ("a:b", a sorted set per chat) are read by
seed_import.py; they are never written.
"""

from __future__ import annotations

from rpc_server.chat_id import Chat, parse_chat_or_none

KEY_PREFIX = "im:v1:"

#: SCAN MATCH patterns
ALL_CHAT_STREAMS = f"{KEY_PREFIX}{{*}}:m"  # with TYPE stream
ALL_USER_LISTS = f"{KEY_PREFIX}u:{{*}}:c"
ALL_IDEMPOTENCY_RECORDS = f"{KEY_PREFIX}{{*}}:k:*"  # and their indexes' members' keys


def stream_key(chat: Chat) -> str:
    return f"{KEY_PREFIX}{{{chat.id}}}:m"


def trim_mark_key(chat: Chat) -> str:
    """Where retention.lua records, once it trimmed the chat, which send_times
    are gone (paging.TrimMark)."""
    return f"{KEY_PREFIX}{{{chat.id}}}:t"


def notify_channel(chat: Chat) -> str:
    """The chat's shard channel (SPUBLISH): send.lua announces each new
    message's send_time on it; waiting pulls listen (notifier.py)."""
    return f"{KEY_PREFIX}{{{chat.id}}}:n"


def idempotency_key(chat: Chat, key: str) -> str:
    return f"{KEY_PREFIX}{{{chat.id}}}:k:{key}"


def idempotency_index_key(chat: Chat) -> str:
    """The chat's index of its idempotency records (send.lua keeps it):
    `idempotency_key(chat, member)` for each member."""
    return f"{KEY_PREFIX}{{{chat.id}}}:k"


def migrating_key(chat: Chat) -> str:
    """A seed migration's merged copy of a chat's stream, in the chat's hash slot."""
    return f"{KEY_PREFIX}{{{chat.id}}}:migrating"


def user_chats_key(user: str) -> str:
    """The user's conversation list. Its hash tag is the user's (as for
    rate_key), so in a cluster it lives on another shard than the chat."""
    return f"{KEY_PREFIX}u:{{{user}}}:c"


def erasure_progress_key(user: str) -> str:
    """Where an erasure of `user` that ran out of time records where its
    SCAN resumes (erasure.py); on the user's shard, as the user's list."""
    return f"{KEY_PREFIX}u:{{{user}}}:e"


def rate_key(sender: str) -> str:
    return f"{KEY_PREFIX}rl:{{{sender}}}"


def user_chat_keys_pattern(user: str) -> str:
    """SCAN MATCH for the chat keys whose tag names `user` (and some that
    merely contain it: the caller checks). Member names hold no glob
    characters."""
    return f"{KEY_PREFIX}{{*{user}*"


def chat_of_key(key: str) -> Chat | None:
    """The chat whose hash tag `key` carries ("im:v1:{a:b}:..."), if any."""
    if not key.startswith(KEY_PREFIX + "{"):
        return None
    tag, sep, _ = key[len(KEY_PREFIX) + 1 :].partition("}")
    return parse_chat_or_none(tag) if sep else None


def is_ours(key: bytes) -> bool:
    """Whether a key (as SCAN returns it, bytes) is one of ours, not the seed's."""
    return key.startswith(KEY_PREFIX.encode())
