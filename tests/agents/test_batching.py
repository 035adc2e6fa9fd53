"""Batches of a Faust stream's events (agents/batching.py)."""

from __future__ import annotations

import asyncio
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


def delivered(buffer: Buffer, stream: FakeStream, event: str) -> Any:
    stream.current_event = event
    return buffer.add(event)


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
    assert buffer.take() == ["a", "b"]
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
    assert buffer.take() == ["a", "b"]
    assert await asyncio.wait_for(waiting, 5) == "b"  # the stream goes on with its value
    assert not buffer.full.is_set()


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


class Message:
    def __init__(self, generation: int) -> None:
        self.generation_id = generation


class Event:
    def __init__(self, generation: int) -> None:
        self.message = Message(generation)


def test_only_events_of_the_current_generation_are_applied_and_none_while_flow_is_held() -> None:
    stale, fresh = Event(1), Event(2)
    assert current(App(2), [stale, fresh, stale]) == [fresh]
    assert current(App(2), [fresh, fresh]) == [fresh, fresh]
    assert current(App(2, flowing=False), [fresh]) == []
    assert current(App(3), [stale, fresh]) == []


async def test_acknowledged_events_let_the_consumer_commit_past_them_unless_stale() -> None:
    fetch = Fetch()
    faustpatches_receive(fetch)
    await fetch.deliver(record("a", 0, 0), record("a", 0, 1))
    old = fetch.received[0]
    fetch.app.consumer_generation_id += 1  # a rebalance since they were fetched
    await fetch.deliver(record("a", 0, 2), record("a", 0, 3))
    new = fetch.received[1]
    acknowledge(old + new)
    assert fetch.consumer._acked[TP("a", 0)] == [2, 3]
    assert all(e.message.acked for e in new) and not any(e.message.acked for e in old)


async def test_nothing_is_acknowledged_while_flow_is_held() -> None:
    fetch = Fetch()
    faustpatches_receive(fetch)
    await fetch.deliver(record("a", 0, 0))
    fetch.app.flow_control.suspend()
    acknowledge(fetch.received[0])
    assert not fetch.consumer._acked[TP("a", 0)]


def faustpatches_receive(fetch: Fetch) -> None:
    faustpatches.receive_in_bulk(fetch.app, ["a"], fetch.receive)


def batching_agent(max_events: int, within: float) -> tuple[Any, list[list[int]]]:
    app = faust.App(
        "test-batching", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False
    )
    taken: list[list[int]] = []

    @app.agent()
    async def agent(stream: Any) -> None:
        async for batch in batches(stream, max_events, within):
            taken.append([event.value for event in batch])

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
                await test_agent.put(value)
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
            await test_agent.put(value)
        await wait_until(lambda: taken == [[1, 2, 3]], timeout=10)
