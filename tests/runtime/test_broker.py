"""Integration tests for the embedded Tansu broker and Faust-on-Tansu.

Everything here runs a real ``tansu`` child process (no mocks). Faust workers run as
subprocesses (``python -m <module> worker --without-web``), the way the project's
integration tests are expected to run them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from eventpatterns.broker import (
    BrokerError,
    BrokerStartError,
    EmbeddedBroker,
    acreate_topics,
    broker_from_env,
    create_topics,
    to_bootstrap,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------
# Condition polling (never a bare sleep standing in for a condition)
# --------------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


# --------------------------------------------------------------------------------------
# Pure configuration helpers (no broker)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("kafka://h:9092", "kafka://h:9092"),
        (" kafka://h:9093/ ", "kafka://h:9093"),
        ("h:9092,h2:9093", "kafka://h:9092;kafka://h2:9093"),
        ("h,h2", "kafka://h:9092;kafka://h2:9092"),
        ("aiokafka://h;h2:1", "kafka://h:9092;kafka://h2:1"),
        ("kafka://a:1,kafka://b:2", "kafka://a:1;kafka://b:2"),
        ("[::1]:9092", "kafka://[::1]:9092"),
    ],
)
def test_broker_from_env(value: str | None, expected: str | None) -> None:
    assert broker_from_env(value) == expected


@pytest.mark.parametrize("bad", ["http://h:9092", "h:notaport", "kafka://:9092"])
def test_broker_from_env_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        broker_from_env(bad)


def test_to_bootstrap() -> None:
    assert to_bootstrap("kafka://a:1;kafka://b") == "a:1,b:9092"
    assert to_bootstrap("127.0.0.1:5") == "127.0.0.1:5"


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="not an executable"):
        EmbeddedBroker(binary=str(tmp_path / "nope")).start()


def test_failed_start_reports_last_log_lines(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'first line'\necho 'boom: cannot start' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerStartError) as info:
        EmbeddedBroker(binary=str(fake), port=_free_port()).start()
    message = str(info.value)
    assert "exited with code 3" in message
    assert "boom: cannot start" in message


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------
# EmbeddedBroker against the real binary
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.mark.integration
async def test_start_produce_consume_stop() -> None:
    started = time.monotonic()
    with EmbeddedBroker() as b:
        ready_after = time.monotonic() - started
        assert b.running and b.pid is not None
        assert b.bootstrap == f"127.0.0.1:{b.port}"
        assert b.url == f"kafka://127.0.0.1:{b.port}"
        assert ready_after < 5, ready_after
        await acreate_topics(b.bootstrap, {"greetings": 1})

        producer = AIOKafkaProducer(bootstrap_servers=b.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("greetings", b"hello", key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            "greetings", bootstrap_servers=b.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 10)
        finally:
            await consumer.stop()
        assert (record.key, record.value) == (b"k", b"hello")
        pid, port = b.pid, b.port
    assert not b.running
    assert pid_gone(pid) and port_closed(port)
    assert "listening on" in b.log_tail()  # still readable after stop


@pytest.mark.integration
async def test_async_context_manager() -> None:
    async with EmbeddedBroker() as b:
        assert b.running
        pid = b.pid
    assert pid is not None and pid_gone(pid)


@pytest.mark.integration
def test_port_in_use_is_a_clear_error(broker: EmbeddedBroker) -> None:
    with pytest.raises(BrokerStartError, match="already in use"):
        EmbeddedBroker(port=broker.port).start()


@pytest.mark.integration
async def test_create_topics_idempotent_and_compacted(broker: EmbeddedBroker) -> None:
    topics = {"ct-events": 3, "ct-state": 2}
    assert await acreate_topics(broker.url, topics, {"ct-state"}) == {
        "ct-events": True,
        "ct-state": True,
    }
    # Second call is a no-op; also works from inside a running loop (sync wrapper).
    assert create_topics(broker.bootstrap, topics, {"ct-state"}) == {
        "ct-events": False,
        "ct-state": False,
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        described = {
            t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(list(topics))
        }
        assert described == topics
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, "ct-state")]
        )
        configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
        assert configs.get("cleanup.policy") == "compact"
    finally:
        await admin.close()


@pytest.mark.integration
async def test_tansu_auto_creates_unknown_topics(broker: EmbeddedBroker) -> None:
    """Quirk: a metadata request for an unknown topic creates it (4 partitions)."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        partitions = await asyncio.wait_for(producer.partitions_for("never-declared"), 10)
    finally:
        await producer.stop()
    assert partitions == {0, 1, 2, 3}


@pytest.mark.integration
def test_broker_started_from_short_lived_thread_survives_the_thread() -> None:
    """PDEATHSIG fires when the forking *thread* exits; the module must cope."""
    b = EmbeddedBroker()
    thread = threading.Thread(target=b.start)
    thread.start()
    thread.join()
    try:
        # Without the module's spawner thread the kernel SIGKILLs the child within
        # milliseconds of the thread's exit; make sure that does not happen.
        with pytest.raises(AssertionError):
            wait_until(lambda: not b.running, timeout=1.0, what="an unexpected death")
        assert not port_closed(b.port)
    finally:
        b.stop()


PARENT_SCRIPT = """
import os, sys, time
sys.path.insert(0, {root!r})
from eventpatterns.broker import EmbeddedBroker
b = EmbeddedBroker(log_path=os.devnull).start()  # a SIGKILLed parent cannot clean up
print(b.pid, b.port, flush=True)
time.sleep(120)
"""


@pytest.mark.integration
def test_child_dies_when_parent_is_sigkilled() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT.format(root=str(REPO_ROOT))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()  # the parent prints once the broker is ready
        assert line, "parent exited before starting the broker"
        tansu_pid, port = map(int, line.split())
        assert not pid_gone(tansu_pid) and not port_closed(port)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait_until(lambda: pid_gone(tansu_pid), timeout=5, what="tansu to die")
        wait_until(lambda: port_closed(port), timeout=5, what="port to close")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# --------------------------------------------------------------------------------------
# Faust on Tansu: worker subprocesses, table changelog recovery, group rebalancing
# --------------------------------------------------------------------------------------

FAUST_APP = """
import os

import faust

E = os.environ.get
app = faust.App(
    E("EP_APP_ID"),
    broker=E("EP_BROKER"),
    store="memory://",
    datadir=E("EP_DATADIR"),
    web_enabled=False,  # the `worker` CLI overrides this: pass --without-web too
    topic_partitions=4,
    topic_replication_factor=1,
    table_standby_replicas=0,
    broker_session_timeout=1.0,
    broker_heartbeat_interval=0.1,
    broker_rebalance_timeout=1.0,
    broker_commit_interval=0.5,
    stream_wait_empty=False,
    producer_linger=0.0,
)
events = app.topic("events", key_type=str, value_serializer="json")
out = app.topic("out", key_type=str, value_serializer="json")
counts = app.Table("counts", default=int)


@app.agent(events)
async def process(stream):
    async for event in stream.events():
        counts[event.key] += 1
        await out.send(
            key=event.key,
            value={
                "key": event.key,
                "count": counts[event.key],
                "seq": event.value["seq"],
                "pid": os.getpid(),
                "partition": event.message.partition,
            },
        )


if __name__ == "__main__":
    app.main()
"""


class FaustHarness:
    """Faust worker subprocesses plus a producer/collector on the test's side."""

    def __init__(self, broker: EmbeddedBroker, tmp_path: Path) -> None:
        self.broker = broker
        self.dir = tmp_path
        self.app_id = f"ep-test-{uuid.uuid4().hex[:8]}"
        (tmp_path / "ep_faust_app.py").write_text(textwrap.dedent(FAUST_APP))
        (tmp_path / "data").mkdir()
        self.workers: list[subprocess.Popen[bytes]] = []
        self.outputs: list[dict[str, Any]] = []
        self.seq = 0

    def spawn_worker(self, name: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.dir), str(REPO_ROOT)]),
            "EP_APP_ID": self.app_id,
            "EP_BROKER": self.broker.url,
            "EP_DATADIR": str(self.dir / "data" / name),
        }
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - child owns a copy
        with log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ep_faust_app", "worker", "-l", "info", "--without-web"],
                cwd=self.dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.workers.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")[-3000:]

    def ready(self, name: str) -> bool:
        return "Worker ready" in (self.dir / f"{name}.log").read_text(errors="replace")

    async def __aenter__(self) -> FaustHarness:
        await acreate_topics(self.broker.bootstrap, {"events": 4, "out": 4})
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.broker.bootstrap,
            key_serializer=str.encode,
            value_serializer=lambda v: json.dumps(v).encode(),
        )
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            "out", bootstrap_servers=self.broker.bootstrap, auto_offset_reset="earliest"
        )
        await self.consumer.start()
        self._collector = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        async for record in self.consumer:
            self.outputs.append(json.loads(record.value))

    async def __aexit__(self, *exc: object) -> None:
        self._collector.cancel()
        await self.consumer.stop()
        await self.producer.stop()
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    async def send(self, key: str, partition: int | None = None) -> int:
        self.seq += 1
        await self.producer.send_and_wait("events", {"seq": self.seq}, key=key, partition=partition)
        return self.seq

    def output(self, seq: int) -> dict[str, Any] | None:
        return next((o for o in self.outputs if o["seq"] == seq), None)

    @staticmethod
    async def stop_worker(proc: subprocess.Popen[bytes]) -> int:
        proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(proc.wait, 20)


@pytest.mark.integration
async def test_faust_agent_table_and_changelog_recovery(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    async with FaustHarness(broker, tmp_path) as h:
        t0 = time.monotonic()
        first = h.spawn_worker("w1")
        seq = await h.send("alice")
        out = await async_wait_until(lambda: h.output(seq), 20, what="first output")
        first_latency = time.monotonic() - t0
        assert out["count"] == 1
        assert await h.stop_worker(first) == 0, h.log("w1")

        # A fresh worker process rebuilds the table from the changelog topic. The
        # event goes once it is ready: stock faust-streaming resumes its stream
        # partitions before seeking them and may drop what it fetched in between
        # (the worker's own faustpatches.seek_before_fetching_streams fixes that).
        t0 = time.monotonic()
        h.spawn_worker("w2")
        await async_wait_until(lambda: h.ready("w2"), 20, what="w2 ready")
        seq = await h.send("alice")
        out = await async_wait_until(lambda: h.output(seq), 20, what="output after restart")
        restart_latency = time.monotonic() - t0
        assert out["count"] == 2, h.log("w2")

        # Faust declared the changelog itself, compacted.
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            [resp] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, f"{h.app_id}-counts-changelog")]
            )
        finally:
            await admin.close()
        configs = {entry[0]: entry[1] for entry in resp.resources[0][4]}
        assert configs.get("cleanup.policy") == "compact"
        print(f"\nfaust first message {first_latency:.2f}s, after restart {restart_latency:.2f}s")
        assert first_latency < 15 and restart_latency < 15


@pytest.mark.integration
async def test_faust_two_workers_split_partitions_and_survivor_takes_over(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    async with FaustHarness(broker, tmp_path) as h:
        survivor = h.spawn_worker("a")
        seq = await h.send("warmup")
        await async_wait_until(lambda: h.output(seq), 20, what="first worker ready")
        victim = h.spawn_worker("b")

        async def both_workers_active() -> bool:
            # One message per partition each round; new rounds until both pids answer.
            seqs = [await h.send(f"p{p}", partition=p) for p in range(4)]
            try:
                await async_wait_until(lambda: all(map(h.output, seqs)), 5)
            except AssertionError:
                # faust-streaming may drop a message fetched across a rebalance
                # (stale generation_id): just try another round.
                return False
            pids = {o["pid"] for o in h.outputs if o["seq"] >= seqs[0]}
            return pids == {survivor.pid, victim.pid}

        t0 = time.monotonic()
        await async_wait_until(both_workers_active, 30, interval=0.1, what="partition split")
        join_time = time.monotonic() - t0

        victim.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.wait, 5)
        t0 = time.monotonic()

        async def survivor_serves_all_partitions() -> bool:
            seqs = [await h.send(f"p{p}", partition=p) for p in range(4)]
            try:
                outs = await async_wait_until(
                    lambda: [h.output(s) for s in seqs] if all(map(h.output, seqs)) else None, 2
                )
            except AssertionError:
                return False  # the dead worker's partitions are not re-assigned yet
            return {o["pid"] for o in outs} == {survivor.pid}

        await async_wait_until(
            survivor_serves_all_partitions, 30, interval=0.1, what="survivor takeover"
        )
        takeover_time = time.monotonic() - t0
        print(f"\nfaust 2nd worker joined in {join_time:.2f}s, takeover {takeover_time:.2f}s")
        assert survivor.poll() is None, h.log("a")
        assert await h.stop_worker(survivor) == 0
