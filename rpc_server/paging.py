"""Cursor math for pull, independent of storage.

A cursor is a send_time in microseconds, inclusive, never an offset: offsets
shift when others write while a client pages, which made the seed repeat or
skip messages. Because send_times are unique within a chat, "the first
message not returned" is a stable bookmark in either direction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

DEFAULT_LIMIT = 10

T = TypeVar("T")


def effective_limit(limit: int, maximum: int) -> int:
    """0 means the default (10); larger values are clamped to `maximum`.

    Negative limits are the caller's job to reject before this.
    """
    if limit == 0:
        return min(DEFAULT_LIMIT, maximum)
    return min(limit, maximum)


def range_bounds(cursor: int, reverse: bool) -> tuple[str, str]:
    """The (first, last) stream-ID bounds to scan from `cursor`, inclusive.

    Ascending scans send_time >= cursor ("-" from the oldest when 0); reverse
    scans send_time <= cursor ("+" from the newest when 0). A bare number is
    an inclusive stream ID bound: `<ms>-0` as a start, `<ms>-<max>` as an end.
    """
    if reverse:
        return ("+" if cursor == 0 else str(cursor)), "-"
    return ("-" if cursor == 0 else str(cursor)), "+"


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    has_more: bool
    next_cursor: int
    truncated: bool = False  # messages this page's direction would reach were trimmed


def history_truncated(cursor: int, reverse: bool, has_more: bool, trimmed_before: int) -> bool:
    """Did retention remove messages that belong in this page or a later one?

    `trimmed_before` is 0 if retention never trimmed the chat, else the
    send_time of its oldest message left when it last did (-1: none left).
    Trimming takes the oldest messages first, so every one removed is older.
    Ascending from `cursor`, the page starts after removed ones iff the
    cursor lies before the oldest retained message (cursor 0: from the very
    first). Reverse, pages reach them only at the end: the last page (no
    more) says so.
    """
    if trimmed_before == 0:
        return False
    if reverse:
        return not has_more
    return trimmed_before < 0 or cursor < trimmed_before


def make_page(fetched: Sequence[T], limit: int, send_time_of: Callable[[T], int]) -> Page[T]:
    """Cut a page from `limit + 1` fetched items: the extra one only proves
    there is more, and its send_time is the next page's inclusive cursor."""
    if len(fetched) > limit:
        return Page(fetched[:limit], True, send_time_of(fetched[limit]))
    return Page(fetched, False, 0)
