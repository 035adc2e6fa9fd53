"""Fixtures for the tests that talk to a real embedded broker with a plain aiokafka client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaProducer

from eventpatterns.broker import EmbeddedBroker


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    """One Tansu per test module (modules that need another lifetime define their own)."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
async def producer(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaProducer]:
    # aiokafka's default batch size (16 KiB), so that big groups take several batches
    client = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1)
    await client.start()
    yield client
    await client.stop()
