"""The Redis transition log, as the seed keeps it: each transition and offer, XADDed.

Writing never holds up event processing: records go into a bounded queue that
a background task flushes with pipelined `XADD ... MAXLEN ~`. While Redis is
down the worker goes on; what cannot be written is counted, and the writer
reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def transition_line(record: Mapping[str, Any], cause: Mapping[str, Any] | None) -> str:
    """`[User u-17 entered state met][Event: clicked VD55147564][Category: shoes]` (the seed's)."""
    line = f"[User {record['user_id']} entered state {record['to']}]"
    if cause is not None:
        attributes = cause.get("attributes") or {}
        product = attributes.get("productId")
        name = cause.get("event", "")
        verb = "clicked" if name == "click" else name
        line += f"[Event: {verb} {product}]" if product is not None else f"[Event: {verb}]"
        if "category" in attributes:
            line += f"[Category: {attributes['category']}]"
    line += f"[Pattern: {record['pattern']}]"
    return line


def offer_line(record: Mapping[str, Any]) -> str:
    """`[User u-17 triggered offer offer2]`."""
    return f"[User {record['user_id']} triggered offer {record.get('offer')}]"


class TransitionLog:
    """Background writer of transition/offer entries to one Redis stream."""

    def __init__(
        self,
        url: str,
        stream: str,
        maxlen: int = 100_000,
        queue_limit: int = 100_000,
        batch: int = 500,
    ) -> None:
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.batch = batch
        self.queue: deque[dict[str, str]] = deque(maxlen=queue_limit)
        self.written = 0
        self.failed = 0
        """Entries not written because Redis was unreachable or the queue overflowed."""
        self.connected = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None

    # -- what the agent calls (synchronous, never blocks)

    def add_transition(self, record: Mapping[str, Any], cause: Mapping[str, Any] | None) -> None:
        self._add(
            {
                "kind": "transition",
                "time": record["time"],
                "user_id": record["user_id"],
                "pattern": record["pattern"],
                "from": record["from"],
                "to": record["to"],
                "line": transition_line(record, cause),
            }
        )

    def add_offer(self, record: Mapping[str, Any]) -> None:
        self._add(
            {
                "kind": "offer",
                "time": record["time"],
                "user_id": record["user_id"],
                "pattern": record["pattern"],
                "offer": str(record.get("offer")),
                "line": offer_line(record),
            }
        )

    def _add(self, entry: dict[str, str]) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.failed += 1  # the oldest entry is pushed out
        self.queue.append(entry)
        self._wake.set()

    # -- lifecycle

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-transition-log")

    async def stop(self, flush_timeout: float = 2.0) -> None:
        if self._task is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._flush_all(), flush_timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()

    async def _flush_all(self) -> None:
        while self.queue and self.connected:
            await self._flush_once()

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                try:
                    await self._flush_once()
                    backoff = 0.2
                except (RedisError, OSError) as error:
                    if self.connected:
                        log.warning("Redis transition log unavailable: %s", error)
                    self.connected = False
                    self._client = None
                    await asyncio.sleep(backoff)  # backoff between reconnect attempts
                    backoff = min(backoff * 2, 5.0)

    async def _flush_once(self) -> None:
        if self._client is None:
            self._client = aioredis.from_url(
                self.url, socket_connect_timeout=1.0, socket_timeout=2.0
            )
        entries = [self.queue[i] for i in range(min(self.batch, len(self.queue)))]
        pipe = self._client.pipeline(transaction=False)
        for entry in entries:
            pipe.xadd(self.stream, entry, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        await pipe.execute()
        for _ in entries:
            self.queue.popleft()
        self.written += len(entries)
        if not self.connected:
            log.info("Redis transition log connected (%s)", self.stream)
        self.connected = True
