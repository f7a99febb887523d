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


@dataclass(frozen=True)
class TrimMark:
    """What retention removed from a chat (retention.lua writes it): every
    message before `boundary` is gone and none at or after it was trimmed;
    `first` is the oldest one trimmed (0: unknown)."""

    boundary: int
    first: int = 0


# A mark of an older version for a chat that retention emptied ("-1"): every
# message up to the stream's last ID is gone. The store resolves it.
EMPTIED_BY_AN_OLDER_VERSION = TrimMark(-1)


def parse_trim_mark(value: str | None) -> TrimMark | None:
    """The trim mark as stored: absent or "0" (nothing trimmed), "<boundary>
    <first>", or an older version's "<oldest left>" (the first then unknown)
    or "-1" (emptied)."""
    if not value or value == "0":
        return None
    if value == "-1":
        return EMPTIED_BY_AN_OLDER_VERSION
    boundary, _, first = value.partition(" ")
    return TrimMark(int(boundary), int(first or 0))


def history_truncated(cursor: int, reverse: bool, has_more: bool, mark: TrimMark | None) -> bool:
    """Did retention remove messages that belong in this page or a later one?

    Exactly, by the README's rule: ascending from `cursor` (0: from the
    oldest), some message at or after it is gone, i.e. the cursor lies
    before the boundary. Reverse (0: from the newest), only the last page
    (no more) reaches the gap, and only if some message at or before the
    cursor is gone, i.e. the cursor is at or after the first trimmed one.
    """
    if mark is None:
        return False
    if reverse:
        return not has_more and (cursor == 0 or cursor >= mark.first)
    return cursor < mark.boundary


def make_page(fetched: Sequence[T], limit: int, send_time_of: Callable[[T], int]) -> Page[T]:
    """Cut a page from `limit + 1` fetched items: the extra one only proves
    there is more, and its send_time is the next page's inclusive cursor."""
    if len(fetched) > limit:
        return Page(fetched[:limit], True, send_time_of(fetched[limit]))
    return Page(fetched, False, 0)
