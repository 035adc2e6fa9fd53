"""The events agent's loop (agents/__init__.py): batches applied and written in order,
each acknowledged only once its own writes are durable; when writes fail, the worker
stops and nothing later is applied; when the core fails, the batch is applied one
event at a time and the failing event becomes a dead letter."""

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

    app: Any = None
    """Only passed on to `acknowledge`, which the `log` fixture replaces."""

    def __init__(
        self,
        log: Log,
        failing: tuple[int, ...] | None = None,
        poison: int | None = None,
    ) -> None:
        self.log = log
        self.failing = failing
        """The batch whose writes fail."""
        self.poison = poison
        """The event the core fails on."""
        self.failures: list[BaseException] = []

    def process_batch(self, batch: list[Any]) -> tuple[int, ...]:
        values = tuple(int(record.value) for record in batch)
        if self.poison in values:
            self.log.append(("failed", values))
            raise ValueError(f"the core failed on {self.poison}")
        self.log.append(("apply", values))
        return values

    def reject(self, record: Any, error: BaseException) -> tuple[int, ...]:
        self.log.append(("dead letter", (int(record.value),)))
        assert str(self.poison) in str(error)
        return (int(record.value),)

    async def commit_batch(self, values: tuple[int, ...]) -> None:
        self.log.append(("write", values))
        await asyncio.sleep(0)  # the broker's round trip: other tasks run meanwhile
        if values == self.failing:
            raise ConnectionError("broker gone")
        self.log.append(("durable", values))

    def fail(self, error: BaseException) -> None:
        self.failures.append(error)


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    """What the runtime was asked and what the loop acknowledged, in order."""
    entries: Log = []

    def acknowledge(app: Any, records: list[Any]) -> None:
        entries.append(("ack", tuple(int(record.value) for record in records)))

    monkeypatch.setattr(agents, "acknowledge", acknowledge)
    return entries


def loop_agent(runtime: Runtime) -> Any:
    app = faust.App(
        "test-events-agent", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False
    )

    @app.agent()
    async def agent(stream: Any) -> None:
        await apply_batches(runtime, stream, max_events=2, within=3600)  # full batches only
        runtime.log.append(("returned", ()))

    return agent


async def run(runtime: Runtime, values: list[int], until: Any) -> Log:
    """The log as it was when `until` held (stopping the agent makes it return)."""
    async with loop_agent(runtime).test_context() as agent:
        for value in values:
            await agent.put(str(value).encode())
        await wait_until(until)
        return list(runtime.log)


async def test_each_batch_is_acknowledged_once_its_writes_are_durable(log: Log) -> None:
    seen = await run(Runtime(log), [1, 2, 3, 4, 5, 6], until=lambda: ("ack", (5, 6)) in log)
    batches = [(1, 2), (3, 4), (5, 6)]
    assert [values for step, values in seen if step == "apply"] == batches
    for earlier, later in itertools.pairwise(batches):
        assert (
            seen.index(("durable", earlier))
            < seen.index(("ack", earlier))
            < seen.index(("apply", later))
        )
    assert seen[-2:] == [("durable", (5, 6)), ("ack", (5, 6))]


async def test_when_writes_fail_the_worker_stops_and_applies_nothing_more(log: Log) -> None:
    runtime = Runtime(log, failing=(3, 4))
    seen = await run(runtime, [1, 2, 3, 4, 5, 6, 7, 8], until=lambda: ("returned", ()) in log)
    assert [type(error) for error in runtime.failures] == [ConnectionError]
    assert seen == [
        ("apply", (1, 2)),
        ("write", (1, 2)),
        ("durable", (1, 2)),
        ("ack", (1, 2)),
        ("apply", (3, 4)),
        ("write", (3, 4)),
        ("returned", ()),
    ]


async def test_an_event_the_core_fails_on_becomes_a_dead_letter_and_the_rest_go_on(
    log: Log,
) -> None:
    runtime = Runtime(log, poison=4)
    seen = await run(runtime, [1, 2, 3, 4, 5, 6], until=lambda: ("ack", (5, 6)) in log)
    assert runtime.failures == []
    assert seen == [
        *[("apply", (1, 2)), ("write", (1, 2)), ("durable", (1, 2)), ("ack", (1, 2))],
        ("failed", (3, 4)),
        *[("apply", (3,)), ("write", (3,)), ("durable", (3,)), ("ack", (3,))],
        ("failed", (4,)),
        *[("dead letter", (4,)), ("write", (4,)), ("durable", (4,)), ("ack", (4,))],
        *[("apply", (5, 6)), ("write", (5, 6)), ("durable", (5, 6)), ("ack", (5, 6))],
    ]


async def test_when_a_dead_letter_cannot_be_written_the_worker_stops(log: Log) -> None:
    runtime = Runtime(log, failing=(4,), poison=4)
    seen = await run(runtime, [1, 2, 3, 4, 5, 6], until=lambda: ("returned", ()) in log)
    assert [type(error) for error in runtime.failures] == [ConnectionError]
    assert ("ack", (3,)) in seen
    assert ("ack", (4,)) not in seen and ("apply", (5, 6)) not in seen
