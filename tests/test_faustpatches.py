"""faustpatches: the consumer's per-record `wait_first` fast path (`deliver_without_tasks`),
the table manager's start (`start_tables_without_delay`), the consumer on the app's
loop (`consume_on_the_app_loop`) and fetches delivered in bulk (`deliver_fetches_in_bulk`)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import itertools
import threading
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.tables.manager import TableManager
from faust.transport.consumer import Consumer
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st
from mode import Service

from eventpatterns import faustpatches
from eventpatterns.broker import EmbeddedBroker


class Fetcher(Service):
    """Stands in for the consumer: `Consumer.wait_first` only uses Service's own parts."""


@pytest.fixture
async def service() -> Fetcher:
    faustpatches.deliver_without_tasks()
    return Fetcher()


def wait_first(service: Service, *coros: Any) -> Any:
    return Consumer.wait_first(service, *coros)


async def test_a_delivery_that_needs_no_wait_completes_at_once_and_the_others_never_run(
    service: Fetcher,
) -> None:
    ran: list[str] = []

    async def deliver() -> str:
        ran.append("deliver")
        return "delivered"

    async def suspended() -> None:
        ran.append("suspended")

    loser = suspended()
    results = await wait_first(service, deliver(), loser)
    assert (results.results, results.stopped) == (["delivered"], False)
    assert ran == ["deliver"]
    # closed, so that it does not warn of a coroutine never awaited
    assert inspect.getcoroutinestate(loser) == inspect.CORO_CLOSED


async def test_a_delivery_that_fails_at_once_raises(service: Fetcher) -> None:
    async def deliver() -> None:
        raise ValueError("bad record")

    async def suspended() -> None:
        await asyncio.Event().wait()

    with pytest.raises(ValueError, match="bad record"):
        await wait_first(service, deliver(), suspended())


async def test_a_delivery_that_waits_goes_on_when_what_it_waits_for_is_done(
    service: Fetcher,
) -> None:
    space = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def deliver() -> str:
        steps.append("queue full")
        steps.append(await space)
        return "delivered"

    suspend = asyncio.Event()
    waiting = asyncio.ensure_future(wait_first(service, deliver(), suspend.wait()))
    await asyncio.sleep(0)
    assert steps == ["queue full"] and not waiting.done()
    space.set_result("space")
    results = await asyncio.wait_for(waiting, 5)
    assert steps == ["queue full", "space"]
    assert results.results[0] == "delivered"


async def test_suspending_flow_abandons_a_waiting_delivery_as_faust_does(
    service: Fetcher,
) -> None:
    cleaned_up = asyncio.Event()

    async def deliver() -> None:
        try:
            await asyncio.Event().wait()  # a queue that never drains
        finally:
            cleaned_up.set()

    suspend = asyncio.Event()
    waiting = asyncio.ensure_future(wait_first(service, deliver(), suspend.wait()))
    await asyncio.sleep(0)
    suspend.set()
    results = await asyncio.wait_for(waiting, 5)
    assert results.stopped is False
    assert results.results == [True]  # the suspend event won
    await asyncio.wait_for(cleaned_up.wait(), 5)  # the delivery was cancelled, not leaked


async def test_a_stopped_consumer_delivers_nothing(service: Fetcher) -> None:
    ran: list[str] = []

    async def deliver() -> None:
        ran.append("deliver")

    service._stopped.set()
    results = await wait_first(service, deliver(), asyncio.Event().wait())
    assert results.stopped is True


# One wait of a delivery: a value, an exception it catches, or yielding to the loop.
Step = st.one_of(
    st.tuples(st.just("value"), st.integers()),
    st.tuples(st.just("error"), st.integers()),
    st.tuples(st.just("sleep"), st.just(0)),
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(Step, max_size=6), fail_at_end=st.booleans())
def test_a_delivery_resumed_after_its_first_wait_does_what_it_does_run_as_a_task(
    steps: list[tuple[str, int]], fail_at_end: bool
) -> None:
    async def deliver(log: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        for kind, number in steps:
            if kind == "sleep":
                await asyncio.sleep(0)
                log.append("slept")
                continue
            future = loop.create_future()
            if kind == "value":
                loop.call_soon(future.set_result, number)
            else:
                loop.call_soon(future.set_exception, KeyError(number))
            try:
                log.append(await future)
            except KeyError as error:
                log.append(("caught", error.args[0]))
        if fail_at_end:
            raise RuntimeError(len(log))
        return log

    async def outcome(run: Any) -> Any:
        log: list[Any] = []
        try:
            return ("returned", await run(deliver(log)), log)
        except RuntimeError as error:
            return ("raised", error.args, log)

    async def as_a_task(coro: Any) -> Any:
        return await asyncio.ensure_future(coro)

    async def through_the_patch(coro: Any) -> Any:
        faustpatches.deliver_without_tasks()
        results = await Consumer.wait_first(Fetcher(), coro, asyncio.Event().wait())
        return results.results[0]

    assert asyncio.run(outcome(through_the_patch)) == asyncio.run(outcome(as_a_task))


class StartingTables:
    """Stands in for the table manager: what `TableManager.on_start` calls on itself."""

    def __init__(self, should_stop: bool = False) -> None:
        self.should_stop = should_stop
        self.calls: list[str] = []
        self.recovery = self

    async def sleep(self, seconds: float) -> None:
        self.calls.append(f"sleep {seconds}")

    async def _update_channels(self) -> None:
        self.calls.append("subscribe changelogs")

    async def start(self) -> None:
        self.calls.append("start recovery")


async def test_the_table_manager_starts_recovery_without_faust_s_sleep() -> None:
    faustpatches.start_tables_without_delay()
    faustpatches.start_tables_without_delay()  # applying it twice changes nothing
    original, patched = StartingTables(), StartingTables()
    await TableManager.on_start.__wrapped__(original)
    await TableManager.on_start(patched)
    assert original.calls == ["sleep 1.0", "subscribe changelogs", "start recovery"]
    assert patched.calls == ["subscribe changelogs", "start recovery"]


async def test_a_stopping_table_manager_starts_nothing() -> None:
    faustpatches.start_tables_without_delay()
    manager = StartingTables(should_stop=True)
    await TableManager.on_start(manager)
    assert manager.calls == []


@pytest.mark.integration
async def test_the_consumer_serves_on_the_app_loop_without_a_thread_and_stops(
    broker: EmbeddedBroker,
) -> None:
    faustpatches.consume_on_the_app_loop()
    app = faust.App("test-one-loop", broker=broker.url, autodiscover=False)
    thread = app.consumer._thread
    assert thread.thread_loop is asyncio.get_running_loop()
    threads = threading.active_count()
    await thread.start()
    try:
        assert threading.active_count() == threads
        assert thread._consumer is not None and not thread._consumer._closed
        # Calls into "the thread" run here, synchronous ones and coroutines alike.
        assert await thread.call_thread(threading.get_ident) == threading.get_ident()
        assert await thread.call_thread(asyncio.sleep, 0, "slept") == "slept"
    finally:
        await asyncio.wait_for(thread.stop(), 30)
    assert thread._shutdown.is_set()
    assert thread._consumer._closed


# ------------------------------------------------------------------ fetches in bulk


def record(topic: str, partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic, partition, offset, 1_000, 0, b"user", f"{topic}{offset}".encode(), None, 4, 3, ()
    )


class Fetch:
    """A real (unstarted) Faust consumer, fed fetches as aiokafka returns them."""

    def __init__(self, acking: tuple[str, ...] = ("a", "b", "other")) -> None:
        faustpatches.apply_all(25)
        self.app = faust.App("test-bulk", broker="kafka://127.0.0.1:1", autodiscover=False)
        self.consumer = self.app.consumer
        self.app.topics.acking_topics.update(acking)
        self.app.flow_control.resume()  # as after the worker's first assignment
        self.consumer.highwater = lambda tp: 100  # the broker's answer, not asked here
        self.one_by_one: list[int] = []

        self.messages: list[Any] = []

        async def faust_path(message: Any) -> None:
            self.one_by_one.append(message.offset)
            self.messages.append(message)

        self.consumer.callback = faust_path
        self.received: list[list[Any]] = []

    async def receive(self, records: list[Any]) -> None:
        self.received.append(records)

    async def deliver(self, *records: ConsumerRecord[bytes, bytes]) -> None:
        fetched: dict[TP, list[Any]] = {}
        for r in records:
            fetched.setdefault(TP(r.topic, r.partition), []).append(r)
        await faustpatches._deliver_fetch(self.consumer, fetched, set(fetched))


async def test_a_bulk_topic_s_fetch_arrives_as_one_list_of_records_tracked_for_acks() -> None:
    fetch = Fetch()
    faustpatches.receive_in_bulk(fetch.app, ["a", "b"], fetch.receive)
    await fetch.deliver(
        record("a", 0, 5), record("a", 0, 6), record("b", 1, 0), record("other", 0, 3)
    )
    received = [[(r.topic, r.partition, r.offset, r.value) for r in b] for b in fetch.received]
    assert received == [[("a", 0, 5, b"a5"), ("a", 0, 6, b"a6")], [("b", 1, 0, b"b0")]]
    assert fetch.one_by_one == [3]  # a topic without a receiver takes Faust's path
    a5, a6 = fetch.received[0]
    assert (a5.key, a5.timestamp_ms, a5.generation_id) == (b"user", 1_000, 0)
    pending = a5.fetch
    assert pending is a6.fetch and pending.refcount == 2 and pending.tp == TP("a", 0)
    assert set(fetch.consumer.unacked) == {pending, fetch.received[1][0].fetch}
    faustpatches.acknowledge_fetched(fetch.consumer, [a5])
    assert fetch.consumer._acked[TP("a", 0)] == [5]
    assert pending in fetch.consumer.unacked and not pending.acked  # a6 is not yet
    faustpatches.acknowledge_fetched(fetch.consumer, [a6])
    assert fetch.consumer._acked[TP("a", 0)] == [5, 6] and fetch.consumer._n_acked == 2
    assert pending.acked and pending not in fetch.consumer.unacked


async def test_a_fetch_whose_records_are_dropped_unacknowledged_leaves_unacked() -> None:
    """As Faust's messages: a rebalance does not wait for records nobody holds."""
    fetch = Fetch()
    faustpatches.receive_in_bulk(fetch.app, ["a"], fetch.receive)
    await fetch.deliver(record("a", 0, 0), record("a", 0, 1))
    assert len(fetch.consumer.unacked) == 1
    fetch.received.clear()
    gc.collect()
    assert len(fetch.consumer.unacked) == 0


async def test_a_record_of_faust_s_path_is_acknowledged_as_its_message() -> None:
    fetch = Fetch()
    await fetch.deliver(record("a", 0, 4))  # no receiver: Faust's path
    [message] = fetch.messages
    fetch.consumer.unacked.add(message)  # as the stream tracks it
    event = SimpleNamespace(message=message, key=message.key, value=message.value)
    faustpatches.acknowledge_fetched(fetch.consumer, [faustpatches.fetched_from_event(event)])
    assert message.acked and message not in fetch.consumer.unacked
    assert fetch.consumer._acked[TP("a", 0)] == [4]


async def test_records_read_before_are_dropped_and_gaps_noted_as_faust_does() -> None:
    fetch = Fetch()
    faustpatches.receive_in_bulk(fetch.app, ["a"], fetch.receive)
    fetch.consumer._read_offset[TP("a", 0)] = 7
    await fetch.deliver(record("a", 0, 6), record("a", 0, 7), record("a", 0, 10))
    assert [r.offset for r in fetch.received[0]] == [7, 10]
    assert sorted((i.begin, i.end) for i in fetch.consumer._gap[TP("a", 0)]) == [(8, 11)]
    assert fetch.consumer._read_offset[TP("a", 0)] == 10


async def test_a_stopped_receiver_leaves_its_topics_to_faust() -> None:
    fetch = Fetch()
    stop = faustpatches.receive_in_bulk(fetch.app, ["a"], fetch.receive)
    stop()
    await fetch.deliver(record("a", 0, 0), record("a", 0, 1))
    assert fetch.received == [] and fetch.one_by_one == [0, 1]


async def test_a_rebalance_during_a_fetch_delivers_none_of_the_rest() -> None:
    fetch = Fetch()

    async def receive_then_rebalance(records: list[Any]) -> None:
        fetch.received.append(records)
        fetch.app.consumer_generation_id += 1

    faustpatches.receive_in_bulk(fetch.app, ["a"], receive_then_rebalance)
    await fetch.deliver(record("a", 0, 0), record("a", 1, 0))
    assert [[r.partition for r in got] for got in fetch.received] == [[0]]


async def test_a_full_receiver_holds_the_fetch_until_flow_is_suspended() -> None:
    fetch = Fetch()
    room = asyncio.Event()

    async def full(records: list[Any]) -> None:
        fetch.received.append(records)
        await room.wait()

    faustpatches.receive_in_bulk(fetch.app, ["a"], full)
    delivering = asyncio.ensure_future(fetch.deliver(record("a", 0, 0), record("a", 1, 0)))
    await asyncio.sleep(0.01)
    assert not delivering.done() and len(fetch.received) == 1
    fetch.consumer.stop_flow()  # a rebalance begins
    await asyncio.wait_for(delivering, 5)
    assert len(fetch.received) == 1  # abandoned, as Faust abandons a waiting delivery


Offsets = st.lists(st.integers(0, 30), max_size=25)
Committed = st.none() | st.integers(0, 30)
AckedBefore = st.lists(st.integers(0, 30), max_size=5)


async def faust_s_books(
    fetch: Fetch, offsets: list[int], committed: int | None, acked_before: list[int]
) -> list[Any]:
    """Delivered the stream's way: Faust's messages, tracked as the stream tracks them."""
    consumer = fetch.consumer
    consumer._committed_offset[TP("a", 0)] = committed
    for offset in acked_before:
        consumer._acked_index[TP("a", 0)].add(offset)
    await fetch.deliver(*[record("a", 0, o) for o in offsets], record("b", 0, 1))
    for message in fetch.messages:
        if message.topic in fetch.app.topics.acking_topics:
            message.tracked = True
            consumer.unacked.add(message)
    return fetch.messages


def books(consumer: Any) -> tuple[Any, ...]:
    """What the next commit goes past, and what a rebalance still waits for.

    `Consumer.ack` leaves a message below the committed offset in `unacked`,
    acked, until `wait_empty` cleans the acked ones out; so only the rest count.
    """
    return (
        dict(consumer._acked),
        {tp: sorted(index) for tp, index in consumer._acked_index.items()},
        consumer._n_acked,
        sorted((m.tp, m.refcount) for m in consumer.unacked if not m.acked),
    )


@settings(max_examples=40, deadline=None)
@given(offsets=Offsets, committed=Committed, acked_before=AckedBefore)
def test_acknowledging_messages_all_at_once_keeps_the_books_as_one_by_one(
    offsets: list[int], committed: int | None, acked_before: list[int]
) -> None:
    async def acknowledged(all_at_once: bool) -> tuple[Any, ...]:
        fetch = Fetch(acking=("a",))  # "b" is not an acking topic
        messages = await faust_s_books(fetch, offsets, committed, acked_before)
        messages += messages[:2]  # acknowledged twice: counted once
        if all_at_once:
            faustpatches.acknowledge_all(fetch.consumer, messages)
        else:
            for message in messages:
                fetch.consumer.ack(message)
        return (*books(fetch.consumer), [m.acked for m in messages])

    assert asyncio.run(acknowledged(True)) == asyncio.run(acknowledged(False))


@settings(max_examples=40, deadline=None)
@given(
    offsets=Offsets,
    committed=Committed,
    acked_before=AckedBefore,
    cuts=st.lists(st.integers(0, 26), max_size=4),
)
def test_acknowledging_fetched_records_keeps_the_books_as_faust_s_messages(
    offsets: list[int], committed: int | None, acked_before: list[int], cuts: list[int]
) -> None:
    """Fetched records, acknowledged in batches cut anywhere, against `Consumer.ack`."""

    async def in_bulk() -> tuple[Any, ...]:
        fetch = Fetch(acking=("a",))
        faustpatches.receive_in_bulk(fetch.app, ["a", "b"], fetch.receive)
        consumer = fetch.consumer
        consumer._committed_offset[TP("a", 0)] = committed
        for offset in acked_before:
            consumer._acked_index[TP("a", 0)].add(offset)
        await fetch.deliver(*[record("a", 0, o) for o in offsets], record("b", 0, 1))
        records = [r for got in fetch.received for r in got]
        edges = [0, *sorted(cuts), len(records)]
        for start, end in itertools.pairwise(edges):
            faustpatches.acknowledge_fetched(consumer, records[start:end])
        return books(consumer)

    async def one_by_one() -> tuple[Any, ...]:
        fetch = Fetch(acking=("a",))
        for message in await faust_s_books(fetch, offsets, committed, acked_before):
            fetch.consumer.ack(message)
        return books(fetch.consumer)

    assert asyncio.run(in_bulk()) == asyncio.run(one_by_one())
