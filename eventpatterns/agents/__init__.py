"""Faust agents of a worker.

`events`: the one agent that changes state. It reads the input topic, the
events topic and the timers topic (all keyed by user id and co-partitioned)
in batches (`batching.py`), and hands each batch to the runtime's processor.
A batch's events are acknowledged once its writes (its outputs, then its
states) are durable, and never when they failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .batching import acknowledge, batches

if TYPE_CHECKING:
    from ..app import Runtime


def register(runtime: Runtime) -> None:
    settings = runtime.settings

    @runtime.app.agent(runtime.channel, name="eventpatterns.events", concurrency=1)
    async def events(stream: Any) -> None:
        await apply_batches(runtime, stream, settings.batch_size, settings.batch_wait)

    from .definitions import register_definitions_follower

    register_definitions_follower(runtime)


async def apply_batches(runtime: Runtime, stream: Any, max_events: int, within: float) -> None:
    """Apply each batch and write it, one after the other.

    Applying a batch while the one before was written was measured (commit
    c786a92, benchmarks/README.md): no gain on two vCPUs, where the broker takes
    the other one.
    """
    async for batch in batches(stream, max_events, within):
        applied = runtime.process_batch(batch)
        await runtime.commit_batch(applied)  # durable before the offsets are acknowledged
        await acknowledge(stream, batch)
