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
    apply: Callable[[Definitions], Awaitable[None] | None],
    stopping: asyncio.Event,
) -> None:
    """Apply every pattern file published; a bad one is logged and ignored."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)  # the latest wins; the same version is a no-op
        while not stopping.is_set():
            batches = await consumer.getmany(partition, timeout_ms=500)
            for message in batches.get(partition, []):
                if message.key != KEY or not message.value:
                    continue
                try:
                    definitions = load_definitions(message.value.decode(), filename=topic)
                except PatternFileError as error:
                    log.error("ignored a bad pattern file on %s:\n%s", topic, error)
                    continue
                outcome = apply(definitions)
                if outcome is not None:
                    await outcome
    finally:
        await consumer.stop()
