"""Cursor math: pure logic, no server."""

from rpc_server.paging import effective_limit, history_truncated, make_page, range_bounds


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
        assert history_truncated(cursor, reverse, has_more, trimmed_before=0) is False


def test_history_truncated_ascending_when_the_cursor_is_before_the_oldest_retained() -> None:
    assert history_truncated(0, False, True, trimmed_before=100) is True
    assert history_truncated(99, False, False, trimmed_before=100) is True
    assert history_truncated(100, False, False, trimmed_before=100) is False
    assert history_truncated(150, False, True, trimmed_before=100) is False
    assert history_truncated(150, False, False, trimmed_before=-1) is True  # nothing retained at all


def test_history_truncated_reverse_only_on_the_last_page() -> None:
    assert history_truncated(0, True, True, trimmed_before=100) is False
    assert history_truncated(500, True, False, trimmed_before=100) is True
    assert history_truncated(50, True, False, trimmed_before=100) is True
