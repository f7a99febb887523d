"""The adaptive concurrency limit's control law (plumbing.admission), with a
clock the test moves: pure logic, nothing timed."""

from __future__ import annotations

from plumbing.admission import STORM_WINDOWS, WINDOW_S, AdaptiveLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def next_window(self) -> None:
        self.now += WINDOW_S


def _fill(limit: AdaptiveLimit) -> int:
    """Acquire until refused; how many were admitted."""
    admitted = 0
    while limit.try_acquire():
        admitted += 1
        assert admitted <= limit.maximum, "admitted past the maximum"
    return admitted


def test_a_full_limit_refuses_and_a_released_slot_admits_again() -> None:
    clock = Clock()
    limit = AdaptiveLimit(8, target_s=0.05, clock=clock)
    assert _fill(limit) == 8
    assert not limit.try_acquire() and limit.refused_total == 2  # _fill's last try, and this one
    limit.release(0.001)
    assert limit.try_acquire(), "a slot given back is free again"


def test_slow_requests_shrink_the_limit_to_its_floor_and_fast_ones_grow_it_back() -> None:
    clock = Clock()
    limit = AdaptiveLimit(64, target_s=0.05, clock=clock)
    limits = []
    for _ in range(60):  # a burst: every window full, every request over the target
        admitted = _fill(limit)
        for _ in range(admitted):
            limit.release(0.2)
        clock.next_window()
        limits.append(limit.limit)  # (a window's end is seen on the next call: one window late)
    assert limits[1] < 64 and limits == sorted(limits, reverse=True), limits
    assert limit.limit == limit.minimum == 4, "never below a sixteenth of the maximum"
    for _ in range(100):  # after it: full windows, fast requests
        admitted = _fill(limit)
        for _ in range(admitted):
            limit.release(0.001)
        clock.next_window()
    assert limit.limit == 64, "grows back, up to the maximum and not beyond"


def test_one_slow_request_in_a_hundred_is_tolerated_and_two_are_not() -> None:
    for slow, shrinks in ((1, False), (2, True)):
        clock = Clock()
        limit = AdaptiveLimit(200, target_s=0.05, clock=clock)
        for _ in range(100):  # half the limit in flight at once: the window uses it
            assert limit.try_acquire()
        for i in range(100):
            limit.release(0.2 if i < slow else 0.001)
        clock.next_window()
        limit.try_acquire()  # the window's end is seen on the next call
        assert (limit.limit < 200) is shrinks, (slow, limit.limit)


def test_a_drop_from_behind_counts_as_slow() -> None:
    clock = Clock()
    limit = AdaptiveLimit(10, target_s=0.05, clock=clock)
    for _ in range(5):
        assert limit.try_acquire()
    limit.release(0.001, dropped=True)
    clock.next_window()
    limit.try_acquire()
    assert limit.limit == 9


def test_slow_requests_with_few_in_flight_leave_the_limit_alone() -> None:
    """Slow for another reason (a neighbour took the CPU): refusing others would not help."""
    clock = Clock()
    limit = AdaptiveLimit(64, target_s=0.05, clock=clock)
    for _ in range(20):
        for _ in range(3):  # three at a time, all slow
            assert limit.try_acquire()
        for _ in range(3):
            limit.release(0.5)
        clock.next_window()
    assert limit.limit == 64


def test_an_idle_limit_does_not_grow_and_a_wait_is_no_sample() -> None:
    clock = Clock()
    limit = AdaptiveLimit(64, target_s=0.05, clock=clock)
    for _ in range(_fill(limit)):
        limit.release(0.2)
    clock.next_window()
    limit.try_acquire()
    shrunk = limit.limit
    assert shrunk < 64
    limit.release(None)  # left to wait: neither slow nor fast
    for _ in range(20):  # one request at a time: the limit is not used, so it does not grow
        assert limit.try_acquire()
        limit.release(0.001)
        clock.next_window()
    assert limit.limit == shrunk and limit.in_flight == 0


def test_a_window_refusing_ten_times_what_it_served_is_a_storm_and_an_ordinary_overload_is_not() -> None:
    """wrk -c64 on pulls once drove the HTTP limit down: 155,203 refusals,
    1,475 answers served in 6 s. Windows like that, in a row, are a storm
    (refusals get paced); 2x capacity open loop refused 1.4 per request
    served: not one."""
    clock = Clock()
    limit = AdaptiveLimit(4, target_s=0.05, clock=clock)
    for window in range(STORM_WINDOWS):
        assert not limit.storming, f"a storm after {window} windows, not {STORM_WINDOWS}"
        admitted = _fill(limit)
        for _ in range(100):
            assert not limit.try_acquire()  # a closed-loop client, sent again at once
        for _ in range(admitted):  # at most 4 served, slowly
            limit.release(0.2)
        clock.next_window()
        limit.full()  # the window's end is seen on the next call
    assert limit.storming, "100 refusals for at most 4 requests served, window after window"
    admitted = _fill(limit)  # an ordinary overload: about as many refused as served
    for _ in range(admitted):
        assert not limit.try_acquire()
    for _ in range(admitted):
        limit.release(0.001)
    clock.next_window()
    limit.full()
    assert not limit.storming, "refusals no more than ten times the requests served"
