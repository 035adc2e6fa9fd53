"""Faust agents of a worker.

`events`: the one agent that changes state. It reads the input topic, the
events topic and the timers topic (all keyed by user id and co-partitioned)
in batches (`batching.py`), and hands each batch to the runtime's processor.
A batch's outputs are written at once, its states with a later write
(`apply_batches`), and its events acknowledged once both are durable. When
the writes fail, the worker stops (`Runtime.fail`) and applies what was not
durable again once restarted; when the core fails on a batch, its events are
applied one at a time and the one it fails on goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .batching import acknowledge, batches

if TYPE_CHECKING:
    from ..app import AppliedBatch, Runtime

log = logging.getLogger(__name__)


def register(runtime: Runtime) -> None:
    settings = runtime.settings

    @runtime.app.agent(runtime.channel, name="eventpatterns.events", concurrency=1)
    async def events(stream: Any) -> None:
        await apply_batches(
            runtime, stream, settings.batch_size, settings.batch_wait, settings.state_write_idle
        )

    from .definitions import register_definitions_follower

    register_definitions_follower(runtime)


async def apply_batches(
    runtime: Runtime,
    stream: Any,
    max_events: int,
    within: float,
    idle_after: float | None = None,
) -> None:
    """Apply each batch and write it, one after the other, until a write fails.

    A batch's outputs are written at once; the states of its users stay
    decoded in the runtime (`Runtime.held`) until `max_events` events were
    applied since they were last encoded, or no event came for `idle_after`
    seconds (`take_batches` says so, also while a rebalance holds the flow).
    That wait is longer than a batch's window (`within`): under a paced load
    the stream pauses between fetches, and writing every state held at each
    pause cost a worker ~17 % more CPU per event at 70 % of its capacity
    (benchmarks/README.md, "Changes made (2026-12-06, an eighth session)").
    Encoded, they go with the next batch's outputs in one produce request
    (`Runtime.commit_batch`) or, when none waits, alone
    (`Runtime.write_states`), and the records they account for are
    acknowledged after that. So one round trip to the broker per batch, not
    two, and a user's events in several small batches cost one state decode
    and encode, as in one large batch: under load a record waits for the
    batch in progress and then its own, so a batch's time is most of the
    latency (benchmarks/README.md).

    Applying a batch while the one before was written was measured (commit
    c786a92, benchmarks/README.md): no gain on two vCPUs, where the broker takes
    the other one.
    """
    applied: list[Any] = []
    """Records applied whose states are held decoded."""
    encoded: list[Any] = []
    """Records whose states are encoded, to be made durable by the next write."""
    async for batch in batches(stream, max_events, within, True, idle_after):
        if not batch:  # nothing more waiting: every state written now
            if not await write_states(runtime):
                return
            acknowledge(runtime.app, encoded + applied)
            encoded, applied = [], []
            continue
        try:
            result = runtime.process_batch(batch)
        except Exception:
            log.exception("applying a batch of %d events failed: one at a time now", len(batch))
            if not await apply_one_at_a_time(runtime, applied, batch):
                return
            acknowledge(runtime.app, encoded + applied + batch)
            encoded, applied = [], []
            continue
        if not await write(runtime, result):
            return
        acknowledge(runtime.app, encoded)
        applied.extend(batch)
        if len(applied) >= max_events:
            runtime.encode_held()
            encoded, applied = applied, []
        else:
            encoded = []
    if (encoded or applied) and await write_states(runtime):
        acknowledge(runtime.app, encoded + applied)


async def apply_one_at_a_time(runtime: Runtime, applied: list[Any], batch: list[Any]) -> bool:
    """After the core failed on `batch`: each of its records as a batch of its own.

    The held states it may have changed half-way are made again from the
    records `applied` since they were encoded (`Runtime.reapply`); the records
    the core fails on go to the dead-letter topic. Every state is written at
    the end. False once a write failed (the worker is stopping).
    """
    try:
        runtime.reapply(applied)
    except Exception as error:  # it applied them before: the worker is not sound
        runtime.fail(error)
        return False
    runtime.encode_held()  # their outputs are durable
    for record in batch:
        try:
            result = runtime.process_batch([record])
        except Exception as error:
            log.exception("applying the record at offset %s failed", record.offset)
            runtime.reapply([])  # what it changed of its user's state goes
            result = runtime.reject(record, error)
        if not await write(runtime, result):
            return False
        runtime.encode_held()
    return await write_states(runtime)


async def write(runtime: Runtime, applied: AppliedBatch) -> bool:
    """Make a batch's outputs durable, with the states encoded before (`commit_batch`).

    On failure stop the worker, and say so.
    """
    try:
        await runtime.commit_batch(applied)  # durable before the offsets are acknowledged
    except Exception as error:
        runtime.fail(error)
        return False
    return True


async def write_states(runtime: Runtime) -> bool:
    """Make every state applied durable; on failure stop the worker, and say so."""
    try:
        await runtime.write_states()
    except Exception as error:
        runtime.fail(error)
        return False
    return True
