"""The streaming runtime on the real embedded broker and real Redis (issue 3)."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from eventpatterns.broker import EmbeddedBroker
from eventpatterns.core.timeutil import format_us

from .harness import (
    REPO,
    TopicReader,
    Worker,
    audit_key,
    free_port,
    future_events,
    metric,
    produce,
    replay_records,
    run,
    user_key,
    wait_for_same_records,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.integration

MIXED = REPO / "tests/runtime/patterns/mixed.yaml"
COUNTING = REPO / "tests/runtime/patterns/counting.yaml"
CLICKSTREAM = REPO / "examples/clickstream.yaml"
ACTIONS = "eventpatterns-actions"


@pytest.fixture
def broker() -> Any:
    with EmbeddedBroker() as running:
        yield running


def audit(reader: TopicReader) -> list[dict[str, Any]]:
    return [r for r in reader.values(ACTIONS) if not r["user_id"].startswith("warmup")]


def deduplicated(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At-least-once: a re-produced record carries the id of its first production."""
    by_id = {}
    for record in records:
        by_id.setdefault(record["id"], record)
    return list(by_id.values())


def past_events(users: int, seed: int, per_user: tuple[int, int] = (6, 14)) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    base = 1_700_000_000_000_000
    events = []
    for number in range(users):
        moment = base + rng.randrange(10**9)
        for _ in range(rng.randint(*per_user)):
            moment += rng.randrange(1, 120_000_000)
            events.append(
                {
                    "user_id": f"p{seed}-{number}",
                    "event": rng.choice(("view", "view", "cart", "buy")),
                    "timestamp": format_us(moment),
                    "attributes": {
                        "category": rng.choice(("shoes", "bags")),
                        "sku": f"s{rng.randint(1, 3)}",
                    },
                }
            )
    return events


def test_parity_with_replay_on_every_pattern_kind(broker: EmbeddedBroker, tmp_path: Path) -> None:
    worker = Worker(broker.url, MIXED, tmp_path).start()
    reader = TopicReader(broker.bootstrap, ACTIONS, "rt-offers", "rt-reminders")
    try:
        wait_ready(worker, broker.bootstrap)
        events = future_events(300, seed=1)
        expected = replay_records(MIXED, events, drain=True, workdir=tmp_path)
        kinds = Counter(r.get("action", r["kind"]) for r in expected)
        assert {
            "publish",
            "log_contact",
            "suppress_offers",
            "set_attribute",
            "trigger_events",
            "qualify_segments",
            "resegment",
        } <= set(kinds), kinds
        run(produce(broker.bootstrap, "eventpatterns-events", events, user_key()))
        wait_for_same_records(
            lambda: audit(reader),
            expected,
            timeout=90,
            what="audit records equal to replay's",
        )
        published = [r for r in expected if r.get("action") == "publish"]
        sent = Counter(m.value for m in reader.of("rt-offers") + reader.of("rt-reminders"))
        assert sent == Counter(
            orjson.dumps(r["value"]) for r in published if not r.get("suppressed")
        )
        assert all(r["version"] for r in audit(reader))
    finally:
        reader.close()
        worker.stop()


@pytest.mark.parametrize(
    "applied_before_kill",
    [
        pytest.param(10, id="early"),
        # Late: the killed worker has applied most of its share, maybe without a
        # commit, so the survivor restarts those partitions from their beginning or
        # a committed offset while it recovers (this lost records before
        # `faustpatches.seek_before_fetching_streams`).
        pytest.param(700, id="late"),
    ],
)
def test_two_workers_one_killed_mid_stream(
    broker: EmbeddedBroker, tmp_path: Path, applied_before_kill: int
) -> None:
    first = Worker(broker.url, COUNTING, tmp_path, name="a").start()
    second = Worker(broker.url, COUNTING, tmp_path, name="b").start()
    reader = TopicReader(broker.bootstrap, ACTIONS, "eventpatterns-events")
    try:
        wait_ready(first, broker.bootstrap)
        wait_ready(second, broker.bootstrap)
        events = past_events(400, seed=2)
        half = len(events) // 2
        run(produce(broker.bootstrap, "eventpatterns-events", events[:half], user_key()))
        wait_until(
            lambda: (
                metric(first, "eventpatterns_events_total") > applied_before_kill
                and metric(second, "eventpatterns_events_total") > 10
            ),
            timeout=30,
            message="both workers applying events",
        )
        first.kill()
        run(produce(broker.bootstrap, "eventpatterns-events", events[half:], user_key()))
        expected = replay_records(COUNTING, events, workdir=tmp_path)
        try:
            wait_for_same_records(
                lambda: deduplicated(audit(reader)),
                expected,
                timeout=60,
                what="every user's records, as replay says, after the kill",
            )
        except AssertionError:
            lost = lost_by_the_broker(reader, events)
            if lost:
                # Not the worker's doing: Tansu 0.6 (memory storage) acknowledged these
                # writes of the test's producer and does not hold them.
                pytest.xfail(f"the embedded broker lost {lost} acknowledged input records")
            raise
        # Duplicates, if any, are exact re-productions under the same id.
        by_id: dict[str, set[bytes]] = {}
        for record in audit(reader):
            by_id.setdefault(record["id"], set()).add(audit_key(record))
        assert all(len(keys) == 1 for keys in by_id.values())
        # The survivor wrote the states it held as the rebalance stopped its flow,
        # before giving up partitions (`agents.apply_batches`, `Runtime.drop_held`).
        assert "dropping the states" not in second.log()
    finally:
        reader.close()
        first.kill()
        second.stop()


def test_a_worker_stopped_leaves_the_group_and_its_partitions_move_at_once(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Not once its session has timed out: Tansu numbers a group's first generation 0,
    from which aiokafka did not leave (`faustpatches.leave_the_group_from_generation_zero`)."""
    session = 10.0
    timeout = {"EVENTPATTERNS_SESSION_TIMEOUT": str(session)}
    first = Worker(broker.url, COUNTING, tmp_path, name="a", **timeout).start()
    second = Worker(broker.url, COUNTING, tmp_path, name="b", **timeout).start()
    try:
        wait_ready(first, broker.bootstrap)
        wait_ready(second, broker.bootstrap)
        wait_until(
            lambda: partitions(first) and partitions(second),
            timeout=60,
            message="the partitions split between the two",
        )
        assert first.stop() == 0
        stopped = time.monotonic()
        wait_until(
            lambda: partitions(second) == [0, 1, 2, 3],
            timeout=60,
            interval=0.1,
            message="the survivor holding every partition",
        )
        assert time.monotonic() - stopped < session  # its session had not timed out
        assert "LeaveGroup request succeeded" in first.log()
    finally:
        first.kill()
        second.stop()


def partitions(worker: Worker) -> list[int]:
    """The input partitions the worker holds, as its API says (none while unreachable)."""
    try:
        with urllib.request.urlopen(f"{worker.url}/v1/status", timeout=2) as response:
            return list(orjson.loads(response.read())["partitions"])
    except OSError:
        return []


def lost_by_the_broker(reader: TopicReader, events: list[dict[str, Any]]) -> int:
    """How many produced (and acknowledged) events the input topic does not hold."""
    held = Counter(message.value for message in reader.of("eventpatterns-events"))
    return sum((Counter(orjson.dumps(event) for event in events) - held).values())


def test_restart_recovers_state_from_the_changelog(broker: EmbeddedBroker, tmp_path: Path) -> None:
    reader = TopicReader(broker.bootstrap, ACTIONS)
    events = past_events(200, seed=3)
    half = len(events) // 2
    expected_first = replay_records(COUNTING, events[:half], workdir=tmp_path)
    worker = Worker(broker.url, COUNTING, tmp_path, name="first").start()
    try:
        wait_ready(worker, broker.bootstrap)
        run(produce(broker.bootstrap, "eventpatterns-events", events[:half], user_key()))
        wait_for_same_records(
            lambda: audit(reader), expected_first, timeout=60, what="the first half's records"
        )
    finally:
        assert worker.stop() is not None
    again = Worker(broker.url, COUNTING, tmp_path, name="second").start()
    try:
        wait_ready(again, broker.bootstrap)
        run(produce(broker.bootstrap, "eventpatterns-events", events[half:], user_key()))
        expected = replay_records(COUNTING, events, workdir=tmp_path)
        # Counting goes on from the recovered state: the whole is what replay says of the whole.
        wait_for_same_records(
            lambda: deduplicated(audit(reader)),
            expected,
            timeout=60,
            what="records of both halves equal to one replay",
        )
        restored = re.findall(
            r"state: \d+ partitions read from the changelog .*, (\d+) keys held", again.log()
        )
        assert restored and int(restored[0]) >= len({e["user_id"] for e in events[:half]})
        frozen = re.findall(r"froze (\d+) objects alive after recovery", again.log())
        assert frozen and int(frozen[0]) > 0  # out of the collector's way from then on
    finally:
        reader.close()
        again.stop()


def test_bad_input_goes_to_the_dead_letter_topic(broker: EmbeddedBroker, tmp_path: Path) -> None:
    worker = Worker(broker.url, COUNTING, tmp_path, EVENTPATTERNS_MAX_EVENT_BYTES="2000").start()
    reader = TopicReader(broker.bootstrap, "eventpatterns-dlq", ACTIONS)
    try:
        wait_ready(worker, broker.bootstrap)
        bad = [
            b"not json at all",
            b"[1, 2, 3]",
            orjson.dumps({"event": "view", "timestamp": "2026-11-17T11:54:29Z"}),
            orjson.dumps({"user_id": "x", "event": 7}),
            orjson.dumps({"user_id": "x", "event": "view", "timestamp": "yesterday"}),
            orjson.dumps({"user_id": "x", "event": "view", "attributes": "no"}),
            orjson.dumps({"user_id": "x", "event": "view", "attributes": {"pad": "z" * 3000}}),
        ]
        good = past_events(5, seed=4, per_user=(10, 12))
        mixed: list[bytes | dict[str, Any]] = [*bad[:3], *good, *bad[3:]]
        # Good events keyed by user (their order matters); bad ones as they come.
        run(produce(broker.bootstrap, "eventpatterns-events", mixed, user_key()))
        wait_until(
            lambda: len(reader.of("eventpatterns-dlq")) == len(bad),
            timeout=30,
            message="every bad record in the DLQ",
        )
        dead = reader.of("eventpatterns-dlq")
        assert sorted(m.value for m in dead) == sorted(bad)
        reasons = [dict(m.headers)["reason"].decode() for m in dead]
        assert any("not JSON" in r for r in reasons)
        assert any("user_id" in r for r in reasons)
        assert any("too large" in r for r in reasons)
        expected = replay_records(COUNTING, good, workdir=tmp_path)
        wait_for_same_records(
            lambda: audit(reader),
            expected,
            timeout=30,
            what="the good events processed around the bad ones",
        )
        assert metric(worker, "eventpatterns_bad_events_total") == len(bad)
    finally:
        reader.close()
        worker.stop()


def _clicks(user: str, gender: str, age: int, start_ns: int) -> list[dict[str, Any]]:
    steps = [("clothing", "VD1"), ("shoes", "VD2"), ("clothing", "VD3")]
    return [
        {
            "timestamp": start_ns + i * 1_000_000_000,
            "userId": user,
            "category": c,
            "productId": p,
            "gender": gender,
            "age": age,
            "ip": "10.0.0.1",
        }
        for i, (c, p) in enumerate(steps)
    ]


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    """A Redis server of this test's own, so that it can be stopped mid-run."""
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (CI installs it)"
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port)
        wait_until(lambda: _pings(client), timeout=10, message="redis-server")
        return process

    holder = {"process": start()}
    yield port, holder, start
    holder["process"].kill()
    holder["process"].wait()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_redis_transition_log_and_redis_outage(
    broker: EmbeddedBroker, tmp_path: Path, own_redis: Any
) -> None:
    port, holder, start = own_redis
    worker = Worker(
        broker.url, CLICKSTREAM, tmp_path, EVENTPATTERNS_REDIS_URL=f"redis://127.0.0.1:{port}/0"
    ).start()
    reader = TopicReader(broker.bootstrap, "special-offers")
    client = redis.Redis(port=port, decode_responses=True)
    try:
        wait_ready(worker, broker.bootstrap)
        start_ns = 1_700_221_869_000_000_000
        run(
            produce(
                broker.bootstrap,
                "enriched-click-data",
                _clicks("sad-music-boxing", "F", 31, start_ns),
                user_key("userId"),
            )
        )
        wait_until(lambda: len(reader.of("special-offers")) == 1, timeout=30, message="offer2")
        assert orjson.loads(reader.of("special-offers")[0].value) == [
            {"Timestamp": start_ns + 2_000_000_000, "Tags": {}, "Id": "offer", "Value": "offer2"}
        ]
        entries = wait_until(
            lambda: client.xrange("eventpatterns:transitions"),
            timeout=10,
            message="transition log entries",
        )
        lines = [fields["line"] for _, fields in entries]
        assert "[User sad-music-boxing triggered offer offer2]" in lines
        assert any(
            line.startswith(
                "[User sad-music-boxing entered state met][Event: clicked VD3][Category: clothing]"
            )
            for line in lines
        )

        holder["process"].kill()
        holder["process"].wait()
        run(
            produce(
                broker.bootstrap,
                "enriched-click-data",
                _clicks("calm-river-delta", "M", 40, start_ns),
                user_key("userId"),
            )
        )
        wait_until(
            lambda: len(reader.of("special-offers")) == 2,
            timeout=30,
            message="an offer while Redis is down",
        )
        holder["process"] = start()
        run(
            produce(
                broker.bootstrap,
                "enriched-click-data",
                _clicks("brave-comet", "F", 28, start_ns),
                user_key("userId"),
            )
        )
        wait_until(lambda: len(reader.of("special-offers")) == 3, timeout=30, message="offer 3")
        # The writer reconnects: what was queued during the outage and the new entries arrive.
        wait_until(
            lambda: (
                {
                    "[User calm-river-delta triggered offer offer1]",
                    "[User brave-comet triggered offer offer2]",
                }
                <= {f["line"] for _, f in client.xrange("eventpatterns:transitions")}
            ),
            timeout=30,
            message="entries after Redis came back",
        )
    finally:
        reader.close()
        worker.stop()


OFFER = re.compile(rb'\[\{"Timestamp":\d{19},"Tags":\{\},"Id":"offer","Value":"offer[12]"\}\]')


def test_demo_runs_headless_and_produces_offers(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventpatterns.cli",
            "demo",
            "--duration",
            "30",
            "--no-tui",
            "--users",
            "60",
            "--rate",
            "150",
        ],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        env={
            **__import__("os").environ,
            "EVENTPATTERNS_WEB_PORT": str(free_port()),
            "EVENTPATTERNS_REDIS_URL": "",
        },
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    offers = [line for line in result.stdout.splitlines() if line.startswith(b"special-offers")]
    assert offers, result.stdout.decode()[-3000:]
    assert all(OFFER.search(line) for line in offers)
    assert b"entered state met" in result.stdout


def test_post_and_tail_commands(broker: EmbeddedBroker, tmp_path: Path) -> None:
    worker = Worker(broker.url, CLICKSTREAM, tmp_path).start()
    env = {
        **__import__("os").environ,
        "EVENTPATTERNS_BROKER": broker.url,
        "EVENTPATTERNS_PATTERNS": str(CLICKSTREAM),
        "EVENTPATTERNS_DATA_DIR": str(tmp_path),
    }
    try:
        wait_ready(worker, broker.bootstrap)
        posted = subprocess.run(
            [sys.executable, "-m", "eventpatterns.cli", "post", "examples/clickstream.jsonl"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert posted.returncode == 0, posted.stderr.decode()
        assert b"posted 14 record(s) to enriched-click-data" in posted.stderr
        tailed = subprocess.run(
            [
                sys.executable,
                "-m",
                "eventpatterns.cli",
                "tail",
                "special-offers",
                "--from-beginning",
                "--count",
                "2",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert tailed.returncode == 0, tailed.stderr.decode()
        text = tailed.stdout.decode()
        assert '"Value": "offer2"' in text and '"Value": "offer1"' in text
        assert "sad-music-boxing" in text and "calm-river-delta" in text
    finally:
        worker.stop()


def test_rocksdb_store_keeps_state_across_a_restart(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """The option for state larger than memory: Faust's RocksDB store through rocksdict."""
    reader = TopicReader(broker.bootstrap, ACTIONS)
    events = past_events(100, seed=5)
    half = len(events) // 2
    rocks = {"EVENTPATTERNS_STORE": "rocksdb://"}
    worker = Worker(broker.url, COUNTING, tmp_path, name="rocks", **rocks).start()
    try:
        wait_ready(worker, broker.bootstrap)
        run(produce(broker.bootstrap, "eventpatterns-events", events[:half], user_key()))
        first = replay_records(COUNTING, events[:half], workdir=tmp_path)
        wait_for_same_records(lambda: audit(reader), first, timeout=60, what="first half")
    finally:
        assert worker.stop() is not None
    assert any((tmp_path / "data-rocks").rglob("*.sst")) or any(
        (tmp_path / "data-rocks").rglob("CURRENT")
    ), "RocksDB files on disk"
    again = Worker(broker.url, COUNTING, tmp_path, name="rocks", **rocks).start()
    try:
        wait_ready(again, broker.bootstrap)
        run(produce(broker.bootstrap, "eventpatterns-events", events[half:], user_key()))
        expected = replay_records(COUNTING, events, workdir=tmp_path)
        wait_for_same_records(
            lambda: deduplicated(audit(reader)), expected, timeout=60, what="both halves"
        )
    finally:
        reader.close()
        again.stop()
