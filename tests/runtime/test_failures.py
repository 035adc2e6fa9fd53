"""A worker whose writes fail stops, and its successor applies what it had not made
durable: nothing lost (real broker, real worker processes; the fault injected by
tests/runtime/faulty_worker.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventpatterns.broker import EmbeddedBroker

from .harness import (
    TopicReader,
    Worker,
    produce,
    replay_records,
    run,
    user_key,
    wait_for_same_records,
    wait_ready,
    wait_until,
)
from .test_streaming import ACTIONS, COUNTING, audit, deduplicated, past_events

pytestmark = pytest.mark.integration


def doomed_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same events under other user ids, which the faulty worker fails on."""
    return [{**event, "user_id": f"doomed-{event['user_id']}"} for event in events]


def test_failed_writes_stop_the_worker_and_its_successor_loses_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    reader = TopicReader(broker.bootstrap, ACTIONS)
    before, after = past_events(40, seed=5), past_events(40, seed=6)
    events = [*before, *doomed_events(past_events(3, seed=7)), *after]
    faulty = Worker(broker.url, COUNTING, tmp_path, "faulty", "tests.runtime.faulty_worker")
    faulty.start()
    try:
        wait_ready(faulty, broker.bootstrap)
        run(produce(broker.bootstrap, "eventpatterns-events", before, user_key()))
        first = replay_records(COUNTING, before, workdir=tmp_path)
        wait_for_same_records(lambda: audit(reader), first, timeout=60, what="the first events")
        run(produce(broker.bootstrap, "eventpatterns-events", events[len(before) :], user_key()))
        assert faulty.process is not None
        wait_until(lambda: faulty.process.poll() is not None, 60, message="the worker to stop")
        assert faulty.process.returncode == 1
        assert "writing a batch failed" in faulty.log()
        assert "injected: the state changelog" in faulty.log()

        successor = Worker(broker.url, COUNTING, tmp_path, name="successor").start()
        try:
            wait_ready(successor, broker.bootstrap)
            # At least once: the failed batch's records again, under the same ids.
            expected = replay_records(COUNTING, events, workdir=tmp_path)
            wait_for_same_records(
                lambda: deduplicated(audit(reader)),
                expected,
                timeout=60,
                what="every event's records, the failed batch's included, once each",
            )
        finally:
            successor.stop()
    finally:
        faulty.kill()
        reader.close()
