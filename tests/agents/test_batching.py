"""Batches of a Faust stream's events (agents/batching.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from eventpatterns import faustpatches
from eventpatterns.agents.batching import Buffer, acknowledge, batches, current
from tests.test_faustpatches import Fetch, record


class FakeStream:
    current_event: Any = None


def faust_event(value: str, offset: int = 0) -> Any:
    """What the buffer reads of a Faust event."""
    tp = TP("t", 0)
    message = SimpleNamespace(
        topic=tp.topic, partition=0, offset=offset, timestamp=1.5, generation_id=1, tp=tp
    )
    return SimpleNamespace(message=message, key=b"user", value=value.encode())


def delivered(buffer: Buffer, stream: FakeStream, value: str) -> Any:
    stream.current_event = faust_event(value)
    return buffer.add(value)


def values(records: list[Any]) -> list[str]:
    return [record.value.decode() for record in records]


async def test_the_window_opens_at_a_batchs_first_event() -> None:
    stream = FakeStream()
    buffer = Buffer(stream, max_events=10)
    loop = asyncio.get_running_loop()
    assert not buffer.started.is_set()
    before = loop.time()
    delivered(buffer, stream, "a")
    opened = buffer.opened_at
    assert before <= opened <= loop.time() and buffer.started.is_set()
    await asyncio.sleep(0.01)
    delivered(buffer, stream, "b")
    assert buffer.opened_at == opened  # a later event does not move it
    assert values(buffer.take()) == ["a", "b"]
    assert not buffer.started.is_set()
    delivered(buffer, stream, "c")
    assert buffer.opened_at > opened  # the next batch's window opens at its own first


async def test_a_full_buffer_holds_the_stream_until_the_batch_is_taken() -> None:
    stream = FakeStream()
    buffer = Buffer(stream, max_events=2)
    assert delivered(buffer, stream, "a") == "a"
    held = delivered(buffer, stream, "b")
    assert buffer.full.is_set()
    waiting = asyncio.ensure_future(held)
    await asyncio.sleep(0)
    assert not waiting.done()
    assert values(buffer.take()) == ["a", "b"]
    assert await asyncio.wait_for(waiting, 5) == "b"  # the stream goes on with its value
    assert not buffer.full.is_set()


async def test_an_event_of_faust_s_path_is_buffered_as_a_record_that_keeps_its_message() -> None:
    stream = FakeStream()
    buffer = Buffer(stream, max_events=5)
    event = faust_event("a", offset=7)
    stream.current_event = event
    buffer.add("a")
    [record] = buffer.take()
    assert (record.topic, record.partition, record.offset) == ("t", 0, 7)
    assert (record.key, record.value, record.timestamp_ms, record.generation_id) == (
        b"user",
        b"a",
        1500,
        1,
    )
    assert record.fetch.message is event.message and record.fetch.refcount == 1


def test_an_event_without_a_current_event_is_refused() -> None:
    with pytest.raises(RuntimeError):
        Buffer(FakeStream(), 5).add("x")


async def test_a_bulk_delivery_is_taken_in_batches_of_at_most_max_and_waits_while_full() -> None:
    buffer = Buffer(FakeStream(), max_events=3)
    delivering = asyncio.ensure_future(buffer.receive(list(range(7))))
    await asyncio.sleep(0)
    assert buffer.started.is_set() and buffer.full.is_set() and not delivering.done()
    assert buffer.take() == [0, 1, 2]
    await asyncio.sleep(0)
    assert buffer.full.is_set() and not delivering.done()  # four left: still full
    assert buffer.take() == [3, 4, 5]
    await asyncio.wait_for(delivering, 5)  # room again: the consumer goes on
    assert buffer.started.is_set() and not buffer.full.is_set()
    assert buffer.take() == [6]
    assert not buffer.started.is_set()


async def test_a_bulk_delivery_with_room_left_returns_at_once() -> None:
    buffer = Buffer(FakeStream(), max_events=5)
    await asyncio.wait_for(buffer.receive(["a", "b"]), 1)
    await asyncio.wait_for(buffer.receive([]), 1)
    assert buffer.events == ["a", "b"] and not buffer.full.is_set()


class Flow:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


class App:
    def __init__(self, generation: int, flowing: bool = True) -> None:
        self.consumer_generation_id = generation
        self.flow_control = Flow(flowing)


class Record:
    def __init__(self, generation: int) -> None:
        self.generation_id = generation


def test_only_records_of_the_current_generation_are_applied_and_none_while_flow_is_held() -> None:
    stale, fresh = Record(1), Record(2)
    assert current(App(2), [stale, fresh, stale]) == [fresh]
    assert current(App(2), [fresh, fresh]) == [fresh, fresh]
    assert current(App(2, flowing=False), [fresh]) == []
    assert current(App(3), [stale, fresh]) == []


async def test_acknowledged_records_let_the_consumer_commit_past_them_unless_stale() -> None:
    fetch = Fetch()
    faustpatches_receive(fetch)
    await fetch.deliver(record("a", 0, 0), record("a", 0, 1))
    old = fetch.received[0]
    fetch.app.consumer_generation_id += 1  # a rebalance since they were fetched
    await fetch.deliver(record("a", 0, 2), record("a", 0, 3))
    new = fetch.received[1]
    acknowledge(fetch.app, old + new)
    assert fetch.consumer._acked[TP("a", 0)] == [2, 3]
    assert new[0].fetch.acked and not old[0].fetch.acked
    assert new[0].fetch not in fetch.consumer.unacked


async def test_nothing_is_acknowledged_while_flow_is_held() -> None:
    fetch = Fetch()
    faustpatches_receive(fetch)
    await fetch.deliver(record("a", 0, 0))
    fetch.app.flow_control.suspend()
    acknowledge(fetch.app, fetch.received[0])
    assert not fetch.consumer._acked[TP("a", 0)]


def faustpatches_receive(fetch: Fetch) -> None:
    faustpatches.receive_in_bulk(fetch.app, ["a"], fetch.receive)


def batching_agent(
    max_events: int, within: float, report_idle: bool = False, idle_after: float | None = None
) -> tuple[Any, list[list[int]]]:
    app = faust.App(
        "test-batching", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False
    )
    taken: list[list[int]] = []

    @app.agent()
    async def agent(stream: Any) -> None:
        async for batch in batches(stream, max_events, within, report_idle, idle_after):
            taken.append([int(record.value) for record in batch])

    return agent, taken


async def wait_until(condition: Any, timeout: float = 10) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


@settings(max_examples=15, deadline=None)
@given(
    values=st.lists(st.integers(), min_size=1, max_size=40),
    max_events=st.integers(1, 8),
    pauses=st.lists(st.booleans(), max_size=40),
)
def test_every_event_comes_once_in_order_in_batches_of_at_most_max(
    values: list[int], max_events: int, pauses: list[bool]
) -> None:
    async def scenario() -> list[list[int]]:
        agent, taken = batching_agent(max_events, within=0.002)
        async with agent.test_context() as test_agent:
            for value, pause in zip(values, pauses + [False] * len(values), strict=False):
                await test_agent.put(str(value).encode())
                if pause:
                    await asyncio.sleep(0.003)  # lets a window close between events
            await wait_until(lambda: sum(map(len, taken)) >= len(values))
        return taken

    taken = asyncio.run(scenario())
    assert [value for batch in taken for value in batch] == values
    assert all(1 <= len(batch) <= max_events for batch in taken)


async def test_a_full_batch_goes_without_waiting_out_the_window() -> None:
    agent, taken = batching_agent(max_events=3, within=3600)
    async with agent.test_context() as test_agent:
        for value in (1, 2, 3):
            await test_agent.put(str(value).encode())
        await wait_until(lambda: taken == [[1, 2, 3]], timeout=10)


async def test_an_idle_moment_after_a_batch_is_reported_once() -> None:
    agent, taken = batching_agent(max_events=5, within=0.01, report_idle=True)
    async with agent.test_context() as test_agent:
        await test_agent.put(b"1")
        await wait_until(lambda: taken == [[1], []])
        await asyncio.sleep(0.05)  # five windows more without events: no more reports
        assert taken == [[1], []]
        await test_agent.put(b"2")
        await wait_until(lambda: taken == [[1], [], [2], []])


async def test_no_idle_moment_is_reported_while_events_keep_coming() -> None:
    agent, taken = batching_agent(max_events=2, within=3600, report_idle=True)
    async with agent.test_context() as test_agent:
        for value in (1, 2, 3, 4):
            await test_agent.put(str(value).encode())
        await wait_until(lambda: taken[:2] == [[1, 2], [3, 4]])
        assert [] not in taken  # the window is an hour: none was over


async def test_the_idle_moment_comes_after_its_own_wait_not_the_window() -> None:
    agent, taken = batching_agent(max_events=5, within=3600, report_idle=True, idle_after=0.01)
    async with agent.test_context() as test_agent:
        for value in range(1, 6):  # a full batch: it goes without waiting out the hour
            await test_agent.put(str(value).encode())
        await wait_until(lambda: taken == [[1, 2, 3, 4, 5], []])


async def test_windows_that_close_are_no_idle_moment_before_its_wait() -> None:
    agent, taken = batching_agent(max_events=5, within=0.001, report_idle=True, idle_after=3600)
    async with agent.test_context() as test_agent:
        await test_agent.put(b"1")
        await wait_until(lambda: taken == [[1]])
        await asyncio.sleep(0.05)  # fifty windows without events, the idle wait an hour
        await test_agent.put(b"2")
        await wait_until(lambda: taken == [[1], [2]])
