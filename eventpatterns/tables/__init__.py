"""Changelog-backed Faust tables: each user's state, and each user's next timer.

Both are keyed by user id (bytes) and written only by the events agent, so
every change is in the changelog and a worker that takes over a partition
recovers it from there. The agent writes a batch's changes into the tables'
stores and hands their changelog records to `RecordBatches`, which produces
them as whole record batches (Faust's own `table[key] = value` sends one
record at a time).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import faust
from aiokafka.structs import TopicPartition
from faust.streams import _current_event
from faust.types import EventT, StoreT
from yarl import URL

from ..sending import RecordBatches
from .restore import BulkRestoredStore

STATE_TABLE = "state"
TIMERS_TABLE = "timers"


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


def declare(app: faust.App, partitions: int) -> tuple[faust.Table, faust.Table]:
    """Keys and values are raw bytes (the app's default serializers)."""

    def table(name: str, help: str) -> faust.Table:
        declared = UserTable(
            app,
            name=name,
            beacon=app.tables.beacon,
            partitions=partitions,
            help=help,
            key_type=bytes,
            value_type=bytes,
        )
        return app.tables.add(declared)

    state = table(STATE_TABLE, "user id -> applied offsets and core state")
    timers = table(TIMERS_TABLE, "user id -> earliest pending timer (us)")
    return state, timers


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


class TableStateStore:
    """The processor's `StateStore` over the Faust state and timers tables."""

    def __init__(self, state: faust.Table, timers: faust.Table) -> None:
        self.state = state
        self.timers = timers
        self.events_by_partition: Mapping[int, EventT] = {}
        self.changelog = RecordBatches()
        """The changelog records of what was written since the last `send_changelog`."""

    def get(self, user_id: str) -> bytes | None:
        value: bytes | None = self.state.get(user_id.encode())
        return value

    def put(self, user_id: str, value: bytes, partition: int) -> None:
        self._write(self.state, user_id.encode(), value, partition)

    def _write(self, table: faust.Table, key: bytes, value: bytes | None, partition: int) -> None:
        """What `table[key] = value` (or `del`) does, with the changelog record held back."""
        with writing_as(self.events_by_partition[partition]):
            if value is None:
                del table.data[key]
            else:
                table.data[key] = value
        self.changelog.add(table.changelog_topic_name, key, value, partition=partition)

    def end_changelog_batches(self, marker: bytes) -> None:
        """Follow each written changelog partition's records with a batch of one `marker`."""
        written = list(self.changelog.records)
        for topic, partition in written:
            if partition is not None:
                self.changelog.add_alone(topic, partition, marker, None)

    async def send_changelog(self, producer: Any) -> None:
        """Produce the held-back changelog records; then they count as persisted."""
        written = await self.changelog.send(producer)
        for table in (self.state, self.timers):
            topic = table.changelog_topic_name
            for tp, offset in written.items():
                if tp.topic == topic:  # RocksDB keeps it, to restore from there
                    table.data.set_persisted_offset(TopicPartition(topic, tp.partition), offset)

    def set_next_due(self, user_id: str, partition: int, due: int | None) -> bool:
        """Record the user's earliest timer; False when it did not change."""
        key = user_id.encode()
        current = self.timers.get(key)
        wanted = None if due is None else str(due).encode()
        if current == wanted:
            return False
        self._write(self.timers, key, wanted, partition)
        return True

    def pending(self) -> Iterator[tuple[str, int]]:
        """(user, due) of every user with a timer, as recovered from the changelog."""
        for key, value in list(self.timers.items()):
            if value:
                yield key.decode(), int(value)
