"""One hop through the embedded broker, second by second, with no worker at all.

    python -m benchmarks.broker_growth [--rate 16000] [--seconds 15] [--linger 5]

Records paced at `--rate` by the benchmark's producer (librdkafka, lingering
`--linger` ms) to a topic of the latency runs' partitions, and read by the
benchmark's reader (librdkafka, 2 ms fetch wait) in a process of its own: the
p50 and p99 of produce -> reader for each second of the run, and the broker's
share of a CPU. Tansu's memory store spends more per fetch the more record
batches a partition holds, so at a latency run's rates a hop slows down as the
run goes on, and the more so the shorter the linger (more, smaller batches):
benchmarks/README.md, "Findings about the environment".
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from typing import Any

import psutil
from confluent_kafka import TopicPartition

from eventpatterns.broker import EmbeddedBroker, create_topics

from . import kafka_io
from .run import PARTITIONS

TOPIC = "broker-growth"
PADDING = b"x" * 180
"""A latency record's size, about."""


def read(bootstrap: str, until: float, results: Any) -> None:
    reader = kafka_io.consumer(bootstrap)
    reader.assign([TopicPartition(TOPIC, partition, 0) for partition in range(PARTITIONS)])
    by_second: dict[int, list[float]] = {}
    first: float | None = None
    while time.time() < until:
        for message in reader.consume(10_000, 0.01):
            if message.error():
                continue
            now = time.time()
            sent = int(message.value()[:20]) / 1e9
            first = sent if first is None else first
            by_second.setdefault(int(sent - first), []).append(1000 * (now - sent))
    reader.close()
    results.put(by_second)


def produce(bootstrap: str, rate: float, seconds: float, linger: int) -> None:
    client = kafka_io.producer(bootstrap, **{"linger.ms": linger})
    total = int(rate * seconds)
    sent = 0
    started = time.monotonic()
    while sent < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        while sent < due:
            key = b"user-%d" % (sent % 5_000)
            client.produce(TOPIC, b"%020d" % time.time_ns() + PADDING, key)
            sent += 1
        client.poll(0)
        time.sleep(0.002)
    client.flush(30)


def percentile(ordered: list[float], fraction: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=16_000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--linger", type=int, default=5, help="the producer's, ms")
    args = parser.parse_args(argv)
    with EmbeddedBroker(log_path="/dev/null") as broker:
        create_topics(broker.bootstrap, {TOPIC: PARTITIONS})
        results: Any = multiprocessing.Queue()
        reader = multiprocessing.Process(
            target=read, args=(broker.bootstrap, time.time() + args.seconds + 6, results)
        )
        reader.start()
        time.sleep(1)  # assigned, and fetching
        tansu = psutil.Process(broker.pid)
        before = tansu.cpu_times()
        started = time.monotonic()
        producer = multiprocessing.Process(
            target=produce, args=(broker.bootstrap, args.rate, args.seconds, args.linger)
        )
        producer.start()
        producer.join()
        after = tansu.cpu_times()
        busy = after.user + after.system - before.user - before.system
        by_second = results.get()
        reader.join()
    print(
        f"{args.rate:,.0f} records/s for {args.seconds:g} s, linger {args.linger} ms: "
        f"the broker at {100 * busy / (time.monotonic() - started):.0f} % of a CPU"
    )
    for second in sorted(by_second):
        ordered = sorted(by_second[second])
        print(
            f"  second {second:>3}: {len(ordered):>6} records, p50 "
            f"{percentile(ordered, 0.5):>7} ms, p99 {percentile(ordered, 0.99):>7} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
