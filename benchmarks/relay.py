"""The floor of an offer's latency on a broker: a relay that forwards each fetch at once.

    BENCH_BROKER=127.0.0.1:9092 BENCH_TOPIC=in BENCH_OUTPUT=out BENCH_EVERY=100 \\
    BENCH_PROGRESS=/tmp/relay.json python -m benchmarks.relay

An offer makes two hops through the broker: its event to the worker, and the
offer to its reader. The relay makes the same two hops and does nothing between
them. It reads the source topic with the worker's client: aiokafka on uvloop,
with the worker's fetch wait (`EVENTPATTERNS_FETCH_WAIT_MS`) and its producer's
linger. It writes each fetch's records, unchanged, to the output topic, as whole
record batches (`eventpatterns.sending`, as the worker writes), one write at a
time. Paced at a latency run's rate, on the same broker and CPUs, its latency is
what any worker would pay there before it did any work (`run.py`,
`measure_relay`).

It forwards one record in `BENCH_EVERY` (by offset; 100 by default): the
ten-pattern worker writes ~0.012 offers per event of the latency records, which
its reader reads, and ~0.7 records it does not (states, audit records), so the
relay loads the broker and the reader less than the worker does on every count
but one: with no work between its fetches, it fetches more often. (It forwarded
one in four while the worker's reader read the audit trail too, ~0.25 records
per event.)

The progress file (`progress.py`) is written once the relay has its partitions
(count 0), and then as records are forwarded.
"""

from __future__ import annotations

import os
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from eventpatterns.sending import RecordBatches
from eventpatterns.settings import Settings

from .progress import Progress, from_env


async def relay(bootstrap: str, source: str, output: str, every: int, progress: Progress) -> None:
    settings = Settings()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_wait_ms,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await consumer.start()
    await producer.start()
    try:
        partitions = consumer.partitions_for_topic(source)
        if not partitions:  # the benchmark creates it first: say so, not relay nothing
            raise SystemExit(f"the relay found no partitions of {source!r}")
        consumer.assign([TopicPartition(source, partition) for partition in partitions])
        progress.write()
        while True:
            fetched = await consumer.getmany(timeout_ms=1000)
            outputs = RecordBatches()
            count = 0
            forwarded = 0
            for tp, records in fetched.items():
                for record in records:
                    if not record.offset % every:
                        outputs.add(output, record.key, record.value, partition=tp.partition)
                        forwarded += 1
                count += len(records)
            if forwarded:
                await outputs.send(producer)
            if count:
                progress.add(count, forwarded)
    finally:
        await producer.stop()
        await consumer.stop()


def main() -> int:
    import uvloop

    uvloop.run(
        relay(
            os.environ["BENCH_BROKER"],
            os.environ["BENCH_TOPIC"],
            os.environ["BENCH_OUTPUT"],
            int(os.environ.get("BENCH_EVERY", "100")),
            from_env(),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
