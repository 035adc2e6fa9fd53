"""Real embedded broker, real worker processes, and readers of what they produce.

Nothing here is a mock: workers are `python -m eventpatterns.worker`
subprocesses on a Tansu broker, and tests wait on conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, message: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class Worker:
    """One `eventpatterns.worker` subprocess."""

    def __init__(
        self,
        broker_url: str,
        patterns: str | Path,
        workdir: Path,
        name: str = "w",
        module: str = "eventpatterns.worker",
        **env: str,
    ) -> None:
        """`module`: what runs the worker (tests/runtime/faulty_worker.py injects faults)."""
        self.module = module
        self.web_port = free_port()
        self.log_path = workdir / f"{name}.log"
        self.env = {
            **os.environ,
            "EVENTPATTERNS_BROKER": broker_url,
            "EVENTPATTERNS_PATTERNS": str(patterns),
            "EVENTPATTERNS_DATA_DIR": str(workdir / f"data-{name}"),
            "EVENTPATTERNS_WEB_PORT": str(self.web_port),
            "EVENTPATTERNS_LOG_LEVEL": "info",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[bytes | dict[str, Any]],
    key: Callable[[Any], bytes | None] | None = None,
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    deliveries = []
    try:
        for record in records:
            value = record if isinstance(record, bytes) else orjson.dumps(record)
            deliveries.append(await producer.send(topic, value, key=key(record) if key else None))
        # A failed send fails its future, not flush(): wait for every one.
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    return len(deliveries)


def user_key(field: str = "user_id") -> Callable[[Any], bytes | None]:
    def key(record: Any) -> bytes | None:
        if isinstance(record, dict) and isinstance(record.get(field), str):
            return str(record[field]).encode()
        return None

    return key


class TopicReader:
    """Collects every record of some topics, from the beginning, in a background thread."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.messages: list[Any] = []
        self._stop = False
        import threading

        self._thread = threading.Thread(target=lambda: asyncio.run(self._read()), daemon=True)
        self._thread.start()

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=1000,
        )
        await consumer.start()
        try:
            while not self._stop:
                batches = await consumer.getmany(timeout_ms=200)
                for messages in batches.values():
                    self.messages.extend(messages)
        finally:
            await consumer.stop()

    def values(self, topic: str) -> list[Any]:
        return [orjson.loads(m.value) for m in list(self.messages) if m.topic == topic]

    def of(self, topic: str) -> list[Any]:
        return [m for m in list(self.messages) if m.topic == topic]

    def close(self) -> None:
        self._stop = True
        self._thread.join(10)


def audit_key(record: dict[str, Any]) -> bytes:
    """An audit record without the runtime's id and version: comparable with replay output."""
    return orjson.dumps(
        {k: v for k, v in record.items() if k not in ("id", "version")}, option=orjson.OPT_SORT_KEYS
    )


def replay_records(
    patterns: str | Path,
    events: list[dict[str, Any]],
    drain: bool = True,
    workdir: Path | None = None,
) -> list[dict[str, Any]]:
    """What `eventpatterns replay` says for these events."""
    events_file = (workdir or Path("/tmp")) / f"events-{os.getpid()}-{time.monotonic_ns()}.jsonl"
    events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    try:
        command = [
            sys.executable,
            "-m",
            "eventpatterns.cli",
            "replay",
            str(patterns),
            str(events_file),
        ]
        if drain:
            command.append("--drain")
        output = subprocess.run(command, check=True, capture_output=True, cwd=REPO).stdout
    finally:
        with contextlib.suppress(OSError):
            events_file.unlink()
    return [orjson.loads(line) for line in output.splitlines()]


def metric(worker: Worker, name: str) -> float:
    """A counter or gauge from the worker's /metrics (0 when absent or unreachable)."""
    from benchmarks.procs import metric as scrape

    return scrape(worker.url, name)


def wait_ready(worker: Worker, bootstrap: str, timeout: float = 60) -> None:
    """Until the worker has applied an event: partitions assigned and the agent running."""
    from benchmarks.procs import scraped

    markers = [f"warmup-{worker.web_port}-{n}" for n in range(16)]  # reach every partition

    def alive() -> None:
        if worker.process is not None and worker.process.poll() is not None:
            raise AssertionError(f"worker exited early:\n{worker.log()[-3000:]}")

    def answering() -> bool:
        alive()
        return scraped(worker.url, "eventpatterns_events_total") is not None

    def applied() -> bool:
        alive()
        return metric(worker, "eventpatterns_events_total") >= 1

    # Not before it answers: its topics exist by then (the broker would make the
    # events topic itself, with its own partition count).
    wait_until(answering, timeout=timeout, message="the worker's web server")
    deadline = time.monotonic() + timeout
    while True:
        run(
            produce(
                bootstrap,
                "eventpatterns-events",
                [{"user_id": marker, "event": "warmup"} for marker in markers],
                user_key(),
            )
        )
        try:
            wait_until(applied, timeout=3, message="the warm-up event")
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready:\n{worker.log()[-3000:]}") from None


def future_events(
    users: int,
    seed: int,
    start_in: float = 6.0,
    span: float = 5.0,
    per_user: tuple[int, int] = (4, 12),
) -> list[dict[str, Any]]:
    """Events for the mixed patterns, timed a little in the future.

    Event times after the wall clock make the runtime see every event of a user
    before any of that user's timers can come due by the wall clock, so timers
    interleave with events exactly as in `replay`.
    """
    import random

    rng = random.Random(seed)
    base = time.time_ns() // 1000 + int(start_in * 1_000_000)
    events = []
    for number in range(users):
        user = f"u{seed}-{number}"
        times = sorted(
            base + rng.randrange(int(span * 1_000_000)) for _ in range(rng.randint(*per_user))
        )
        for moment in times:
            name = rng.choice(("view", "view", "view", "cart", "buy"))
            attributes: dict[str, Any] = {
                "sku": f"s{rng.randint(1, 3)}",
                "category": rng.choice(("shoes", "bags")),
            }
            if name == "buy":
                attributes["amount"] = rng.choice((10, 30, 60, "n/a"))
            events.append(
                {
                    "user_id": user,
                    "event": name,
                    "timestamp": _iso(moment),
                    "attributes": attributes,
                }
            )
    events.sort(key=lambda e: e["timestamp"])
    return events


def _iso(micros: int) -> str:
    from eventpatterns.core.timeutil import format_us

    return format_us(micros)


def wait_for_same_records(
    actual: Callable[[], list[dict[str, Any]]],
    expected: list[dict[str, Any]],
    timeout: float,
    what: str = "records",
) -> None:
    """Until `actual()` holds exactly the records of `expected` (ignoring id and version).

    On timeout the error lists what is missing and what is extra.
    """
    from collections import Counter

    want = Counter(audit_key(r) for r in expected)
    last: Counter[bytes] = Counter()

    def same() -> bool:
        nonlocal last
        last = Counter(audit_key(r) for r in actual())
        return last == want

    try:
        wait_until(same, timeout=timeout, message=what)
    except AssertionError:
        missing, extra = want - last, last - want
        lines = [
            f"{what}: {sum(last.values())} of {sum(want.values())}",
            f"missing {sum(missing.values())}:",
            *(k.decode() for k in list(missing)[:10]),
            f"extra {sum(extra.values())}:",
            *(k.decode() for k in list(extra)[:10]),
        ]
        raise AssertionError("\n".join(lines)) from None
