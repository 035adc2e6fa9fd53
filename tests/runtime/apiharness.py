"""Worker subprocesses on an embedded broker, and a small HTTP client, for the API tests."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).parent
PATTERNS = HERE / "api_patterns.yaml"
ROOT = HERE.parent.parent

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float, message: str = "", interval: float = 0.2
) -> T:
    """Poll `predicate` until it returns something truthy (returned), or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, http.client.HTTPException, AssertionError, KeyError, ValueError) as error:
            last_error = error
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {message or predicate!r}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)

    @property
    def text(self) -> str:
        return self.raw.decode()


@dataclass
class Worker:
    name: str
    broker_url: str
    data_dir: Path
    patterns: Path = PATTERNS
    token: str | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def id(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "EVENTPATTERNS_BROKER": self.broker_url,
            "EVENTPATTERNS_PATTERNS": str(self.patterns),
            "EVENTPATTERNS_DATA_DIR": str(self.data_dir),
            "EVENTPATTERNS_WEB_PORT": str(self.port),
            "EVENTPATTERNS_WEB_HOST": "127.0.0.1",
            "EVENTPATTERNS_REDIS_URL": "",
            "EVENTPATTERNS_LOG_LEVEL": "warning",
        }
        env.pop("EVENTPATTERNS_API_TOKEN", None)
        if self.token:
            env["EVENTPATTERNS_API_TOKEN"] = self.token
        return env

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "worker.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eventpatterns.worker"],
            env=self.env(),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------ HTTP

    def headers(self, auth: bool = True) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        timeout: float = 20.0,
    ) -> Answer:
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(
                method, path, body=body, headers={**self.headers(auth), **(headers or {})}
            )
            response = connection.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def get(self, path: str, **options: Any) -> Answer:
        return self.call("GET", path, **options)

    def post(self, path: str, body: Any = None, **options: Any) -> Answer:
        return self.call("POST", path, body, **options)

    def status(self) -> dict[str, Any]:
        answer = self.get("/v1/status")
        assert answer.status == 200, answer.raw
        return dict(answer.body)

    def post_events(self, events: list[dict[str, Any]]) -> None:
        answer = self.post("/v1/events", events)
        assert answer.status == 202, answer.raw
        assert answer.body["accepted"] == len(events)


def metric(worker: Worker, name: str) -> float:
    """Sum of a metric's samples (all labels) from /metrics."""
    text = worker.get("/metrics", auth=False).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list[tuple[bytes, bytes]]:
    """Every (key, value) on the topic now, from the beginning."""

    async def read() -> list[tuple[bytes, bytes]]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer.topics()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[tuple[bytes, bytes]] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(
                [await consumer.position(tp) < ends[tp] for tp in tps]
            ):
                batches = await consumer.getmany(*tps, timeout_ms=300)
                for messages in batches.values():
                    out.extend((m.key, m.value) for m in messages)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


def audit_records(
    bootstrap: str, actions_topic: str = "eventpatterns-actions"
) -> list[dict[str, Any]]:
    return [json.loads(value) for _, value in read_topic(bootstrap, actions_topic)]
