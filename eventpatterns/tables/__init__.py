"""The changelog-backed Faust table of each user's state.

Keyed by user id (bytes) and written only by the events agent, so every
change is in the changelog and a worker that takes over a partition recovers
it from there. The agent writes a batch's changes into the table's store and
hands their changelog records to `RecordBatches`, which produces them as
whole record batches (Faust's own `table[key] = value` sends one record at a
time). A stored value carries the user's earliest timer in front
(`processor.Envelope`), so the timers need no table of their own.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import faust
from aiokafka.structs import TopicPartition
from faust.streams import _current_event
from faust.types import EventT, StoreT
from yarl import URL

from ..processor import partition_for, stored_next_due, stored_partition
from ..sending import RecordBatches
from .restore import BulkRestoredStore, release_free_memory

STATE_TABLE = "state"

__all__ = ["STATE_TABLE", "TableStateStore", "UserTable", "declare", "release_free_memory"]


class UserTable(faust.Table):  # type: ignore[misc]
    """A Faust table whose memory store restores from the changelog in bulk (`restore.py`)."""

    def _new_store_by_url(self, url: str | URL) -> StoreT:
        if URL(str(url)).scheme != "memory":
            return super()._new_store_by_url(url)
        return BulkRestoredStore(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )


def declare(app: faust.App, partitions: int) -> faust.Table:
    """Keys and values are raw bytes (the app's default serializers)."""
    table = UserTable(
        app,
        name=STATE_TABLE,
        beacon=app.tables.beacon,
        partitions=partitions,
        help="user id -> applied offsets and core state",
        key_type=bytes,
        value_type=bytes,
    )
    declared: faust.Table = app.tables.add(table)
    return declared


@contextmanager
def writing_as(event: EventT) -> Iterator[None]:
    """Make table writes go to `event`'s partition.

    Faust picks a table write's changelog partition from the event being
    processed; a batch holds events of several partitions, so each write names
    the event of its own partition.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class _PartitionEvent:
    """What Faust's RocksDB store reads of the event being processed: its partition."""

    __slots__ = ("__weakref__", "partition")

    def __init__(self, partition: int) -> None:
        self.partition = partition

    @property
    def message(self) -> _PartitionEvent:
        return self


class TableStateStore:
    """The processor's `StateStore` over the Faust state table."""

    def __init__(self, state: faust.Table) -> None:
        self.state = state
        self.changelog = RecordBatches()
        """The changelog records of the states written since they were last produced."""

    def get(self, user_id: str) -> bytes | None:
        # From the store itself: the table's own get adds only Faust's per-key sensor
        # calls, on every event. The memory store's dict directly: its `get` is
        # `Mapping.get` over `__getitem__`, a raised KeyError for every new user.
        store = self.state.data
        key = user_id.encode()
        value: bytes | None = (
            store.data.get(key) if isinstance(store, BulkRestoredStore) else store.get(key)
        )
        return value

    def put(self, user_id: str, value: bytes, partition: int) -> None:
        """What `table[key] = value` does, with the changelog record held back."""
        key = user_id.encode()
        store = self.state.data
        if isinstance(store, BulkRestoredStore):
            store.write(key, value, partition)
        else:
            event = _PartitionEvent(partition)
            with writing_as(event):  # type: ignore[arg-type]  # RocksDB: its partition
                store[key] = value
        self.changelog.add(self.state.changelog_topic_name, key, value, partition=partition)

    @property
    def restores_in_bulk(self) -> bool:
        """Whether a worker restores this table with its own read (`restore.py`)."""
        return isinstance(self.state.data, BulkRestoredStore)

    def end_changelog_batches(self, marker: bytes) -> None:
        """Follow each written changelog partition's records with a batch of one `marker`."""
        written = list(self.changelog.records)
        for topic, partition in written:
            if partition is not None:
                self.changelog.add_alone(topic, partition, marker, None)

    def changelog_written(self, last_batch_starts: Mapping[TopicPartition, int]) -> None:
        """The held-back changelog records were produced (`RecordBatches.send`, where
        `last_batch_starts` says, with other topics' records): they count as persisted.

        Up to where the last record batch written starts: Tansu gives a
        partition's end as that + 1, and Faust refuses a persisted offset past
        the end (`ConsistencyError`); on Kafka a recovery reads the rest of that
        batch again, values the store holds. RocksDB keeps the offset to restore
        from there; the memory store, so that a partition kept across a
        rebalance is not read again.
        """
        topic = self.state.changelog_topic_name
        for tp, offset in last_batch_starts.items():
            if tp.topic == topic:
                self.state.data.set_persisted_offset(tp, offset)

    def partition_of(self, key: bytes) -> int:
        """The partition a user's state belongs to: where its value was written.

        A key whose value does not say (an older value, or a key already gone)
        is where Kafka's default partitioner puts it, as the events keyed by it.
        """
        return self._partition_of(key, self.state.data.get(key))

    def pending(self, partitions: set[int]) -> Iterator[tuple[bytes, int]]:
        """(user, due) of every user of `partitions` with a timer, as recovered."""
        for key, value in list(self.state.data.items()):
            due = stored_next_due(value) if value else None
            if due is not None and self._partition_of(key, value) in partitions:
                yield key, due

    def _partition_of(self, key: bytes, value: bytes | None) -> int:
        store = self.state.data
        partition: int | None
        if isinstance(store, BulkRestoredStore):
            partition = store.partition_of(key)  # from the value, or as the changelog said
        else:
            partition = stored_partition(value) if value else None
        return partition_for(key, self.state.partitions) if partition is None else partition
