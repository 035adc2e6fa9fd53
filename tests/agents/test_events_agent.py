"""The events agent's loop (agents/__init__.py): batches applied and their outputs
written in order; their states held, encoded once `max_events` were applied and
written with the next write, or alone once the stream idles; records acknowledged
only once the write carrying their states is durable. When writes fail, the worker
stops and nothing later is applied; when the core fails, the states it may have
changed are made again, the batch is applied one event at a time and the failing
event becomes a dead letter."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest

import eventpatterns.agents as agents
from eventpatterns.agents import apply_batches

from .test_batching import wait_until

Log = list[tuple[str, tuple[int, ...]]]


class Runtime:
    """Stands in for `app.Runtime`: logs what the loop asks of it, and which states
    each write made durable (those encoded before it)."""

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
        """The outputs whose write fails (`()`: the write of the states alone)."""
        self.poison = poison
        """The event the core fails on."""
        self.failures: list[BaseException] = []
        self.held: list[int] = []
        """Events applied whose states are not encoded."""
        self.encoded: list[int] = []
        """Events whose states are encoded, to go with the next write."""

    def process_batch(self, batch: list[Any]) -> tuple[int, ...]:
        values = values_of(batch)
        if self.poison in values:
            self.log.append(("failed", values))
            self.held += [v for v in values if v != self.poison]  # changed half-way
            raise ValueError(f"the core failed on {self.poison}")
        self.log.append(("apply", values))
        self.held += values
        return values

    def reject(self, record: Any, error: BaseException) -> tuple[int, ...]:
        self.log.append(("dead letter", (int(record.value),)))
        assert str(self.poison) in str(error)
        return (int(record.value),)

    def reapply(self, records: list[Any]) -> None:
        self.log.append(("reapply", values_of(records)))
        self.held = list(values_of(records))

    def encode_held(self) -> None:
        self.encoded += self.held
        self.held = []

    async def commit_batch(self, values: tuple[int, ...]) -> None:
        await self._write(values)

    async def write_states(self) -> None:
        self.encode_held()
        await self._write(())

    async def _write(self, outputs: tuple[int, ...]) -> None:
        self.log.append(("write", outputs))
        await asyncio.sleep(0)  # the broker's round trip: other tasks run meanwhile
        if outputs == self.failing:
            raise ConnectionError("broker gone")
        if self.encoded:
            self.log.append(("states durable", tuple(self.encoded)))
            self.encoded = []

    def fail(self, error: BaseException) -> None:
        self.failures.append(error)


def values_of(records: list[Any]) -> tuple[int, ...]:
    return tuple(int(record.value) for record in records)


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    """What the runtime was asked and what the loop acknowledged, in order."""
    entries: Log = []

    def acknowledge(app: Any, records: list[Any]) -> None:
        if records:
            entries.append(("ack", values_of(records)))

    monkeypatch.setattr(agents, "acknowledge", acknowledge)
    return entries


def loop_agent(runtime: Runtime, within: float) -> Any:
    app = faust.App(
        "test-events-agent", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False
    )

    @app.agent()
    async def agent(stream: Any) -> None:
        await apply_batches(runtime, stream, max_events=2, within=within)
        runtime.log.append(("returned", ()))

    return agent


async def run(runtime: Runtime, values: list[int], until: Any, within: float = 3600) -> Log:
    """The log as it was when `until` held (stopping the agent makes it return).

    The default `within` makes full batches only, and no idle moment.
    """
    async with loop_agent(runtime, within).test_context() as agent:
        for value in values:
            await agent.put(str(value).encode())
        await wait_until(until)
        return list(runtime.log)


def durable_before_acknowledged(seen: Log) -> None:
    """Every acknowledged event's state, or its dead letter, was made durable before."""
    durable: set[int] = set()
    dead: set[int] = set()
    for step, values in seen:
        if step == "states durable":
            durable.update(values)
        elif step == "dead letter":
            dead.update(values)
        elif step == "write" and values and set(values) <= dead:
            durable.update(values)  # a dead letter changes no state
        elif step == "ack":
            assert set(values) <= durable, f"{values} acknowledged before its states"


async def test_states_go_with_the_next_write_and_records_are_acknowledged_after_it(
    log: Log,
) -> None:
    seen = await run(Runtime(log), [1, 2, 3, 4, 5, 6], until=lambda: ("ack", (3, 4)) in log)
    assert seen[:9] == [
        ("apply", (1, 2)),
        ("write", (1, 2)),
        ("apply", (3, 4)),
        ("write", (3, 4)),
        ("states durable", (1, 2)),
        ("ack", (1, 2)),
        ("apply", (5, 6)),
        ("write", (5, 6)),
        ("states durable", (3, 4)),
    ]
    durable_before_acknowledged(seen)


async def test_states_are_held_until_max_events_were_applied(log: Log) -> None:
    """Batches of one (each put once the one before is written, within the window):
    every other write carries states, those of the two events before it."""
    runtime = Runtime(log)
    async with loop_agent(runtime, within=0.05).test_context() as agent:
        for value in (1, 2, 3):
            await agent.put(str(value).encode())
            await wait_until(lambda value=value: ("write", (value,)) in log)
        await wait_until(lambda: ("ack", (3,)) in log)
    seen = list(log)
    writes = [values for step, values in seen if step in ("write", "states durable")]
    assert writes[:6] == [(1,), (2,), (3,), (1, 2), (), (3,)]  # (): idle, the states alone
    durable_before_acknowledged(seen)


async def test_when_the_stream_idles_every_state_is_written(log: Log) -> None:
    seen = await run(Runtime(log), [1], until=lambda: ("ack", (1,)) in log, within=0.01)
    assert seen == [
        ("apply", (1,)),
        ("write", (1,)),
        ("write", ()),  # nothing came for a window: the states held, alone
        ("states durable", (1,)),
        ("ack", (1,)),
    ]


async def test_stopping_writes_the_states_held(log: Log) -> None:
    await run(Runtime(log), [1, 2, 3, 4], until=lambda: ("write", (3, 4)) in log)
    assert log[-3:] == [("write", ()), ("states durable", (3, 4)), ("ack", (3, 4))]
    durable_before_acknowledged(log)


async def test_when_writes_fail_the_worker_stops_and_applies_nothing_more(log: Log) -> None:
    runtime = Runtime(log, failing=(3, 4))
    seen = await run(runtime, [1, 2, 3, 4, 5, 6, 7, 8], until=lambda: ("returned", ()) in log)
    assert [type(error) for error in runtime.failures] == [ConnectionError]
    assert seen == [
        ("apply", (1, 2)),
        ("write", (1, 2)),
        ("apply", (3, 4)),
        ("write", (3, 4)),  # with the states of (1, 2): not acknowledged
        ("returned", ()),
    ]


async def test_an_event_the_core_fails_on_becomes_a_dead_letter_and_the_rest_go_on(
    log: Log,
) -> None:
    runtime = Runtime(log, poison=4)
    seen = await run(runtime, [1, 2, 3, 4, 5, 6], until=lambda: ("apply", (5, 6)) in log)
    assert runtime.failures == []
    assert seen[:15] == [
        *[("apply", (1, 2)), ("write", (1, 2))],
        ("failed", (3, 4)),
        ("reapply", ()),  # what (3, 4) changed goes; nothing else was held
        *[("apply", (3,)), ("write", (3,)), ("states durable", (1, 2))],
        ("failed", (4,)),
        ("reapply", ()),
        *[("dead letter", (4,)), ("write", (4,)), ("states durable", (3,))],
        ("write", ()),  # every state written before the rest goes on
        ("ack", (1, 2, 3, 4)),
        ("apply", (5, 6)),
    ]
    durable_before_acknowledged(seen)


async def test_the_core_failing_makes_again_the_states_held_since_they_were_encoded(
    log: Log,
) -> None:
    runtime = Runtime(log, poison=4)
    async with loop_agent(runtime, within=0.05).test_context() as agent:
        await agent.put(b"1")
        await wait_until(lambda: ("write", (1,)) in log)
        for value in (b"3", b"4"):
            await agent.put(value)
        await wait_until(lambda: ("ack", (1, 3, 4)) in log)
    assert log[:9] == [
        ("apply", (1,)),
        ("write", (1,)),
        ("failed", (3, 4)),
        ("reapply", (1,)),  # held, not encoded: made again from the stored states
        ("apply", (3,)),
        ("write", (3,)),
        ("states durable", (1,)),
        ("failed", (4,)),
        ("reapply", ()),
    ]
    durable_before_acknowledged(log)


async def test_when_a_dead_letter_cannot_be_written_the_worker_stops(log: Log) -> None:
    runtime = Runtime(log, failing=(4,), poison=4)
    seen = await run(runtime, [1, 2, 3, 4, 5, 6], until=lambda: ("returned", ()) in log)
    assert [type(error) for error in runtime.failures] == [ConnectionError]
    assert ("write", (4,)) in seen
    assert not any(step == "ack" for step, _ in seen) and ("apply", (5, 6)) not in seen
