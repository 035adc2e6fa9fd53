"""Child processes of the end-to-end benchmark: workers and baselines, and what they use.

A `Child` is one subprocess (an eventpatterns worker, the bare Faust agent or the
quixstreams app) with its log file, its CPU time and resident memory (psutil), and
how far it got (`count()`: the worker's `eventpatterns_events_total`, or a baseline's
progress file).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import progress

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    count: Callable[[], int] = field(default=lambda: 0)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def ps(self) -> psutil.Process:
        assert self.process is not None
        return psutil.Process(self.process.pid)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited early; its log ends with:\n{self.log_tail()}")

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def kill(self) -> None:
        """End it at once, once its figures are taken.

        A graceful stop costs a worker a second (Faust's shutdown) and measures
        nothing: every child has topics and a consumer group of its own.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def worker(
    name: str,
    broker_url: str,
    patterns: Path,
    workdir: Path,
    app_id: str,
    extra: Mapping[str, str] | None = None,
    module: str = "eventpatterns.worker",
) -> Child:
    """An eventpatterns worker whose topics and tables are all its own (named after app_id).

    `module` may be benchmarks.tuned_worker, with its variables in `extra`.
    """
    port = free_port()
    env = {
        **os.environ,
        "EVENTPATTERNS_BROKER": broker_url,
        "EVENTPATTERNS_PATTERNS": str(patterns),
        "EVENTPATTERNS_APP_ID": app_id,
        "EVENTPATTERNS_DATA_DIR": str(workdir / f"data-{app_id}"),
        "EVENTPATTERNS_WEB_PORT": str(port),
        "EVENTPATTERNS_REDIS_URL": "",
        "EVENTPATTERNS_LOG_LEVEL": "warning",
        "EVENTPATTERNS_EVENTS_TOPIC": f"{app_id}-events",
        "EVENTPATTERNS_TIMERS_TOPIC": f"{app_id}-timers",
        "EVENTPATTERNS_ACTIONS_TOPIC": f"{app_id}-actions",
        "EVENTPATTERNS_DLQ_TOPIC": f"{app_id}-dlq",
        "EVENTPATTERNS_HISTORY_TOPIC": f"{app_id}-history",
        "EVENTPATTERNS_DEFINITIONS_TOPIC": f"{app_id}-definitions",
        **(extra or {}),
    }
    url = f"http://127.0.0.1:{port}"
    child = Child(
        name,
        [sys.executable, "-m", module],
        env,
        workdir / f"{app_id}.log",
    )
    child.count = lambda: int(metric(url, "eventpatterns_events_total"))
    return child


def baseline(
    name: str, module: str, workdir: Path, env: Mapping[str, str], target: int = 0
) -> Child:
    progress_path = workdir / f"{name}.progress.json"
    with contextlib.suppress(FileNotFoundError):
        progress_path.unlink()
    child = Child(
        name,
        [sys.executable, "-m", module],
        {
            **os.environ,
            "BENCH_PROGRESS": str(progress_path),
            "BENCH_TARGET": str(target),
            **env,
        },
        workdir / f"{name}.log",
    )
    child.count = lambda: int(progress.read(progress_path)["count"])
    return child


def metric(url: str, name: str) -> float:
    """A counter or gauge summed over its labels, from a worker's /metrics (0: unreachable)."""
    value = scraped(url, name)
    return 0.0 if value is None else value


def scraped(url: str, name: str) -> float | None:
    """`metric`, or None while the worker's web server does not answer (yet)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total


def worker_url(child: Child) -> str:
    return f"http://127.0.0.1:{child.env['EVENTPATTERNS_WEB_PORT']}"
