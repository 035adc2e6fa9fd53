"""Faust agents of a worker.

`events`: the one agent that changes state. It reads the input topic, the
events topic and the timers topic (all keyed by user id and co-partitioned)
in batches (`batching.py`), and hands each batch to the runtime's processor.
A batch is applied while the one before is being written (its outputs, then
its states): the writes wait for the broker, the core for the CPU. The writes
go in the order of the batches, and a batch's events are acknowledged once its
own writes are durable.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .batching import acknowledge, batches

if TYPE_CHECKING:
    from ..app import AppliedBatch, Runtime


def register(runtime: Runtime) -> None:
    settings = runtime.settings

    @runtime.app.agent(runtime.channel, name="eventpatterns.events", concurrency=1)
    async def events(stream: Any) -> None:
        await apply_batches(runtime, stream, settings.batch_size, settings.batch_wait)

    from .definitions import register_definitions_follower

    register_definitions_follower(runtime)


async def apply_batches(runtime: Runtime, stream: Any, max_events: int, within: float) -> None:
    """Apply each batch, then write it while the next is applied; acknowledge in order."""
    writing: asyncio.Future[None] | None = None
    try:
        async for batch in batches(stream, max_events, within):
            applied = runtime.process_batch(batch)
            if writing is not None:
                await asyncio.shield(writing)  # the batch before: durable, acknowledged
            writing = asyncio.ensure_future(
                commit_then_acknowledge(runtime, stream, batch, applied)
            )
        if writing is not None:
            await asyncio.shield(writing)
    finally:
        if writing is not None and not writing.done():
            await asyncio.wait([writing])  # stopping: the batch in flight still completes


async def commit_then_acknowledge(
    runtime: Runtime, stream: Any, batch: list[Any], applied: AppliedBatch
) -> None:
    await runtime.commit_batch(applied)  # durable before the offsets are acknowledged
    await acknowledge(stream, batch)
