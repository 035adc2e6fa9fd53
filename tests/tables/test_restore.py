"""Bulk changelog restore against the real embedded broker."""

from __future__ import annotations

import os

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from faust.types import TP

from eventpatterns.broker import EmbeddedBroker, acreate_topics
from eventpatterns.sending import RecordBatches
from eventpatterns.tables.restore import read_changelog, release_free_memory

pytestmark = pytest.mark.integration


async def test_latest_values_and_tombstones_of_the_asked_partitions(
    broker: EmbeddedBroker, producer: AIOKafkaProducer
) -> None:
    topic = "restore-changelog"
    await acreate_topics(broker.bootstrap, {topic: 3})
    writes = RecordBatches()
    for round_ in range(3):  # three rounds of writes, in separate batches
        for user in range(300):
            writes.add(topic, b"u%d" % user, b"r%d" % round_, partition=user % 3)
        await writes.send(producer)
    for user in range(0, 300, 10):
        writes.add(topic, b"u%d" % user, None, partition=user % 3)
    for partition in range(3):
        writes.add_alone(topic, partition, b"\x00end", None)
    await writes.send(producer)

    data: dict[bytes, bytes] = {b"u1": b"stale", b"other": b"kept"}
    key_partition: dict[bytes, int] = {}
    last = await read_changelog(broker.bootstrap, [TP(topic, 1), TP(topic, 2)], data, key_partition)

    users = [u for u in range(300) if u % 3 != 0 and u % 10 != 0]
    assert data == {b"u%d" % u: b"r2" for u in users} | {b"other": b"kept"}
    assert key_partition == {b"u%d" % u: u % 3 for u in users}
    per_partition = 3 * 100 + 10 + 1  # three rounds, the tombstones, the marker
    assert last == {
        TopicPartition(topic, 1): per_partition - 1,
        TopicPartition(topic, 2): per_partition - 1,
    }


async def test_an_empty_partition_reads_nothing(broker: EmbeddedBroker) -> None:
    await acreate_topics(broker.bootstrap, {"restore-empty": 1})
    data: dict[bytes, bytes] = {}
    assert await read_changelog(broker.bootstrap, [TP("restore-empty", 0)], data, {}) == {}
    assert data == {}


async def test_reports_no_offset_beyond_the_end_offset_faust_will_see(
    broker: EmbeddedBroker, producer: AIOKafkaProducer
) -> None:
    """Faust refuses a persisted offset above the end offset it reads from the broker.

    Tansu reports the end of a partition as its last batch's base offset + 1, so a
    fetch may return records past it: they are applied, but not reported.
    """
    topic = "restore-one-batch"
    await acreate_topics(broker.bootstrap, {topic: 1})
    writes = RecordBatches()
    for user in range(50):
        writes.add(topic, b"u%d" % user, b"v", partition=0)
    await writes.send(producer)  # one batch, no marker after it
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()

    data: dict[bytes, bytes] = {}
    last = await read_changelog(broker.bootstrap, [TP(topic, 0)], data, {})

    assert last == {tp: min(49, end - 1)}
    assert len(data) == 50


def test_memory_freed_after_a_bulk_read_goes_back_to_the_system() -> None:
    process = psutil.Process()
    # Values as big as stored states, with small survivors between them, so that the
    # freed space is in the middle of the heap, where only a trim returns it.
    values = [os.urandom(600) for _ in range(100_000)]
    survivors = [os.urandom(600) for _ in range(100)]
    kept = [value for number, value in enumerate(values) if number % 1000 == 0]
    del values
    before = process.memory_info().rss

    assert release_free_memory()

    freed = before - process.memory_info().rss
    assert freed > 30 * 2**20, freed  # of ~60 MiB freed
    assert survivors and kept
