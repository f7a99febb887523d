"""The HTTP tier's waiting room (http_server.admission.WaitingRoom): a
request that finds the limit full waits for a released slot, in order of
arrival, and is refused only when none came in time. In process, with
greenlets; every wait has a deadline far beyond what it should take, so a
waiter that is never woken fails the test instead of passing late."""

from __future__ import annotations

import gevent

from http_server.admission import WaitingRoom
from plumbing.admission import AdaptiveLimit

DEADLINE_S = 30.0


def _room(maximum: int, wait_s: float) -> tuple[AdaptiveLimit, WaitingRoom]:
    limit = AdaptiveLimit(maximum, target_s=10.0)
    return limit, WaitingRoom(limit, wait_s)


def test_a_request_finding_room_is_admitted_at_once() -> None:
    limit, room = _room(2, 3600)
    assert not room.full()
    assert limit.try_acquire() and not room.full()


def test_a_waiter_is_admitted_when_a_slot_is_released() -> None:
    limit, room = _room(1, 3600)  # a wait that only a released slot ends
    assert limit.try_acquire()
    waiter = gevent.spawn(room.full)
    gevent.sleep(0)  # it runs, finds the limit full and waits
    assert not waiter.ready(), "the waiter should wait while the only slot is taken"
    limit.release(0.001)
    waiter.join(timeout=DEADLINE_S)
    assert waiter.ready(), "the released slot did not wake the waiter"
    assert waiter.value is False, "woken by a free slot, the waiter is admitted"
    assert limit.refused_total == 0


def test_waiters_are_woken_in_order_of_arrival_one_per_released_slot() -> None:
    limit, room = _room(1, 3600)
    assert limit.try_acquire()
    first, second = gevent.spawn(room.full), gevent.spawn(room.full)
    gevent.sleep(0)
    limit.release(0.001)  # one slot: the first waiter's
    first.join(timeout=DEADLINE_S)
    assert first.value is False and not second.ready(), "the first to come is the first admitted"
    assert limit.try_acquire()  # the first takes its slot...
    limit.release(0.001)  # ...and gives it back: the second's turn
    second.join(timeout=DEADLINE_S)
    assert second.value is False


def test_a_newcomer_waits_behind_those_already_waiting() -> None:
    limit, room = _room(1, 3600)
    assert limit.try_acquire()
    waiter = gevent.spawn(room.full)
    gevent.sleep(0)
    newcomer = gevent.spawn(room.full)
    gevent.sleep(0)
    assert not newcomer.ready(), "a newcomer must not pass those already waiting"
    limit.release(0.001)
    waiter.join(timeout=DEADLINE_S)
    assert waiter.value is False and not newcomer.ready()
    gevent.kill(newcomer)


def test_a_waiter_no_slot_frees_for_is_refused_and_counted() -> None:
    limit, room = _room(1, 0.01)
    assert limit.try_acquire()
    assert room.full(), "no slot came: refused"
    assert limit.refused_total == 1


def test_without_a_wait_a_full_limit_refuses_at_once() -> None:
    limit, room = _room(1, 0)
    assert limit.try_acquire()
    assert room.full() and limit.refused_total == 1
