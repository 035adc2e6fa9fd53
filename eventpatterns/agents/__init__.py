"""Faust agents of a worker.

`events`: the one agent that changes state. It reads the input topic, the
events topic and the timers topic (all keyed by user id and co-partitioned)
in batches (`batching.py`), and hands each batch to the runtime's processor.
A batch's events are acknowledged once its writes (its outputs, then its
states) are durable. When the writes fail, the worker stops (`Runtime.fail`)
and applies the batch again once restarted; when the core fails on a batch,
its events are applied one at a time and the one it fails on goes to the
dead-letter topic.
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
        await apply_batches(runtime, stream, settings.batch_size, settings.batch_wait)

    from .definitions import register_definitions_follower

    register_definitions_follower(runtime)


async def apply_batches(runtime: Runtime, stream: Any, max_events: int, within: float) -> None:
    """Apply each batch and write it, one after the other, until a write fails.

    Applying a batch while the one before was written was measured (commit
    c786a92, benchmarks/README.md): no gain on two vCPUs, where the broker takes
    the other one.
    """
    async for batch in batches(stream, max_events, within):
        try:
            applied = runtime.process_batch(batch)
        except Exception:
            log.exception("applying a batch of %d events failed: one at a time now", len(batch))
            if not await apply_one_at_a_time(runtime, batch):
                return
            continue
        if not await write(runtime, applied):
            return
        acknowledge(runtime.app, batch)


async def apply_one_at_a_time(runtime: Runtime, batch: list[Any]) -> bool:
    """Each record as a batch of its own; the ones the core fails on, dead letters.

    False once a write failed (the worker is stopping).
    """
    for record in batch:
        try:
            applied = runtime.process_batch([record])
        except Exception as error:
            log.exception("applying the record at offset %s failed", record.offset)
            applied = runtime.reject(record, error)
        if not await write(runtime, applied):
            return False
        acknowledge(runtime.app, [record])
    return True


async def write(runtime: Runtime, applied: AppliedBatch) -> bool:
    """Make a batch durable (`commit_batch`); on failure stop the worker, and say so."""
    try:
        await runtime.commit_batch(applied)  # durable before the offsets are acknowledged
    except Exception as error:
        runtime.fail(error)
        return False
    return True
