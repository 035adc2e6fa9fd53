"""Durable timers: APScheduler wakes the worker; what it fires is a record on a topic.

The source of truth for pending timers is each user's state in the
changelog-backed state table, whose stored value carries its earliest due
time in front (`processor.Envelope`). This module keeps only an index of what
is due for the users of the partitions this worker owns, and an APScheduler
`AsyncIOScheduler` job set to the earliest due time. When it fires, a tick
record keyed by user id goes to the timers topic, co-partitioned with the
events, and the agent applies it through the core: every state change happens
in the agent, in order, and lands in the changelog.

A tick that arrives twice takes effect once: the core runs only timers still
pending at or before the tick's due time.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

WAKE_JOB_ID = "eventpatterns-wake"
RETRY_US = 1_000_000
"""After a failed send, the next wake-up is at least this far away."""


@dataclass
class TimerIndex:
    """Earliest due time per user, for users of owned partitions. Pure and in memory."""

    _due: dict[str, int] = field(default_factory=dict)
    _partition: dict[str, int] = field(default_factory=dict)
    _heap: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._due)

    def set(self, user_id: str, partition: int, due: int | None) -> None:
        if due is None:
            self._due.pop(user_id, None)
            self._partition.pop(user_id, None)
            return
        if self._due.get(user_id) == due:
            return
        self._due[user_id] = due
        self._partition[user_id] = partition
        heapq.heappush(self._heap, (due, user_id))

    def load(self, entries: Iterable[tuple[str, int, int]]) -> None:
        """Add many (user, partition, due) at once: one heapify instead of a push each."""
        for user_id, partition, due in entries:
            self._due[user_id] = due
            self._partition[user_id] = partition
        self._heap = [(due, user_id) for user_id, due in self._due.items()]
        heapq.heapify(self._heap)

    def earliest(self) -> int | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: int) -> list[tuple[str, int, int]]:
        """(user, partition, due) of users due at or before `now`, removed from the index."""
        due_users = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due_users
            due, user_id = heapq.heappop(self._heap)
            del self._due[user_id]
            due_users.append((user_id, self._partition.pop(user_id), due))

    def drop_partitions(self, partitions: Iterable[int]) -> int:
        gone = set(partitions)
        users = [user for user, partition in self._partition.items() if partition in gone]
        for user in users:
            self.set(user, 0, None)
        return len(users)

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)


def now_us() -> int:
    return time.time_ns() // 1000


class TimerService:
    """Hosts APScheduler in the worker; sends a tick per due user through `send_tick`.

    `send_tick` only buffers the record (it must not block): a wake-up then runs
    in one step of the event loop, so wake-ups never overlap and none is lost.
    """

    def __init__(
        self,
        send_tick: Callable[[str, int], None],
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.index = TimerIndex()
        self.send_tick = send_tick
        self.clock = clock
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.alarm_at: int | None = None
        self.ticks_sent = 0

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def update(self, user_id: str, partition: int, due: int | None) -> None:
        """The user's earliest pending timer is now `due` (None: none)."""
        self.index.set(user_id, partition, due)
        self._wake_by(due)

    def load(self, entries: Iterable[tuple[str, int, int]]) -> None:
        """Index many (user, partition, due) at once, as recovered after a rebalance."""
        self.index.load(entries)
        self._wake_by(self.index.earliest())

    def _wake_by(self, due: int | None) -> None:
        """Bring the alarm forward to `due` unless it already rings by then."""
        if due is not None and (
            self.alarm_at is None or due < self.alarm_at or self.alarm_at < self.clock()
        ):
            self._set_alarm(due)

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        dropped = self.index.drop_partitions(partitions)
        if dropped:
            log.info("timer index: dropped %d users of revoked partitions", dropped)

    def _set_alarm(self, due: int) -> None:
        self.alarm_at = due
        run_at = datetime.fromtimestamp(max(due, self.clock()) / 1_000_000, tz=UTC)
        self.scheduler.add_job(
            self._wake,
            "date",
            run_date=run_at,
            id=WAKE_JOB_ID,
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
            max_instances=1000,
        )

    async def _wake(self) -> None:
        self.wake()

    def wake(self) -> None:
        """Send the ticks of every user now due, and set the alarm for the next one."""
        self.alarm_at = None
        now = self.clock()
        retry = False
        for user_id, partition, due in self.index.pop_due(now):
            try:
                self.send_tick(user_id, due)
                self.ticks_sent += 1
            except Exception:  # the user goes back in the index and is retried
                log.exception("could not send the timer tick of %s", user_id)
                self.index.set(user_id, partition, due)
                retry = True
        following = self.index.earliest()
        if following is not None:
            self._set_alarm(max(following, now + RETRY_US) if retry else following)
