"""The HTTP tier's waiting room (http_server.admission.WaitingRoom): a
request that finds the limit full waits for a released slot, in order of
arrival, and is refused only when none came in time. In process, with
greenlets; every wait has a deadline far beyond what it should take, so a
waiter that is never woken fails the test instead of passing late. And a
call refused after its request was admitted, through the Falcon app with
a stand-in service."""

from __future__ import annotations

from typing import Any

import falcon.testing
import gevent
from prometheus_client import REGISTRY

from http_server.admission import WaitingRoom, overloaded
from http_server.app import create_app
from http_server.streaming import Subscribe
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


def test_a_call_finding_the_slots_taken_waits_for_one_and_takes_it() -> None:
    limit, room = _room(1, 3600)
    assert room.acquire(), "a free slot is taken at once"
    caller = gevent.spawn(room.acquire)
    gevent.sleep(0)
    assert not caller.ready(), "with the only slot taken, the call waits"
    limit.release(0.001)
    caller.join(timeout=DEADLINE_S)
    assert caller.value is True and limit.in_flight == 1, "woken, it holds the slot"


def test_a_call_is_refused_when_no_slot_comes_in_time() -> None:
    limit, room = _room(1, 0.01)
    assert room.acquire()
    assert not room.acquire() and limit.refused_total == 1 and limit.in_flight == 1


class OverloadedService:
    """Stands in for MessageService: every call is refused by admission
    control after its request was admitted (no slot came in time)."""

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise overloaded(name == "send")

        return call


def _refused(route: str) -> float:
    return REGISTRY.get_sample_value("http_admission_refused_total", {"route": route}) or 0.0


def test_a_call_refused_after_admission_is_answered_and_counted_as_the_gate_refusals_are() -> None:
    service: Any = OverloadedService()
    app = falcon.testing.TestClient(create_app(service, 65536, streams=Subscribe(service, 10, 15)))
    before = {route: _refused(route) for route in ("/api/send", "/api/subscribe")}
    sent = app.simulate_post("/api/send", json={"chat": "a:b", "text": "hi", "sender": "a"})
    assert sent.status_code == 503 and sent.headers.get("Retry-After") == "1", (sent.status, sent.text)
    assert sent.json == {"code": 503, "msg": "server overloaded: retry later; not stored"}, sent.text
    stream = app.simulate_get("/api/subscribe", params={"chat": "a:b"})
    assert stream.status_code == 200 and "event: unavailable" in stream.text, (stream.status, stream.text)
    assert _refused("/api/send") == before["/api/send"] + 1
    assert _refused("/api/subscribe") == before["/api/subscribe"] + 1
