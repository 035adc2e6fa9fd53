"""Bulk changelog restore against the real embedded broker."""

from __future__ import annotations

import os
import tracemalloc

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from eventpatterns.broker import EmbeddedBroker, acreate_topics
from eventpatterns.processor import pack_stored
from eventpatterns.sending import RecordBatches
from eventpatterns.tables.restore import KeyPartitions, read_changelog, release_free_memory


@pytest.mark.integration
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
    key_partition = KeyPartitions(data)
    last = await read_changelog(broker.bootstrap, [TP(topic, 1), TP(topic, 2)], data, key_partition)

    users = [u for u in range(300) if u % 3 != 0 and u % 10 != 0]
    assert data == {b"u%d" % u: b"r2" for u in users} | {b"other": b"kept"}
    assert dict(key_partition.items()) == {b"u%d" % u: u % 3 for u in users}
    per_partition = 3 * 100 + 10 + 1  # three rounds, the tombstones, the marker
    assert last == {
        TopicPartition(topic, 1): per_partition - 1,
        TopicPartition(topic, 2): per_partition - 1,
    }


@pytest.mark.integration
async def test_an_empty_partition_reads_nothing(broker: EmbeddedBroker) -> None:
    await acreate_topics(broker.bootstrap, {"restore-empty": 1})
    data: dict[bytes, bytes] = {}
    partitions = KeyPartitions(data)
    assert await read_changelog(broker.bootstrap, [TP("restore-empty", 0)], data, partitions) == {}
    assert data == {}


@pytest.mark.integration
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
    last = await read_changelog(broker.bootstrap, [TP(topic, 0)], data, KeyPartitions(data))

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


def stored(partition: int | None) -> bytes:
    return pack_stored(b'{"offsets":{}}\x00[]', None, partition)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"a", b"b", b"c", b"d"]),
            st.one_of(st.none(), st.integers(0, 3)),  # None: a tombstone
            st.booleans(),  # whether the value carries its partition
        )
    )
)
def test_key_partitions_agree_with_a_plain_dict(
    writes: list[tuple[bytes, int | None, bool]],
) -> None:
    data: dict[bytes, bytes] = {}
    partitions = KeyPartitions(data)
    model: dict[bytes, int] = {}
    for key, partition, carried in writes:
        if partition is None:
            data.pop(key, None)
            partitions.note(key, None, 0)
            model.pop(key, None)
        else:
            value = stored(partition if carried else None)
            data[key] = value
            partitions.note(key, value, partition)
            model[key] = partition
    assert dict(partitions.items()) == model
    assert {key: partitions.get(key) for key in data} == model
    assert set(partitions) == set(model) and len(partitions) == len(model)
    for key in list(model):
        assert partitions.pop(key, None) == model[key]


def test_faust_notes_a_partition_before_the_value_arrives() -> None:
    """Faust's own recovery sets `_key_partition[key]` first; that entry is kept."""
    data: dict[bytes, bytes] = {}
    partitions = KeyPartitions(data)
    partitions[b"k"] = 2
    data[b"k"] = b"legacy value"
    assert partitions[b"k"] == 2
    assert partitions.pop(b"k", None) == 2 and partitions.get(b"k") is None


def test_values_that_carry_their_partition_take_no_room_beside_them() -> None:
    home = {b"user-%07d" % n: n % 4 for n in range(20_000)}
    data = {key: stored(partition) for key, partition in home.items()}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        partitions = KeyPartitions(data)
        for key, value in data.items():
            partitions.note(key, value, home[key])
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert dict(partitions.items()) == home
    assert grown < 2_000, grown  # a dict of 20,000 entries would take ~1 MB


async def test_faust_drops_the_keys_of_partitions_no_longer_held_by_their_values() -> None:
    """Faust's memory store forgets revoked partitions' keys through `_key_partition`."""
    from types import SimpleNamespace

    from faust.stores import memory

    data = {b"kept": stored(0), b"revoked": stored(1), b"legacy": b"{}"}
    store = SimpleNamespace(data=data, _key_partition=KeyPartitions(data))
    store._key_partition.note(b"legacy", b"{}", 1)  # a value that does not say

    await memory.Store.on_recovery_completed(store, {TP("state-changelog", 0)}, set())

    assert set(data) == {b"kept"}
    assert dict(store._key_partition.items()) == {b"kept": 0}


async def test_partitions_kept_across_a_rebalance_are_not_read_again() -> None:
    """The store reports where the worker's own writes got to, as far as Faust may see.

    Faust's memory store reports no persisted offset, and its recovery read every
    partition a worker kept from the start again, record by record, at each
    rebalance. Offsets are where the last record batch written starts (Tansu's
    end offset is that + 1); partitions the worker lost forget theirs.
    """
    import faust

    from eventpatterns import tables

    app = faust.App("restore-positions", store="memory://", autodiscover=False)
    store = tables.declare(app, 4).data
    topic = f"{app.conf.id}-state-changelog"
    kept, lost = TP(topic, 0), TP(topic, 1)
    store.write(b"kept", stored(0), 0)
    store.write(b"lost", stored(1), 1)
    assert store.persisted_offset(kept) is None

    store.set_persisted_offset(TopicPartition(topic, 0), 40)
    store.set_persisted_offset(TopicPartition(topic, 1), 7)
    store.set_persisted_offset(TopicPartition(topic, 0), 52)
    assert store.persisted_offset(kept) == 52
    assert store.persisted_offset(lost) == 7

    await store.on_recovery_completed({kept}, set())

    assert store.persisted_offset(kept) == 52
    assert store.persisted_offset(lost) is None
    assert set(store.data) == {b"kept"}


async def test_a_partition_given_back_is_not_trusted_from_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Newly assigned, it may have been another worker's meanwhile: what this worker
    knew of it is stale, also when the bulk read fails and Faust reads it instead."""
    import faust

    from eventpatterns import tables
    from eventpatterns.tables import restore

    app = faust.App("restore-given-back", store="memory://", autodiscover=False)
    store = tables.declare(app, 1).data
    topic = f"{app.conf.id}-state-changelog"
    store.set_persisted_offset(TopicPartition(topic, 0), 7)  # before it was taken away

    async def unreachable(*_: object) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(restore, "read_changelog", unreachable)
    await store.on_rebalance({TP(topic, 0)}, set(), {TP(topic, 0)}, 2)

    assert store.persisted_offset(TP(topic, 0)) is None  # Faust reads it from the start
