"""Durable timers in running workers (issue 4): on time, across kills, across workers."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from eventpatterns.broker import EmbeddedBroker
from eventpatterns.core.timeutil import format_us, parse_timestamp

from .harness import (
    TopicReader,
    Worker,
    audit_key,
    future_events,
    produce,
    replay_records,
    run,
    user_key,
    wait_for_same_records,
    wait_ready,
    wait_until,
)
from .test_streaming import ACTIONS, MIXED, audit, deduplicated

pytestmark = pytest.mark.integration

TIMERS_FILE = """
version: 1
offers:
  - {{code: promo, attributes: {{category: shoes}}}}
patterns:
  - id: delayed
    type: match_all
    events: [{{event: signup}}]
    on_met:
      - action: publish
        topic: rt-timed
        value: {{kind: delay, user: "${{user_id}}"}}
        delay: {delay}
      - {{action: publish, topic: rt-timed, value: {{kind: at, user: "${{user_id}}"}}, at: "{at}"}}
      - {{action: log_contact, offer: promo, delay: {delay}}}
  - id: abandoned_cart
    type: match_all
    window: {{mode: rolling, duration: 1h}}
    events: [{{event: add_to_cart}}, {{event: checkout}}]
    checkpoints:
      - after: {checkpoint}
        actions:
          - action: publish
            topic: rt-timed
            value: {{kind: reminder, user: "${{user_id}}", sku: "${{sku}}"}}
  - id: contacted
    type: match_all
    events: [{{event: offerContacted, offer: promo}}]
    on_met:
      - {{action: set_attribute, name: contacted, value: "True"}}
"""


@pytest.fixture
def broker() -> Any:
    with EmbeddedBroker() as running:
        yield running


def write_timers_file(tmp_path: Path, delay: str, checkpoint: str, at_in: float) -> Path:
    at = format_us(time.time_ns() // 1000 + int(at_in * 1_000_000))
    path = tmp_path / "timers.yaml"
    path.write_text(TIMERS_FILE.format(delay=delay, checkpoint=checkpoint, at=at))
    return path


def now_events(users: list[str], names: tuple[str, ...]) -> list[dict[str, Any]]:
    stamp = format_us(time.time_ns() // 1000)
    return [
        {"user_id": user, "event": name, "timestamp": stamp, "attributes": {"sku": f"sku-{user}"}}
        for user in users
        for name in names
    ]


def timed_records(reader: TopicReader) -> list[dict[str, Any]]:
    return [
        r
        for r in audit(reader)
        if r.get("action") in ("publish", "log_contact")
        and r["pattern"] in ("delayed", "abandoned_cart")
    ]


@pytest.mark.parametrize(
    "env",
    [
        {},
        # States held decoded for as long as the test runs: their timers ring all the same.
        {"EVENTPATTERNS_STATE_WRITE_IDLE": "3600", "EVENTPATTERNS_BATCH_SIZE": "100000"},
    ],
    ids=["as-configured", "states-held"],
)
def test_delays_at_times_and_checkpoints_fire_on_time(
    broker: EmbeddedBroker, tmp_path: Path, env: dict[str, str]
) -> None:
    patterns = write_timers_file(tmp_path, delay="3s", checkpoint="4s", at_in=25)
    worker = Worker(broker.url, patterns, tmp_path, **env).start()
    reader = TopicReader(broker.bootstrap, ACTIONS, "rt-timed")
    try:
        wait_ready(worker, broker.bootstrap)
        users = [f"t{n}" for n in range(20)]
        run(
            produce(
                broker.bootstrap,
                "eventpatterns-events",
                now_events(users, ("signup", "add_to_cart")),
                user_key(),
            )
        )
        # 20 delayed publishes, 20 `at` publishes, 20 delayed contacts, 20 reminders.
        wait_until(
            lambda: len(timed_records(reader)) == 80,
            timeout=60,
            message="every delayed, scheduled and checkpoint action",
        )
        lateness = []
        for message in reader.of(ACTIONS):
            record = __import__("orjson").loads(message.value)
            if record in timed_records(reader):
                due = parse_timestamp(record["time"]) / 1e6
                lateness.append(message.timestamp / 1000 - due)
        assert len(lateness) == 80
        assert max(lateness) < 1.0, sorted(lateness)[-5:]
        assert min(lateness) > -0.01  # never early
        kinds = Counter(
            m.value.decode().split('"kind":"')[1].split('"')[0] for m in reader.of("rt-timed")
        )
        assert kinds == {"delay": 20, "at": 20, "reminder": 20}
        # The delayed contact posted its macro event, which met `contacted`.
        wait_until(
            lambda: (
                sum(
                    r["pattern"] == "contacted" and r.get("action") == "set_attribute"
                    for r in audit(reader)
                )
                == 20
            ),
            timeout=10,
            message="macro events of the delayed contacts",
        )
    finally:
        reader.close()
        worker.stop()


def test_timers_survive_a_killed_worker(broker: EmbeddedBroker, tmp_path: Path) -> None:
    patterns = write_timers_file(tmp_path, delay="2s", checkpoint="4s", at_in=12)
    first = Worker(broker.url, patterns, tmp_path, name="first").start()
    reader = TopicReader(broker.bootstrap, ACTIONS)
    users = [f"k{n}" for n in range(30)]
    try:
        wait_ready(first, broker.bootstrap)
        events = now_events(users, ("signup", "add_to_cart"))
        run(produce(broker.bootstrap, "eventpatterns-events", events, user_key()))
        wait_until(
            lambda: (
                sum(r.get("to") == "met" and r["pattern"] == "delayed" for r in audit(reader)) == 30
            ),
            timeout=30,
            message="the signups applied (timers pending)",
        )
    finally:
        first.kill()
    # Some timers fall due while no worker runs.
    earliest_due = parse_timestamp(events[0]["timestamp"]) / 1e6 + 2
    wait_until(lambda: time.time() > earliest_due + 1, timeout=10, message="a timer's due time")
    second = Worker(broker.url, patterns, tmp_path, name="second").start()
    try:
        expected = [
            r
            for r in replay_records(patterns, events, drain=True, workdir=tmp_path)
            if r.get("action") in ("publish", "log_contact")
        ]
        assert len(expected) == 120
        wait_for_same_records(
            lambda: deduplicated(timed_records(reader)),
            expected,
            timeout=60,
            what="every timer fired after the restart",
        )
        # Each took effect once: no record repeated under another id.
        distinct = Counter(audit_key(r) for r in deduplicated(timed_records(reader)))
        assert all(count == 1 for count in distinct.values())
        # Records carry the original due times, not the time of the late firing.
        delayed = [r for r in timed_records(reader) if r["action"] == "log_contact"]
        assert all(parse_timestamp(r["time"]) / 1e6 < earliest_due + 0.5 for r in delayed)
    finally:
        reader.close()
        second.stop()


def test_timers_of_a_killed_worker_fire_on_the_other(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    patterns = write_timers_file(tmp_path, delay="12s", checkpoint="14s", at_in=16)
    one = Worker(broker.url, patterns, tmp_path, name="one").start()
    two = Worker(broker.url, patterns, tmp_path, name="two").start()
    reader = TopicReader(broker.bootstrap, ACTIONS)
    users = [f"m{n}" for n in range(40)]
    try:
        wait_ready(one, broker.bootstrap)
        wait_ready(two, broker.bootstrap)
        events = now_events(users, ("signup", "add_to_cart"))
        run(produce(broker.bootstrap, "eventpatterns-events", events, user_key()))
        wait_until(
            lambda: (
                sum(r.get("to") == "met" and r["pattern"] == "delayed" for r in audit(reader)) == 40
            ),
            timeout=30,
            message="the signups applied on both workers",
        )
        one.kill()
        expected = [
            r
            for r in replay_records(patterns, events, drain=True, workdir=tmp_path)
            if r.get("action") in ("publish", "log_contact")
        ]
        wait_for_same_records(
            lambda: deduplicated(timed_records(reader)),
            expected,
            timeout=90,
            what="all 40 users' timers fired by the survivor",
        )
    finally:
        reader.close()
        one.kill()
        two.stop()


def test_parity_with_replay_drain_including_at(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Every action and timer kind: mixed.yaml plus the `at`/delay/checkpoint file."""
    patterns = tmp_path / "all.yaml"
    timers = write_timers_file(tmp_path, delay="3s", checkpoint="5s", at_in=14).read_text()
    mixed = MIXED.read_text().replace("version: 1\n", "", 1)
    patterns.write_text(_merge(timers, mixed))
    worker = Worker(broker.url, patterns, tmp_path).start()
    reader = TopicReader(broker.bootstrap, ACTIONS)
    try:
        wait_ready(worker, broker.bootstrap)
        events = future_events(150, seed=9, start_in=4.0, span=4.0)
        events += now_events([f"z{n}" for n in range(20)], ("signup", "add_to_cart"))
        events.sort(key=lambda e: e["timestamp"])
        expected = replay_records(patterns, events, drain=True, workdir=tmp_path)
        run(produce(broker.bootstrap, "eventpatterns-events", events, user_key()))
        wait_for_same_records(
            lambda: audit(reader),
            expected,
            timeout=90,
            what="records equal to replay --drain",
        )
    finally:
        reader.close()
        worker.stop()


def _merge(first: str, second: str) -> str:
    """Two pattern files' offers, segments and patterns in one file."""
    import yaml

    a, b = yaml.safe_load(first), yaml.safe_load("version: 1\n" + second)
    merged = {
        "version": 1,
        "offers": a.get("offers", []) + b.get("offers", []),
        "segments": {**a.get("segments", {}), **b.get("segments", {})},
        "patterns": a["patterns"] + b["patterns"],
    }
    return yaml.safe_dump(merged, sort_keys=False)
