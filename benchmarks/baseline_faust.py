"""Baseline: a bare Faust agent that decodes each event and counts it per user in a table.

The ceiling of the framework for eventpatterns' workers: the same Faust app settings
(`eventpatterns.app.faust_app`), the same batching (`take_events`), the same table
writes (one per user per batch, to the user's partition, with a changelog) and the
same durability (the producer flushed before the batch's offsets are acknowledged),
and nothing else: no pattern, no state codec, no output records.

    BENCH_BROKER=kafka://127.0.0.1:9092 BENCH_TOPIC=enriched-click-data \\
    BENCH_PROGRESS=/tmp/progress.json python -m benchmarks.baseline_faust

Environment: BENCH_BROKER, BENCH_TOPIC, BENCH_PROGRESS (see benchmarks/progress.py),
BENCH_USER_FIELD (default userId), and the EVENTPATTERNS_* settings a worker reads
(APP_ID, WEB_PORT, DATA_DIR, BATCH_SIZE, BATCH_WAIT, PARTITIONS). BENCH_TABLE=0 counts in
a plain dict instead of the table: no changelog, what consuming alone costs.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import faust
import orjson

from eventpatterns.app import faust_app
from eventpatterns.settings import Settings
from eventpatterns.tables import writing_as
from eventpatterns.topics import raw_topic

from .progress import Progress, from_env


def build(
    settings: Settings,
    broker: str,
    topic: str,
    progress: Progress,
    field: str,
    use_table: bool = True,
) -> faust.App:
    app = faust_app(settings, broker)
    source = raw_topic(app, topic)
    counts = app.Table("counts", key_type=bytes, value_type=bytes, partitions=settings.partitions)
    batch_size = settings.batch_size
    local: dict[bytes, bytes] = {}

    @app.agent(source, name="baseline.count", concurrency=1)
    async def count(stream: Any) -> None:
        async for batch in stream.take_events(batch_size, within=settings.batch_wait):
            touched: dict[bytes, tuple[int, Any]] = {}
            for event in batch:
                record = orjson.loads(event.value)
                user = str(record[field]).encode()
                held = touched.get(user)
                if held is None:
                    stored = counts.get(user) if use_table else local.get(user)
                    held = (int(stored) if stored else 0, event)
                touched[user] = (held[0] + 1, event)
            if use_table:
                for user, (total, event) in touched.items():
                    with writing_as(event):
                        counts[user] = str(total).encode()
            else:
                local.update((user, str(total).encode()) for user, (total, _) in touched.items())
            progress.add(len(batch))
            producer = app.producer
            buffer = producer.buffer
            while buffer.size:
                await buffer.flush_atmost(buffer.size)
            await producer.flush()

    @app.task
    async def _raise_buffer() -> None:
        app.producer.buffer.max_messages = 10 * batch_size

    @app.timer(0.1)
    async def _report() -> None:
        progress.write()

    return app


def main() -> int:
    settings = Settings()
    progress = from_env()
    app = build(
        settings,
        os.environ["BENCH_BROKER"],
        os.environ.get("BENCH_TOPIC", "enriched-click-data"),
        progress,
        os.environ.get("BENCH_USER_FIELD", "userId"),
        use_table=os.environ.get("BENCH_TABLE", "1") != "0",
    )
    worker = faust.Worker(
        app, loglevel="warning", quiet=True, redirect_stdouts=False, override_logging=False
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
