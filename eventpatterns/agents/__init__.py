"""Faust agents of a worker.

`events`: the one agent that changes state. It reads the input topic, the
events topic and the timers topic (all keyed by user id and co-partitioned)
in batches (`batching.py`), and hands each batch to the runtime's processor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .batching import batches

if TYPE_CHECKING:
    from ..app import Runtime


def register(runtime: Runtime) -> None:
    settings = runtime.settings

    @runtime.app.agent(runtime.channel, name="eventpatterns.events", concurrency=1)
    async def events(stream: Any) -> None:
        async for batch in batches(stream, settings.batch_size, settings.batch_wait):
            result = runtime.process_batch(batch)
            await runtime.commit_batch(result)  # durable before the offsets are acknowledged

    from .definitions import register_definitions_follower

    register_definitions_follower(runtime)
