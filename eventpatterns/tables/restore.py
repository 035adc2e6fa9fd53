"""The memory store, restored from its changelog in bulk.

Faust restores a table one record at a time through its consumer and its
recovery queue: ~3,300 records/s on the benchmark machine, five minutes for
1,000,000 users (benchmarks/README.md). When partitions are newly assigned,
this store reads their changelog first, with a consumer of its own and whole
fetches, and reports where it stopped as the persisted offset, so that
Faust's recovery only reads what is left (nothing, unless a writer is still
at work). The partitions a worker keeps across a rebalance are not read
again: Faust's memory store reports no persisted offset, so its recovery
re-read every kept partition from its start, record by record, at every
rebalance; this one reports where its own writes got to (`set_persisted_offset`).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.stores import memory
from faust.types import TP

from ..broker import to_bootstrap
from ..processor import stored_partition

log = logging.getLogger(__name__)

STALL_SECONDS = 30.0
"""Give up on a bulk read that makes no progress this long; Faust reads the rest."""


class KeyPartitions(MutableMapping[bytes, int]):
    """Each key's partition, read from its stored value (`processor.stored_partition`).

    Faust's memory store keeps a dict of key -> partition beside its data, to
    drop the keys of revoked partitions: ~50 bytes per user, a tenth of an idle
    user's memory. Values carry their partition, so only keys whose value does
    not (written by an older version, or noted by Faust's own recovery before
    it stores the value) take room here.
    """

    def __init__(self, data: Mapping[bytes, bytes]) -> None:
        self._data = data
        self._other: dict[bytes, int] = {}

    def note(self, key: bytes, value: bytes | None, partition: int) -> None:
        """The key now holds `value` (None: deleted), written for `partition`."""
        if value is None or stored_partition(value) == partition:
            self._other.pop(key, None)
        else:
            self._other[key] = partition

    def __getitem__(self, key: bytes) -> int:
        partition = self._other.get(key)
        if partition is None:
            partition = stored_partition(self._data[key])
            if partition is None:
                raise KeyError(key)
        return partition

    def __setitem__(self, key: bytes, partition: int) -> None:
        self._other[key] = partition

    def __delitem__(self, key: bytes) -> None:
        del self._other[key]

    def pop(self, key: bytes, default: Any = None) -> Any:  # type: ignore[override]
        """What `dict.pop` does; a key known from its value has nothing to remove."""
        try:
            partition = self[key]
        except KeyError:
            return default
        self._other.pop(key, None)
        return partition

    def __iter__(self) -> Iterator[bytes]:
        return (key for key in self._data if key in self)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def items(self) -> Iterator[tuple[bytes, int]]:  # type: ignore[override]
        """(key, partition) of every key whose partition is known; one pass over the data."""
        other = self._other
        for key, value in self._data.items():
            partition = other.get(key)
            if partition is None:
                partition = stored_partition(value)
            if partition is not None:
                yield key, partition


class BulkRestoredStore(memory.Store):  # type: ignore[misc]
    def __post_init__(self) -> None:
        super().__post_init__()
        self._key_partition = KeyPartitions(self.data)
        self._positions: dict[TP, int] = {}
        """Per changelog partition, an offset up to which the data holds its records."""

    def write(self, key: bytes, value: bytes | None, partition: int) -> None:
        """Set (or, with None, delete) a key written for `partition`.

        Faust's memory store learns a key's partition only from a recovery, and
        drops the keys of revoked partitions by it; written through here, the
        keys the agent wrote are dropped as well.
        """
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        self._key_partition.note(key, value, partition)

    def partition_of(self, key: bytes) -> int | None:
        partition: int | None = self._key_partition.get(key)
        return partition

    def persisted_offset(self, tp: TP) -> int | None:
        return self._positions.get(tp)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """The worker wrote this changelog partition: the data holds it up to `offset`."""
        self._positions[TP(tp.topic, tp.partition)] = offset

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        for tp in newly_assigned:  # another worker had it: what this one knew is stale
            self._positions.pop(tp, None)
        topic = self.table.changelog_topic_name
        standbys = self.app.assignor.assigned_standbys()
        wanted = {tp for tp in newly_assigned if tp.topic == topic and tp not in standbys}
        if wanted:
            started = time.monotonic()
            try:
                bootstrap = to_bootstrap(",".join(map(str, self.app.conf.broker)))
                offsets = await read_changelog(bootstrap, wanted, self.data, self._key_partition)
            except Exception:  # Faust's own recovery reads it all again, from the start
                log.exception("%s: bulk changelog read failed", self.table.name)
                return
            self._positions.update({TP(tp.topic, tp.partition): o for tp, o in offsets.items()})
            log.info(
                "%s: %d partitions read from the changelog in %.1fs, %d keys held",
                self.table.name,
                len(wanted),
                time.monotonic() - started,
                len(self.data),
            )

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Faust drops the keys of the partitions this worker no longer has; their
        positions go with them (given back later, they are read in bulk again)."""
        await super().on_recovery_completed(active_tps, standby_tps)
        for tp in [tp for tp in self._positions if tp not in active_tps]:
            del self._positions[tp]


async def read_changelog(
    bootstrap: str,
    partitions: Iterable[TP],
    data: MutableMapping[bytes, bytes],
    key_partition: KeyPartitions,
) -> dict[TopicPartition, int]:
    """Apply the partitions' changelog records to `data`, up to their end offsets.

    Returns the offset of the last record applied per partition, at most the
    end offset - 1. A tombstone (value None) deletes the key.
    """
    tps = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        return await _read_until(consumer, ends, data, key_partition)
    finally:
        await consumer.stop()


async def _read_until(
    consumer: AIOKafkaConsumer,
    ends: dict[TopicPartition, int],
    data: MutableMapping[bytes, bytes],
    key_partition: KeyPartitions,
) -> dict[TopicPartition, int]:
    last: dict[TopicPartition, int] = {}
    remaining = {tp for tp, end in ends.items() if end > await consumer.position(tp)}
    progress_at = time.monotonic()
    while remaining:
        fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=50_000)
        for tp, records in fetched.items():
            _apply(records, tp.partition, data, key_partition)
            # Not past the end offset Faust will see: it refuses a persisted offset
            # above it (Tansu's end offset can fall inside the last record batch).
            last[tp] = min(records[-1].offset, ends[tp] - 1)
            progress_at = time.monotonic()
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
        if remaining and time.monotonic() - progress_at > STALL_SECONDS:
            log.warning("changelog read stalled; Faust reads the rest of %s", sorted(remaining))
            break
        await asyncio.sleep(0)  # the worker's other tasks (heartbeats, web) go on
    return last


def _apply(
    records: list[ConsumerRecord[bytes, bytes]],
    partition: int,
    data: MutableMapping[bytes, bytes],
    key_partition: KeyPartitions,
) -> None:
    for record in records:
        key = record.key
        if key is None:
            continue
        if record.value is None:
            data.pop(key, None)
        else:
            data[key] = record.value
        key_partition.note(key, record.value, partition)


def release_free_memory() -> bool:
    """Give the heap memory freed since the last call back to the system (glibc only).

    A bulk read of the changelog leaves its fetch buffers freed but resident:
    ~200 B per restored user at 100,000 users, a fifth of what a user needs
    (benchmarks/README.md). False where the C library has no `malloc_trim`.
    """
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    trim(0)
    return True
