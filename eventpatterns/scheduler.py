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
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

WAKE_JOB_ID = "eventpatterns-wake"
RETRY_US = 1_000_000
"""After a failed send, the next wake-up is at least this far away."""
TICK_RETRY_US = 60_000_000
"""A tick sent is sent again this long after, unless the user's state was applied
meanwhile (`update_all`): a tick lost on its way is not a timer lost."""


COMPACT_SLACK = 1024
"""Stale heap entries tolerated beyond one per user before the heap is rebuilt."""


@dataclass
class TimerIndex:
    """Earliest due time per user, for users of owned partitions. Pure and in memory.

    Users are keyed as the state store keys them (bytes in a worker), so that
    the index of a million recovered users shares their keys with the store;
    a user's partition is the store's to tell (`TimerService.forget_partitions`).
    """

    _due: dict[Hashable, int] = field(default_factory=dict)
    _heap: list[tuple[int, Hashable]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._due)

    def set(self, user: Hashable, due: int | None) -> None:
        if due is None:
            self._due.pop(user, None)
            return
        if self._due.get(user) == due:
            return
        self._due[user] = due
        heapq.heappush(self._heap, (due, user))
        if len(self._heap) > 2 * len(self._due) + COMPACT_SLACK:
            self._compact()

    def _compact(self) -> None:
        """The heap rebuilt from the current entries.

        A rescheduled user's old entry stays in the heap until it comes to the
        top, which for a timer hours away is hours: a rolling window moved by
        every event would grow the heap by an entry per event meanwhile.
        """
        self._heap = [(due, user) for user, due in self._due.items()]
        heapq.heapify(self._heap)

    def load(self, entries: Iterable[tuple[Hashable, int]]) -> None:
        """Add many (user, due) at once: one heapify instead of a push each."""
        self._due.update(entries)
        self._compact()

    def earliest(self) -> int | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: int) -> list[tuple[Hashable, int]]:
        """(user, due) of users due at or before `now`, removed from the index."""
        due_users = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due_users
            due, user = heapq.heappop(self._heap)
            del self._due[user]
            due_users.append((user, due))

    def drop(self, leaving: Callable[[Hashable], bool]) -> int:
        """Forget the users for which `leaving(user)` holds; how many they were."""
        users = [user for user in self._due if leaving(user)]
        for user in users:
            del self._due[user]
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
        send_tick: Callable[[Any, int], None],
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

    def update(self, user: Hashable, due: int | None) -> None:
        """The user's earliest pending timer is now `due` (None: none)."""
        self.index.set(user, due)
        self._wake_by(due)

    def update_all(self, entries: Iterable[tuple[Hashable, int | None]]) -> None:
        """`update` for each of a batch's users, with the alarm moved at most once."""
        earliest: int | None = None
        for user, due in entries:
            self.index.set(user, due)
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        self._wake_by(earliest)

    def load(self, entries: Iterable[tuple[Hashable, int]]) -> None:
        """Index many (user, due) at once, as recovered after a rebalance."""
        self.index.load(entries)
        self._wake_by(self.index.earliest())

    def _wake_by(self, due: int | None) -> None:
        """Bring the alarm forward to `due` unless it already rings by then.

        An alarm past its time has not rung: the event loop has not got to it, or
        it was lost (APScheduler skips a run it finds busy). It is set again for
        the earliest user due, at once; set for `due`, a later time, it would put
        off the ticks of the users due already.
        """
        if due is None:
            return
        if self.alarm_at is not None and self.alarm_at < self.clock():
            earliest = self.index.earliest()
            self._set_alarm(due if earliest is None else min(due, earliest))
        elif self.alarm_at is None or due < self.alarm_at:
            self._set_alarm(due)

    def forget_partitions(
        self, partitions: Iterable[int], partition_of: Callable[[Any], int]
    ) -> None:
        gone = set(partitions)
        dropped = self.index.drop(lambda user: partition_of(user) in gone)
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
        for user, due in self.index.pop_due(now):
            try:
                self.send_tick(user, due)
                self.ticks_sent += 1
            except Exception:  # the user goes back in the index and is retried
                log.exception("could not send the timer tick of %r", user)
                self.index.set(user, due)
                retry = True
            else:
                # `send_tick` only buffers the record, whose produce may still fail:
                # the user stays indexed until the tick's batch applies its state
                self.index.set(user, now + TICK_RETRY_US)
        following = self.index.earliest()
        if following is not None:
            self._set_alarm(max(following, now + RETRY_US) if retry else following)
