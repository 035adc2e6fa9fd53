"""`eventpatterns.worker` with benchmark-only changes, to measure proposals before making them.

    BENCH_FETCH_MAX_WAIT_MS=10 BENCH_UVLOOP=1 python -m benchmarks.tuned_worker

Each variable turns on one change; none edits the project:

BENCH_FETCH_MAX_WAIT_MS  the worker consumer's fetch wait (Faust hard-codes 1500 ms,
                         and Tansu holds an empty fetch that long);
BENCH_UVLOOP=1           run the event loop on uvloop;
BENCH_GC_FREEZE=1        `gc.freeze()` once the tables are recovered, and the young
                         generation's threshold raised to 50,000 allocations;
BENCH_LINGER_MS          the producer's linger (the app sets 1 ms);
BENCH_BATCH_SEND=1       records the worker writes (outputs, audit trail, table
                         changelogs) skip Faust's per-record send path: they are
                         grouped per topic partition and handed to aiokafka as whole
                         record batches (`create_batch`/`send_batch`) when the agent
                         flushes. A prototype to size the gain: a timer tick sent
                         between two batches waits for the next flush.

`python -m benchmarks.run --experiment NAME` runs its workers through this module.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

EXPERIMENTS: dict[str, dict[str, str]] = {
    "fetch10": {"BENCH_FETCH_MAX_WAIT_MS": "10"},
    "uvloop": {"BENCH_UVLOOP": "1"},
    "gcfreeze": {"BENCH_GC_FREEZE": "1"},
    "linger5": {"BENCH_LINGER_MS": "5"},
    "batchsend": {"BENCH_BATCH_SEND": "1"},
}


def _patch_fetch_wait(milliseconds: int) -> None:
    import aiokafka

    original = aiokafka.AIOKafkaConsumer.__init__

    def init(self: Any, *topics: Any, **options: Any) -> None:
        if options.get("fetch_max_wait_ms") == 1500:  # Faust's worker consumer
            options["fetch_max_wait_ms"] = milliseconds
        original(self, *topics, **options)

    aiokafka.AIOKafkaConsumer.__init__ = init  # type: ignore[method-assign]


def _patch_gc_freeze() -> None:
    from eventpatterns.app import Runtime

    original = Runtime._register_timers

    async def register_timers(self: Runtime) -> None:
        await original(self)
        gc.collect()
        gc.freeze()

    Runtime._register_timers = register_timers  # type: ignore[method-assign]
    gc.set_threshold(50_000, 20, 100)


def _patch_linger(milliseconds: int) -> None:
    import eventpatterns.app as app_module

    original = app_module.faust.App

    def make_app(*args: Any, **options: Any) -> Any:
        options["producer_linger_ms"] = milliseconds
        return original(*args, **options)

    app_module.faust.App = make_app  # type: ignore[misc]


Pending = dict[tuple[str, int | None], list[tuple[bytes | None, bytes | None, list[Any]]]]


def _patch_batch_send() -> None:
    import asyncio
    import random
    from types import SimpleNamespace

    import faust.topics
    from aiokafka.partitioner import murmur2

    from eventpatterns.app import Runtime

    pending: Pending = {}
    original_send_soon = faust.topics.Topic.send_soon

    def send_soon(self: Any, **options: Any) -> Any:
        key, value = options.get("key"), options.get("value")
        plain = (
            (key is None or isinstance(key, bytes))
            and (value is None or isinstance(value, bytes))
            and options.get("schema") is None
            and options.get("key_serializer") in (None, "raw")
            and options.get("value_serializer") in (None, "raw")
            and len(self.topics) == 1
        )
        if not plain:
            return original_send_soon(self, **options)
        headers = list(options.get("headers") or [])
        where = (self.get_topic_name(), options.get("partition"))
        pending.setdefault(where, []).append((key, value, headers))
        # Tables read the partition back from what send_soon returns.
        return SimpleNamespace(message=SimpleNamespace(partition=where[1]))

    faust.topics.Topic.send_soon = send_soon  # type: ignore[method-assign]
    original_flush = Runtime.flush

    async def flush(self: Runtime) -> None:
        producer = self.app.producer._ensure_producer()
        futures = []
        batches = list(pending.items())
        pending.clear()
        for (topic, partition), messages in batches:
            groups: dict[int, list[tuple[bytes | None, bytes | None, list[Any]]]] = {}
            if partition is None:
                count = len(await producer.partitions_for(topic))
                for message in messages:
                    key = message[0]
                    chosen = (
                        (murmur2(key) & 0x7FFFFFFF) % count
                        if key is not None
                        else random.randrange(count)
                    )
                    groups.setdefault(chosen, []).append(message)
            else:
                groups[partition] = messages
            for chosen, group in groups.items():
                batch = producer.create_batch()
                for key, value, headers in group:
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        futures.append(await producer.send_batch(batch, topic, partition=chosen))
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None, headers=headers)
                futures.append(await producer.send_batch(batch, topic, partition=chosen))
        if futures:
            await asyncio.gather(*futures)
        await original_flush(self)

    Runtime.flush = flush  # type: ignore[method-assign]


def main() -> int:
    if os.environ.get("BENCH_FETCH_MAX_WAIT_MS"):
        _patch_fetch_wait(int(os.environ["BENCH_FETCH_MAX_WAIT_MS"]))
    if os.environ.get("BENCH_UVLOOP") == "1":
        import uvloop

        uvloop.install()
    if os.environ.get("BENCH_GC_FREEZE") == "1":
        _patch_gc_freeze()
    if os.environ.get("BENCH_LINGER_MS"):
        _patch_linger(int(os.environ["BENCH_LINGER_MS"]))
    if os.environ.get("BENCH_BATCH_SEND") == "1":
        _patch_batch_send()
    from eventpatterns.worker import main as worker_main

    return worker_main()


if __name__ == "__main__":
    sys.exit(main())
