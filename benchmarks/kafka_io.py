"""Fast producing and reading for the benchmarks, with librdkafka (confluent-kafka).

The benchmark's own clients must not be the bottleneck: librdkafka produces a few
hundred thousand records a second from one Python thread, and a reader assigned to
partitions (no consumer group, so no join to wait for) with a short fetch wait sees
a record a few milliseconds after it is written. Tansu does not answer a fetch
early when data arrives during its wait, so the wait bounds the reader's latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, KafkaError, Producer, TopicPartition

PRODUCER_CONFIG = {
    # Kafka's (and aiokafka's) partitioner for keyed records: librdkafka's own default
    # (CRC32) puts most users' records on another partition than the worker keeps
    # their state in, and the worker re-keys those through its events topic, a second
    # hop (docs/operations.md).
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "log_level": 3,
}


def producer(bootstrap: str, **config: object) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG, **config})


def produce_all(
    bootstrap: str,
    topic: str,
    values: Sequence[bytes],
    keys: Sequence[bytes | None] | None = None,
    partitions: Sequence[int] | None = None,
) -> float:
    """Produce every value (keyed; in the given partitions when told) and wait for all acks.

    Returns the seconds it took. Without `partitions`, keyed records go where Kafka's
    partitioner puts them (`PRODUCER_CONFIG`).
    """
    client = producer(bootstrap)
    started = time.perf_counter()
    produce = client.produce
    for index, value in enumerate(values):
        key = keys[index] if keys is not None else None
        while True:
            try:
                if partitions is not None:
                    produce(topic, value, key, partitions[index])
                else:
                    produce(topic, value, key)
                break
            except BufferError:
                client.poll(0.005)
        if not index % 20_000:
            client.poll(0)
    remaining = client.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} records to {topic} were not acknowledged")
    return time.perf_counter() - started


def consumer(bootstrap: str, **config: object) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "benchmarks-reader",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 2,
            "fetch.min.bytes": 1,
            "log_level": 3,
            **config,
        }
    )


def partitions_of(bootstrap: str, topic: str) -> list[int]:
    client = consumer(bootstrap)
    try:
        metadata = client.list_topics(topic, timeout=10)
        return sorted(metadata.topics[topic].partitions)
    finally:
        client.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """High watermarks. On Tansu they undercount batched writes (see read_all)."""
    client = consumer(bootstrap)
    try:
        out = {}
        for partition in partitions_of(bootstrap, topic):
            _, high = client.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            out[partition] = high
        return out
    finally:
        client.close()


def read_all(bootstrap: str, topic: str, quiet: float = 1.0, timeout: float = 60) -> list[bytes]:
    """Every value on the topic, read from the start until nothing came for `quiet` seconds.

    Tansu's high watermark is the base offset of a partition's last record batch plus
    one, not the offset after its last record, so counting by watermarks undercounts
    whatever a client wrote in batches: this reads instead. A non-zero watermark still
    tells that there is something to read, so the quiet time only starts once the
    first record came.
    """
    something = any(end_offsets(bootstrap, topic).values())
    client = consumer(bootstrap)
    try:
        client.assign(
            [TopicPartition(topic, partition, 0) for partition in partitions_of(bootstrap, topic)]
        )
        values: list[bytes] = []
        started = time.monotonic()
        deadline = started + timeout
        last: float | None = None
        while time.monotonic() < deadline:
            for message in client.consume(10_000, 0.1):
                if message.error() is None:
                    values.append(message.value())
                    last = time.monotonic()
            waited_from = last if last is not None else (None if something else started)
            if waited_from is not None and time.monotonic() - waited_from >= quiet:
                break
        return values
    finally:
        client.close()


@dataclass
class Arrival:
    at: float
    """time.time() when the reader got the record."""
    key: bytes | None
    value: bytes
    written: float | None = None
    """The record's CreateTime in seconds: when its producer appended it to a batch."""
    topic: str = ""


@dataclass
class TopicTail:
    """Reads what is written to some topics, in a thread, noting arrival times.

    It reads each topic from its start and `start()` returns once it has caught up
    (nothing new for `settle` seconds): on Tansu a reader cannot start "at the end",
    since the end offset it reports is that of the last record batch's first record.
    Callers tell old records from new ones by their content.
    """

    bootstrap: str
    topics: Iterable[str]
    settle: float = 0.5
    arrivals: list[Arrival] = field(default_factory=list)
    error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, timeout: float = 120) -> TopicTail:
        self._thread = threading.Thread(target=self._run, daemon=True, name="topic-tail")
        self._thread.start()
        if not self.wait_quiet(self.settle, timeout):
            raise RuntimeError("the topic reader did not catch up")
        return self

    def wait_quiet(self, quiet: float, timeout: float) -> bool:
        """Until nothing new arrived for `quiet` seconds; False if it was still arriving."""
        deadline = time.monotonic() + timeout
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError(f"the topic reader failed: {self.error}")
            if len(self.arrivals) != seen:
                seen, quiet_since = len(self.arrivals), time.monotonic()
            elif self._ready.is_set() and time.monotonic() - quiet_since >= quiet:
                return True
            time.sleep(0.05)
        return False

    def wait_for(self, count: int, timeout: float) -> bool:
        """Until `count` records arrived; False if they did not in time."""
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count and time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError(f"the topic reader failed: {self.error}")
            time.sleep(0.01)
        return len(self.arrivals) >= count

    def _run(self) -> None:
        client = consumer(self.bootstrap)
        try:
            client.assign(
                [
                    TopicPartition(topic, partition, 0)
                    for topic in self.topics
                    for partition in partitions_of(self.bootstrap, topic)
                ]
            )
            self._ready.set()
            while not self._stop.is_set():
                # poll(), not consume(n, timeout): consume waits out its whole timeout
                # unless n records arrive, which would stamp arrivals up to that late.
                message = client.poll(0.05)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        self.error = str(error)
                    continue
                kind, stamp = message.timestamp()
                written = stamp / 1000 if kind == TIMESTAMP_CREATE_TIME else None
                self.arrivals.append(
                    Arrival(time.time(), message.key(), message.value(), written, message.topic())
                )
        except Exception as error:  # reported to the caller by start() or stop()
            self.error = repr(error)
        finally:
            client.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.error is not None:
            raise RuntimeError(f"the topic reader failed: {self.error}")


def hop_latency(bootstrap: str, topic: str, count: int = 200, rate: float = 100.0) -> list[float]:
    """Milliseconds from produce to a reader's receipt, one record at a time, on `topic`."""
    from eventpatterns.broker import create_topics

    create_topics(bootstrap, {topic: 1})
    tail = TopicTail(bootstrap, [topic]).start()
    started = time.time()
    try:
        send_hop_probes(bootstrap, topic, count, rate)
        tail.wait_for(count, timeout=10)
    finally:
        tail.stop()
    return hop_times(tail.arrivals, topic, started)


def send_hop_probes(bootstrap: str, topic: str, count: int, rate: float) -> None:
    """`count` records on `topic`, `rate` a second, each holding its produce time."""
    client = producer(bootstrap, **{"linger.ms": 1})
    for number in range(count):
        client.produce(topic, str(time.time()).encode(), str(number).encode())
        client.poll(0)
        time.sleep(1 / rate)
    client.flush(30)


def hop_times(arrivals: Iterable[Arrival], topic: str, since: float) -> list[float]:
    """Milliseconds from produce to arrival of the probes of `topic` sent since `since`."""
    out = []
    for arrival in arrivals:
        if arrival.topic == topic:
            sent = float(arrival.value)
            if sent >= since:
                out.append(1000 * (arrival.at - sent))
    return out
