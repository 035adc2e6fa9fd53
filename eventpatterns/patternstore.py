"""The pattern file in force lives on a compacted topic, one record under one key.

`PUT /v1/patterns` and `eventpatterns patterns push` validate a file and publish
it here; every worker follows the topic and switches, with no restart. A worker
that starts reads the latest record first, so it uses the latest definitions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from .core.definitions import Definitions, PatternFileError, load_definitions

log = logging.getLogger(__name__)

KEY = b"patterns"


async def read_latest(bootstrap: str, topic: str, timeout: float = 10.0) -> str | None:
    """The newest pattern file on the topic, or None if it holds none."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        latest = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await consumer.position(partition) < end and loop.time() < deadline:
            batches = await consumer.getmany(partition, timeout_ms=500)
            for message in batches.get(partition, []):
                if message.key == KEY and message.value:
                    latest = message.value.decode()
        return latest
    finally:
        await consumer.stop()


async def publish(bootstrap: str, topic: str, text: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, text.encode(), key=KEY, partition=0)
    finally:
        await producer.stop()


async def follow(
    bootstrap: str,
    topic: str,
    apply: Callable[[Definitions, str], Awaitable[None] | None],
    stopping: asyncio.Event,
) -> None:
    """Apply every pattern file published (with its text); a bad one is logged and ignored.

    Of the records already on the topic when following starts, only the latest
    good one is applied: a worker that starts must not switch through older
    files (dropping the state of the patterns they changed) on its way to the
    one in force.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        backlog_end = (await consumer.end_offsets([partition]))[partition]
        latest: tuple[Definitions, str] | None = None
        while not stopping.is_set() and await consumer.position(partition) < backlog_end:
            batches = await consumer.getmany(partition, timeout_ms=500)
            for message in batches.get(partition, []):
                latest = _decode(topic, message.key, message.value) or latest
        if latest is not None:
            await _apply(apply, *latest)
        while not stopping.is_set():
            batches = await consumer.getmany(partition, timeout_ms=500)
            for message in batches.get(partition, []):
                loaded = _decode(topic, message.key, message.value)
                if loaded is not None:
                    await _apply(apply, *loaded)
    finally:
        await consumer.stop()


def _decode(topic: str, key: bytes | None, value: bytes | None) -> tuple[Definitions, str] | None:
    if key != KEY or not value:
        return None
    text = value.decode()
    try:
        return load_definitions(text, filename=topic), text
    except PatternFileError as error:
        log.error("ignored a bad pattern file on %s:\n%s", topic, error)
        return None


async def _apply(
    apply: Callable[[Definitions, str], Awaitable[None] | None], definitions: Definitions, text: str
) -> None:
    outcome = apply(definitions, text)
    if outcome is not None:
        await outcome
