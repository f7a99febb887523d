"""Cursor math: pure logic, no server."""

from rpc_server.paging import (
    EMPTIED_BY_AN_OLDER_VERSION,
    TrimMark,
    effective_limit,
    history_truncated,
    make_page,
    parse_trim_mark,
    range_bounds,
)


def test_limit_zero_means_ten_and_large_limits_are_clamped() -> None:
    assert effective_limit(0, 100) == 10
    assert effective_limit(1, 100) == 1
    assert effective_limit(100, 100) == 100
    assert effective_limit(2**31 - 1, 100) == 100
    assert effective_limit(0, 5) == 5


def test_ascending_bounds_start_at_the_cursor_inclusive() -> None:
    assert range_bounds(0, reverse=False) == ("-", "+")
    assert range_bounds(1795673536229479, reverse=False) == ("1795673536229479", "+")


def test_reverse_bounds_end_at_the_cursor_inclusive() -> None:
    assert range_bounds(0, reverse=True) == ("+", "-")
    assert range_bounds(1795673536229479, reverse=True) == ("1795673536229479", "-")


def test_page_uses_the_extra_item_as_next_cursor() -> None:
    fetched = [10, 20, 30]
    page = make_page(fetched, 2, lambda t: t)
    assert list(page.items) == [10, 20]
    assert page.has_more is True
    assert page.next_cursor == 30


def test_last_page_has_no_more_and_cursor_zero() -> None:
    for fetched in ([], [10], [10, 20]):
        page = make_page(fetched, 2, lambda t: t)
        assert list(page.items) == fetched
        assert page.has_more is False
        assert page.next_cursor == 0


def test_paging_through_a_sequence_yields_each_item_once() -> None:
    """Simulate the store over a sorted list: pages chained by next_cursor."""
    times = list(range(100, 1100, 10))

    def read(cursor: int, limit: int, reverse: bool) -> list[int]:
        if reverse:
            picked = [t for t in reversed(times) if cursor == 0 or t <= cursor]
        else:
            picked = [t for t in times if t >= cursor]
        return picked[: limit + 1]

    for reverse in (False, True):
        seen: list[int] = []
        cursor = 0
        while True:
            page = make_page(read(cursor, 7, reverse), 7, lambda t: t)
            seen += page.items
            if not page.has_more:
                break
            cursor = page.next_cursor
        assert seen == (list(reversed(times)) if reverse else times)


def test_history_truncated_only_when_something_was_trimmed() -> None:
    for cursor, reverse, has_more in [(0, False, False), (5, False, True), (0, True, False), (9, True, True)]:
        assert history_truncated(cursor, reverse, has_more, None) is False


# Messages 10, 20 and 30 trimmed, 40 and 50 left: the mark is "31 10".
MARK = TrimMark(boundary=31, first=10)


def test_history_truncated_ascending_exactly_when_the_cursor_is_at_or_before_the_newest_trimmed() -> None:
    assert history_truncated(0, False, True, MARK) is True  # from the oldest
    assert history_truncated(1, False, False, MARK) is True
    assert history_truncated(30, False, False, MARK) is True  # 30 is gone
    assert history_truncated(31, False, False, MARK) is False  # between 30 (gone) and 40 (kept): nothing lost
    assert history_truncated(40, False, True, MARK) is False
    assert history_truncated(51, False, False, MARK) is False  # past the last message


def test_history_truncated_reverse_only_on_the_last_page_that_reaches_a_trimmed_message() -> None:
    assert history_truncated(0, True, True, MARK) is False  # more to come: not yet
    assert history_truncated(0, True, False, MARK) is True  # from the newest, to the gap
    assert history_truncated(500, True, False, MARK) is True
    assert history_truncated(10, True, False, MARK) is True  # 10 is gone
    assert history_truncated(9, True, False, MARK) is False  # before the chat's first message
    unknown_first = TrimMark(boundary=31)
    assert history_truncated(9, True, False, unknown_first) is True  # an older version's mark: as before


def test_trim_marks_as_stored() -> None:
    assert parse_trim_mark(None) is None
    assert parse_trim_mark("0") is None  # the sweep's placeholder: nothing trimmed
    assert parse_trim_mark("31 10") == MARK
    assert parse_trim_mark("40") == TrimMark(40, 0)  # an older version's "oldest left"
    assert parse_trim_mark("-1") is EMPTIED_BY_AN_OLDER_VERSION
    assert parse_trim_mark("9223372036854775808 9223372036854775807") == TrimMark(2**63, 2**63 - 1)
