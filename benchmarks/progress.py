"""How a baseline app tells the benchmark how far it got: a small JSON file it rewrites.

    {"count": 123456, "first": 1795312345.12, "last": 1795312351.98, "outputs": 42}

`first` and `last` are the wall-clock times (time.time()) of the first and the
latest event processed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson


class Progress:
    """Counted by the app; written at most every `interval` seconds and on `write(force)`."""

    def __init__(
        self, path: str | os.PathLike[str], interval: float = 0.1, target: int = 0
    ) -> None:
        self.path = Path(path)
        self.interval = interval
        self.target = target
        """Also written as soon as the count reaches this (0: no target)."""
        self.count = 0
        self.outputs = 0
        self.first = 0.0
        self.last = 0.0
        self._written = 0.0

    def add(self, events: int, outputs: int = 0) -> None:
        now = time.time()
        if not self.count:
            self.first = now
        self.count += events
        self.outputs += outputs
        self.last = now
        if now - self._written >= self.interval or (
            self.target and self.count >= self.target > self.count - events
        ):
            self.write()

    def write(self) -> None:
        self._written = time.time()
        temporary = self.path.with_suffix(".tmp")
        temporary.write_bytes(
            orjson.dumps(
                {
                    "count": self.count,
                    "first": self.first,
                    "last": self.last,
                    "outputs": self.outputs,
                }
            )
        )
        temporary.replace(self.path)


def from_env() -> Progress:
    """BENCH_PROGRESS (the file) and BENCH_TARGET (events expected, optional)."""
    return Progress(os.environ["BENCH_PROGRESS"], target=int(os.environ.get("BENCH_TARGET", "0")))


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        value: dict[str, Any] = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {"count": 0, "first": 0.0, "last": 0.0, "outputs": 0}
    return value
