"""The events agent's loop (agents/__init__.py): batches applied and written in order,
each acknowledged only once its own writes are durable, never when they failed."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import faust
import pytest

import eventpatterns.agents as agents
from eventpatterns.agents import apply_batches

from .test_batching import wait_until

Log = list[tuple[str, tuple[int, ...]]]


class Runtime:
    """Stands in for `app.Runtime`: logs what the loop asks of it."""

    def __init__(self, log: Log, failing: tuple[int, ...] | None = None) -> None:
        self.log = log
        self.failing = failing

    def process_batch(self, batch: list[Any]) -> tuple[int, ...]:
        values = tuple(event.value for event in batch)
        self.log.append(("apply", values))
        return values

    async def commit_batch(self, values: tuple[int, ...]) -> None:
        self.log.append(("write", values))
        await asyncio.sleep(0)  # the broker's round trip: other tasks run meanwhile
        if values == self.failing:
            raise ConnectionError("broker gone")
        self.log.append(("durable", values))


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    """What the runtime was asked and what the loop acknowledged, in order."""
    entries: Log = []

    async def acknowledge(stream: Any, events: list[Any]) -> None:
        entries.append(("ack", tuple(event.value for event in events)))

    monkeypatch.setattr(agents, "acknowledge", acknowledge)
    return entries


def loop_agent(runtime: Runtime, crashed: list[BaseException]) -> Any:
    app = faust.App(
        "test-events-agent", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False
    )

    @app.agent()
    async def agent(stream: Any) -> None:
        try:
            await apply_batches(runtime, stream, max_events=2, within=3600)  # full batches only
        except ConnectionError as error:
            crashed.append(error)

    return agent


async def run(runtime: Runtime, values: list[int], until: Any) -> list[BaseException]:
    crashed: list[BaseException] = []
    async with loop_agent(runtime, crashed).test_context() as agent:
        for value in values:
            await agent.put(value)
        await wait_until(lambda: until(crashed))
    return crashed


async def test_each_batch_is_acknowledged_once_its_writes_are_durable(log: Log) -> None:
    await run(Runtime(log), [1, 2, 3, 4, 5, 6], until=lambda _: ("ack", (5, 6)) in log)
    batches = [(1, 2), (3, 4), (5, 6)]
    assert [values for step, values in log if step == "apply"] == batches
    for earlier, later in itertools.pairwise(batches):
        assert (
            log.index(("durable", earlier))
            < log.index(("ack", earlier))
            < log.index(("apply", later))
        )
    assert log[-2:] == [("durable", (5, 6)), ("ack", (5, 6))]


async def test_a_batch_whose_writes_failed_is_not_acknowledged(log: Log) -> None:
    crashed = await run(Runtime(log, failing=(3, 4)), [1, 2, 3, 4, 5, 6], until=bool)
    assert [type(error) for error in crashed] == [ConnectionError]
    assert ("ack", (1, 2)) in log
    assert ("write", (3, 4)) in log
    assert ("ack", (3, 4)) not in log and ("apply", (5, 6)) not in log
