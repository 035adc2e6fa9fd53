"""RecordBatches against the real embedded broker: where records land, in what order."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from eventpatterns.broker import EmbeddedBroker, acreate_topics
from eventpatterns.processor import partition_for
from eventpatterns.sending import RecordBatches

pytestmark = pytest.mark.integration


async def read_partitions(
    broker: EmbeddedBroker, topic: str, partitions: int, count: int
) -> dict[int, list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        found: dict[int, list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]] = {}
        seen = 0
        while seen < count:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 20)
            for tp, records in batches.items():
                for record in records:
                    found.setdefault(tp.partition, []).append(
                        (record.key, record.value, list(record.headers))
                    )
                    seen += 1
        return found
    finally:
        await consumer.stop()


async def test_keyed_records_land_where_kafkas_default_partitioner_puts_them(
    broker: EmbeddedBroker, producer: AIOKafkaProducer
) -> None:
    await acreate_topics(broker.bootstrap, {"sending-keyed": 4})
    batches = RecordBatches()
    keys = [f"user-{n}".encode() for n in range(60)]
    for number, key in enumerate(keys):
        batches.add("sending-keyed", key, b"%d" % number, [("n", b"%d" % number)])
    assert len(batches) == 60

    written = await batches.send(producer)

    assert len(batches) == 0
    found = await read_partitions(broker, "sending-keyed", 4, 60)
    for partition, records in found.items():
        assert all(partition_for(key, 4) == partition for key, _, _ in records if key)
        numbers = [int(value or b"") for _, value, _ in records]
        assert numbers == sorted(numbers)  # the order they were added in
        assert [h for _, _, h in records] == [[("n", b"%d" % n)] for n in numbers]
        assert written[TopicPartition("sending-keyed", partition)] == len(records) - 1
        # one record batch each: the last starts at the first record
        assert batches.last_batch_starts[TopicPartition("sending-keyed", partition)] == 0


async def test_a_group_larger_than_a_batch_keeps_its_order(
    broker: EmbeddedBroker, producer: AIOKafkaProducer
) -> None:
    await acreate_topics(broker.bootstrap, {"sending-large": 2})
    batches = RecordBatches()
    for number in range(200):  # 200 KB: a dozen 16 KiB batches
        batches.add("sending-large", b"k", b"%04d" % number + b"x" * 1000, partition=1)

    written = await batches.send(producer)

    assert written == {TopicPartition("sending-large", 1): 199}
    # a 16 KiB batch holds 15 of these records: the last one starts near the end
    assert 199 - 15 < batches.last_batch_starts[TopicPartition("sending-large", 1)] <= 199
    found = await read_partitions(broker, "sending-large", 2, 200)
    assert [int((value or b"")[:4]) for _, value, _ in found[1]] == list(range(200))


async def test_a_record_added_alone_comes_last_and_ends_the_partition_for_tansu(
    broker: EmbeddedBroker, producer: AIOKafkaProducer
) -> None:
    """Tansu reports a partition's end as its last batch's base offset + 1."""
    await acreate_topics(broker.bootstrap, {"sending-alone": 2})
    batches = RecordBatches()
    batches.add_alone("sending-alone", 0, b"\x00marker", None)
    for number in range(30):
        batches.add("sending-alone", b"k%d" % number, b"v%d" % number, partition=0)

    written = await batches.send(producer)

    tp = TopicPartition("sending-alone", 0)
    assert written == {tp: 30}
    assert batches.last_batch_starts == {tp: 30}
    found = await read_partitions(broker, "sending-alone", 2, 31)
    assert found[0][-1] == (b"\x00marker", None, [])
    assert [value for _, value, _ in found[0][:-1]] == [b"v%d" % n for n in range(30)]
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        assert (await consumer.end_offsets([tp]))[tp] == 31
    finally:
        await consumer.stop()


async def test_nothing_added_sends_nothing(producer: AIOKafkaProducer) -> None:
    assert await RecordBatches().send(producer) == {}


def test_taking_all_of_other_batches_keeps_both_orders_and_empties_them() -> None:
    outputs, states = RecordBatches(), RecordBatches()
    outputs.add("offers", b"u1", b"o1")
    states.add("changelog", b"u1", b"s1", partition=0)
    states.add("changelog", b"u2", b"s2", partition=0)
    states.add_alone("changelog", 0, b"marker", None)
    outputs.take_all(states)
    assert [r.value for r in outputs.records[("changelog", 0)]] == [b"s1", b"s2"]
    assert [r.value for r in outputs.records[("offers", None)]] == [b"o1"]
    assert outputs.last[("changelog", 0)].key == b"marker"
    assert len(outputs) == 4 and len(states) == 0
