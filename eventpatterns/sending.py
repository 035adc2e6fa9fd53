"""A batch's records, produced as whole Kafka record batches.

Faust sends each record as its own future through its producer buffer: one
task and several awaits per record, ~150-250 us of CPU each on the benchmark
machine (benchmarks/README.md). The events agent knows all of a batch's
records at once, so they are grouped per topic partition and handed to
aiokafka as record batches, with one future per partition to wait for.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition

from .processor import partition_for

Headers = list[tuple[str, bytes]]
"""aiokafka's record builder takes a list, nothing else."""


@dataclass(slots=True)
class _Record:
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass
class RecordBatches:
    """Records waiting to be produced, grouped by topic and partition."""

    records: dict[tuple[str, int | None], list[_Record]] = field(default_factory=dict)
    last: dict[tuple[str, int], _Record] = field(default_factory=dict)
    """A record to produce after the others of its partition, in a batch of its own."""
    last_batch_starts: dict[TopicPartition, int] = field(default_factory=dict)
    """After `send`: the offset where the last record batch written to each partition
    starts (Tansu gives a partition's end as that + 1)."""

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        """`partition` None: Kafka's default partitioner (murmur2 of the key)."""
        self.records.setdefault((topic, partition), []).append(_Record(key, value, headers or []))

    def add_alone(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        self.last[(topic, partition)] = _Record(key, value, [])

    def take_all(self, other: RecordBatches) -> None:
        """Add `other`'s records after this one's, and leave it empty (one produce for both)."""
        for where, records in other.records.items():
            self.records.setdefault(where, []).extend(records)
        self.last.update(other.last)
        other.records, other.last = {}, {}

    def __len__(self) -> int:
        return sum(map(len, self.records.values())) + len(self.last)

    async def send(self, producer: Any) -> dict[TopicPartition, int]:
        """Produce everything added, wait for the broker, and start empty.

        Returns the offset of the last record written to each partition.
        Batches of one partition keep the order they were added in: aiokafka
        sends one batch per partition per request. So the first batch of every
        partition is handed over before any second one (a record added alone),
        and each round of batches goes in one request per broker.
        """
        by_partition = await self._by_partition(producer)
        self.records = {}
        last, self.last = self.last, {}
        for (topic, partition), record in last.items():
            by_partition.setdefault(TopicPartition(topic, partition), []).append([record])
        queues = {
            tp: [batch for group in groups for batch in _record_batches(producer, group)]
            for tp, groups in by_partition.items()
        }
        sent = []
        for round_ in range(max(map(len, queues.values()), default=0)):
            for tp, batches in queues.items():
                if round_ < len(batches):
                    batch = batches[round_]
                    future = await producer.send_batch(batch, tp.topic, partition=tp.partition)
                    sent.append((tp, batch.record_count(), future))
        written: dict[TopicPartition, int] = {}
        self.last_batch_starts = {}
        results = await asyncio.gather(*(future for _, _, future in sent))
        for (tp, count, _), metadata in zip(sent, results, strict=True):
            if metadata.offset + count - 1 > written.get(tp, -1):
                written[tp] = metadata.offset + count - 1
                self.last_batch_starts[tp] = metadata.offset
        return written

    async def _by_partition(self, producer: Any) -> dict[TopicPartition, list[list[_Record]]]:
        grouped: dict[TopicPartition, list[_Record]] = {}
        for (topic, partition), records in self.records.items():
            if partition is not None:
                grouped.setdefault(TopicPartition(topic, partition), []).extend(records)
                continue
            count = len(await producer.partitions_for(topic))
            for record in records:
                chosen = (
                    random.randrange(count)
                    if record.key is None
                    else partition_for(record.key, count)
                )
                grouped.setdefault(TopicPartition(topic, chosen), []).append(record)
        return {tp: [records] for tp, records in grouped.items()}


def _record_batches(producer: Any, records: list[_Record]) -> list[Any]:
    """As few aiokafka batch builders as the producer's batch size allows."""
    batches = [producer.create_batch()]
    for record in records:
        if not _append(batches[-1], record):  # full: the record starts the next one
            batches.append(producer.create_batch())
            _append(batches[-1], record)
    for batch in batches:
        batch.close()
    return batches


def _append(batch: Any, record: _Record) -> bool:
    metadata = batch.append(
        key=record.key, value=record.value, timestamp=None, headers=record.headers
    )
    return metadata is not None
