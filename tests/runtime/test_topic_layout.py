"""A worker refuses topics whose partition counts break its co-partitioning (real broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventpatterns.broker import EmbeddedBroker, acreate_topics, apartition_counts

from .harness import Worker, run, wait_until
from .test_streaming import COUNTING

pytestmark = pytest.mark.integration


def test_a_worker_refuses_an_events_topic_of_another_partition_count(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    run(acreate_topics(broker.bootstrap, {"layout-events": 3}))
    worker = Worker(
        broker.url,
        COUNTING,
        tmp_path,
        EVENTPATTERNS_APP_ID="layout",
        EVENTPATTERNS_EVENTS_TOPIC="layout-events",
        EVENTPATTERNS_TIMERS_TOPIC="layout-timers",
        EVENTPATTERNS_PARTITIONS="4",
    ).start()
    try:
        assert worker.process is not None
        wait_until(lambda: worker.process.poll() is not None, 60, message="the worker to stop")
        assert worker.process.returncode == 2
        assert "EVENTPATTERNS_PARTITIONS is 4, but 'layout-events' has 3" in worker.log()
    finally:
        worker.kill()
    # It stopped before Faust made the changelog, and made nothing else of the wrong size.
    counts = run(
        apartition_counts(
            broker.bootstrap, ["layout-events", "layout-timers", "layout-state-changelog"]
        )
    )
    assert counts == {"layout-events": 3, "layout-timers": 4}


def test_partition_counts_are_read_without_creating_missing_topics(
    broker: EmbeddedBroker,
) -> None:
    run(acreate_topics(broker.bootstrap, {"counted-two": 2}))
    assert run(apartition_counts(broker.bootstrap, ["counted-two", "counted-missing"])) == {
        "counted-two": 2
    }
    # Asked again: Tansu creates a topic a metadata request names, so had the first
    # call described it, it would be there now.
    assert run(apartition_counts(broker.bootstrap, ["counted-missing"])) == {}
