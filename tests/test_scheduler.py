"""The timer index and the APScheduler-hosted timer service (wake-ups send ticks)."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventpatterns.scheduler import (
    COMPACT_SLACK,
    TICK_RETRY_US,
    TimerIndex,
    TimerService,
    now_us,
)


def test_index_pops_due_users_in_due_order_and_forgets_them() -> None:
    index = TimerIndex()
    index.set("a", 30)
    index.set("b", 10)
    index.set("c", 20)
    index.set("b", 25)  # rescheduled later
    assert index.earliest() == 20
    assert index.pop_due(25) == [("c", 20), ("b", 25)]
    assert index.earliest() == 30 and len(index) == 1


def test_service_forgets_the_users_of_revoked_partitions() -> None:
    service = TimerService(lambda user, due: None, clock=lambda: 0)
    home = {b"a": 0, b"b": 1, b"c": 0}
    for user, due in ((b"a", 5), (b"b", 6), (b"c", 7)):
        service.update(user, due)
    service.forget_partitions({0}, home.__getitem__)
    assert service.index.pop_due(100) == [(b"b", 6)]
    service.shutdown()


def test_recovered_users_share_their_keys_with_the_store() -> None:
    store = {b"user-%07d" % n: b"state" for n in range(1000)}
    index = TimerIndex()
    index.load((key, 100 + n) for n, key in enumerate(store))
    ((first, _),) = index.pop_due(100)
    assert first is next(iter(store))  # the same object, not a copy


def test_an_index_rescheduled_many_times_stays_small_and_right() -> None:
    """Each reschedule leaves a stale heap entry: they are dropped as they pile up."""
    rng = random.Random(7)
    index = TimerIndex()
    model: dict[str, int] = {}
    for _ in range(20_000):
        user, due = f"u{rng.randrange(50)}", rng.randrange(10**6)
        index.set(user, due)
        model[user] = due
        assert len(index._heap) <= 2 * len(model) + COMPACT_SLACK
    assert index.pop_due(10**6) == sorted(model.items(), key=lambda entry: (entry[1], entry[0]))


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.one_of(st.none(), st.integers(0, 50)))))
def test_index_agrees_with_a_plain_dict(updates: list[tuple[str, int | None]]) -> None:
    index = TimerIndex()
    model: dict[str, int] = {}
    for user, due in updates:
        index.set(user, due)
        if due is None:
            model.pop(user, None)
        else:
            model[user] = due
    assert index.earliest() == (min(model.values()) if model else None)
    popped = index.pop_due(25)
    assert sorted(popped) == sorted((u, d) for u, d in model.items() if d <= 25)
    assert [d for _, d in popped] == sorted(d for _, d in popped)


@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.one_of(st.none(), st.integers(0, 50)))),
    st.lists(st.tuples(st.sampled_from("cdefgh"), st.integers(0, 50))),
)
def test_loading_at_once_is_setting_one_by_one(
    before: list[tuple[str, int | None]], dues: list[tuple[str, int]]
) -> None:
    def leaving(user: object) -> bool:  # the users of a revoked partition
        return ord(str(user)) % 5 == 3

    at_once, one_by_one = TimerIndex(), TimerIndex()
    for user, due in before:
        at_once.set(user, due)
        one_by_one.set(user, due)
    at_once.load(dues)
    for user, due in dues:
        one_by_one.set(user, due)
    assert len(at_once) == len(one_by_one)
    assert at_once.earliest() == one_by_one.earliest()
    assert at_once.drop(leaving) == one_by_one.drop(leaving)
    assert at_once.pop_due(50) == one_by_one.pop_due(50)


@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.one_of(st.none(), st.integers(0, 50)))),
    st.lists(st.tuples(st.sampled_from("cdefgh"), st.one_of(st.none(), st.integers(0, 50)))),
    st.integers(0, 60),
)
def test_a_batch_of_updates_rings_as_one_by_one_with_one_alarm_set(
    before: list[tuple[str, int | None]], batch: list[tuple[str, int | None]], now: int
) -> None:
    at_once = TimerService(lambda user, due: None, clock=lambda: now)
    one_by_one = TimerService(lambda user, due: None, clock=lambda: now)
    alarms_set: list[int] = []
    for service in (at_once, one_by_one):
        for user, due in before:
            service.update(user, due)
    at_once._set_alarm = alarms_set.append  # type: ignore[method-assign]
    at_once.alarm_at = one_by_one.alarm_at
    at_once.update_all(batch)
    for user, due in batch:
        one_by_one.update(user, due)
    assert at_once.index.pop_due(60) == one_by_one.index.pop_due(60)
    assert len(alarms_set) <= 1
    # whatever is due by the time one-by-one's alarm rings, the batch's rings by then too
    # (an alarm set for a time past rings at once: now)
    ring = alarms_set[0] if alarms_set else at_once.alarm_at
    if one_by_one.alarm_at is not None:
        assert ring is not None and max(ring, now) <= max(one_by_one.alarm_at, now)
    for service in (at_once, one_by_one):
        service.shutdown()


def test_loading_brings_the_alarm_forward() -> None:
    service = TimerService(lambda user, due: None, clock=lambda: 10)
    service.update("u", 500)
    service.load([("v", 300), ("w", 900)])
    assert service.alarm_at == 300
    service.load([("x", 400)])
    assert service.alarm_at == 300
    service.shutdown()


async def test_service_sends_ticks_when_due() -> None:
    sent: list[tuple[str, int]] = []
    service = TimerService(lambda user, due: sent.append((user, due)))
    service.start()
    try:
        now = now_us()
        service.update("late", now - 5_000_000)  # due while nobody ran: fires at once
        service.update("soon", now + 300_000)
        service.update("later", now + 60_000_000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(sent) < 2 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert sent == [("late", now - 5_000_000), ("soon", now + 300_000)]
        assert now_us() >= now + 300_000  # not early
        assert service.index.earliest() == now + 60_000_000
    finally:
        service.shutdown()


async def test_a_failed_send_is_retried() -> None:
    attempts: list[str] = []

    def flaky(user: str, due: int) -> None:
        attempts.append(user)
        if len(attempts) == 1:
            raise ConnectionError("broker away")

    service = TimerService(flaky, clock=lambda: 10)
    service.update("u", 5)
    service.wake()
    assert attempts == ["u"] and service.index.earliest() == 5
    service.wake()  # the next wake-up (at least a second later in real time) retries
    assert attempts == ["u", "u"] and service.index.earliest() == 10 + TICK_RETRY_US
    service.shutdown()


def test_a_tick_is_sent_again_until_the_users_state_is_written() -> None:
    sent: list[tuple[str, int]] = []
    clock = [1_000]
    service = TimerService(lambda user, due: sent.append((user, due)), clock=lambda: clock[0])
    service.update_all([("lost", 900), ("applied", 950)])
    service.wake()
    assert sent == [("lost", 900), ("applied", 950)]
    # the tick of "applied" reached the agent: its state was written, with no timer left
    service.update_all([("applied", None)])
    clock[0] = 1_000 + TICK_RETRY_US - 1
    service.wake()
    assert len(sent) == 2  # not yet
    clock[0] = 1_000 + TICK_RETRY_US
    service.wake()
    assert sent[2:] == [("lost", 1_000 + TICK_RETRY_US)]  # the lost one only, once more
    service.update_all([("lost", 5_000_000_000)])  # applied at last; a timer of its own left
    assert service.index.earliest() == 5_000_000_000
    service.shutdown()


@pytest.mark.parametrize("overdue", [0, 150])
def test_an_alarm_that_has_not_rung_by_its_time_is_not_put_off_by_later_timers(
    overdue: int,
) -> None:
    clock = [100]
    service = TimerService(lambda user, due: None, clock=lambda: clock[0])
    service.update("overdue", overdue)
    clock[0] = 200  # past the alarm, which has not rung: the event loop was busy
    service.update_all([("later", 10_000), ("latest", 20_000)])
    assert service.alarm_at == overdue  # set again to ring at once, for the overdue user
    service.update("sooner", 5_000)
    assert service.alarm_at == overdue
    clock[0] = 300
    service.wake()
    assert service.alarm_at == 5_000 and service.index.earliest() == 5_000
    service.shutdown()
