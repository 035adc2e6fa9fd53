"""The events agent's loop (agents/__init__.py): a batch is applied while the one before
is written; writes in order; a batch acknowledged only once its own writes are durable."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import faust
import pytest

import eventpatterns.agents as agents
from eventpatterns.agents import apply_batches, commit_then_acknowledge

from .test_batching import wait_until


class Runtime:
    """Stands in for `app.Runtime`: logs what the loop asks of it.

    The first batch's writes stay in flight until the second batch is applied, as
    a broker's round trip would while the core works: a loop that waited for the
    writes before applying the next batch would never finish them.
    """

    def __init__(self) -> None:
        self.log: list[tuple[str, tuple[int, ...]]] = []
        self.second_applied = asyncio.Event()
        self.fail_writes = False

    def process_batch(self, batch: list[Any]) -> tuple[int, ...]:
        values = tuple(event.value for event in batch)
        self.log.append(("apply", values))
        if len([entry for entry in self.log if entry[0] == "apply"]) == 2:
            self.second_applied.set()
        return values

    async def commit_batch(self, values: tuple[int, ...]) -> None:
        self.log.append(("write", values))
        if len([entry for entry in self.log if entry[0] == "write"]) == 1:
            await asyncio.wait_for(self.second_applied.wait(), timeout=5)
        if self.fail_writes:
            raise ConnectionError("broker gone")
        self.log.append(("durable", values))


@pytest.fixture
def acknowledged(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, ...]]]:
    log: list[tuple[str, tuple[int, ...]]] = []

    async def acknowledge(stream: Any, events: list[Any]) -> None:
        log.append(("ack", tuple(event.value for event in events)))

    monkeypatch.setattr(agents, "acknowledge", acknowledge)
    return log


def loop_agent(runtime: Runtime) -> Any:
    app = faust.App(
        "test-pipelining", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False
    )

    @app.agent()
    async def agent(stream: Any) -> None:
        await apply_batches(runtime, stream, max_events=2, within=3600)  # full batches only

    return agent


async def test_the_next_batch_is_applied_while_the_one_before_is_written(
    acknowledged: list[tuple[str, tuple[int, ...]]],
) -> None:
    runtime = Runtime()
    runtime.log = acknowledged  # one log for both, in the order things happened
    async with loop_agent(runtime).test_context() as agent:
        for value in (1, 2, 3, 4, 5, 6):
            await agent.put(value)
        await wait_until(lambda: ("ack", (5, 6)) in runtime.log)
    log = runtime.log
    batches = [(1, 2), (3, 4), (5, 6)]
    assert [values for step, values in log if step == "apply"] == batches
    assert [values for step, values in log if step == "write"] == batches
    assert log.index(("apply", (3, 4))) < log.index(("durable", (1, 2)))  # overlapped
    for earlier, later in itertools.pairwise(batches):
        # one batch written at a time, in order, each acknowledged once durable
        assert (
            log.index(("durable", earlier))
            < log.index(("ack", earlier))
            < log.index(("write", later))
        )
    assert log[-2:] == [("durable", (5, 6)), ("ack", (5, 6))]


async def test_a_batch_whose_writes_failed_is_not_acknowledged(
    acknowledged: list[tuple[str, tuple[int, ...]]],
) -> None:
    runtime = Runtime()
    runtime.second_applied.set()
    runtime.fail_writes = True
    with pytest.raises(ConnectionError):
        await commit_then_acknowledge(runtime, object(), [], (1, 2))  # type: ignore[arg-type]
    assert acknowledged == []
    assert runtime.log == [("write", (1, 2))]
