"""Per-user state: a compact, versioned value that round-trips through bytes.

The runtime keeps it in a changelog-backed table, so it must be small, plain
data (lists, dicts, numbers, strings) and survive `encode`/`decode` exactly.
"""

from __future__ import annotations

import heapq
from typing import Any

import orjson

from .expressions import MISSING

FORMAT_VERSION = 1

NOT_MET = 0
MET = 1
SUSPENDED = 2
STATUS_NAMES = ("not_met", "met", "suspended")

# Timer kinds.
TIMER_ACTION = "action"
TIMER_CHECKPOINT = "checkpoint"
TIMER_EXTENSION_END = "extension_end"
TIMER_SUSPENSION_END = "suspension_end"

Timer = list[Any]
"""[due, timer_id, kind, pattern_id, fingerprint, payload]: a heap entry, ordered by due, id."""


class StateFormatError(ValueError):
    """Bytes that are not a state this version can read."""


class PatternState:
    """One (user, pattern) pair (SPEC section 4)."""

    __slots__ = (
        "dropped",
        "fingerprint",
        "last_value",
        "occurrences",
        "runs",
        "status",
        "suspended_until",
    )

    def __init__(
        self,
        fingerprint: str,
        status: int,
        occurrences: list[list[Any]],
        runs: list[list[Any]],
        last_value: Any,
        suspended_until: int | None,
        dropped: int,
    ) -> None:
        self.fingerprint = fingerprint
        self.status = status
        self.occurrences = occurrences
        """Per composing event. Windowed: [[time, seq, value...], ...] oldest first.
        Unbounded: [count, first_time, last_time, sum, min, max (per aggregated attribute)...]."""
        self.runs = runs
        """Sequence partial matches:
        [steps_matched, start_time, start_seq, last_time, last_seq, bound]."""
        self.last_value = last_value
        """For ignore_repeats: the previous composing event's value (MISSING: none)."""
        self.suspended_until = suspended_until
        self.dropped = dropped
        """Partial matches or occurrences dropped by the caps (documented limits)."""

    @classmethod
    def new(cls, fingerprint: str, steps: int) -> PatternState:
        """A pattern's state before any event."""
        return cls(fingerprint, NOT_MET, [[] for _ in range(steps)], [], MISSING, None, 0)

    def clear_occurrences(self) -> None:
        for index in range(len(self.occurrences)):
            self.occurrences[index] = []
        self.runs = []

    def has_occurrences(self) -> bool:
        return any(self.occurrences)

    def to_wire(self) -> list[Any]:
        missing = self.last_value is MISSING
        return [
            self.fingerprint,
            self.status,
            self.occurrences,
            self.runs,
            0 if missing else 1,
            None if missing else self.last_value,
            self.suspended_until,
            self.dropped,
        ]

    @classmethod
    def from_wire(cls, wire: list[Any]) -> PatternState:
        fingerprint, status, occurrences, runs, has_last, last_value, until, dropped = wire
        last = last_value if has_last else MISSING
        return cls(fingerprint, status, occurrences, runs, last, until, dropped)


class UserState:
    """Everything the engine knows about one user."""

    __slots__ = (
        "clock",
        "next_timer_id",
        "patterns",
        "profile",
        "segments",
        "seq",
        "suppressed",
        "timers",
        "user_id",
    )

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.clock: int | None = None
        """Latest event or timer time processed."""
        self.seq = 0
        """Arrival counter: orders occurrences with equal times."""
        self.next_timer_id = 1
        self.patterns: dict[str, PatternState] = {}
        self.profile: dict[str, Any] = {}
        self.segments: list[str] = []
        self.suppressed: dict[str, int | None] = {}
        """Offer code -> suppressed until (None: for good)."""
        self.timers: list[Timer] = []

    # -- timers

    def add_timer(
        self, due: int, kind: str, pattern_id: str, fingerprint: str, payload: Any
    ) -> int:
        timer_id = self.next_timer_id
        self.next_timer_id += 1
        heapq.heappush(self.timers, [due, timer_id, kind, pattern_id, fingerprint, payload])
        return timer_id

    def cancel_timers(self, pattern_id: str, kinds: tuple[str, ...]) -> bool:
        kept = [t for t in self.timers if not (t[3] == pattern_id and t[2] in kinds)]
        if len(kept) == len(self.timers):
            return False
        heapq.heapify(kept)
        self.timers = kept
        return True

    def next_due(self) -> int | None:
        return self.timers[0][0] if self.timers else None

    def pending_timers(self) -> list[tuple[int, int]]:
        """(due, timer_id) of every pending timer, in due order: what a scheduler indexes."""
        return sorted((timer[0], timer[1]) for timer in self.timers)

    # -- codec

    def encode(self) -> bytes:
        return orjson.dumps(
            [
                FORMAT_VERSION,
                self.user_id,
                self.clock,
                self.seq,
                self.next_timer_id,
                self.profile,
                self.segments,
                self.suppressed,
                self.timers,
                {pid: pattern.to_wire() for pid, pattern in self.patterns.items()},
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> UserState:
        try:
            wire = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise StateFormatError(f"state is not JSON: {error}") from None
        if not isinstance(wire, list) or not wire or wire[0] != FORMAT_VERSION:
            version = wire[0] if isinstance(wire, list) and wire else None
            raise StateFormatError(f"unsupported state format version {version!r}")
        state = cls(wire[1])
        (
            _,
            state.user_id,
            state.clock,
            state.seq,
            state.next_timer_id,
            state.profile,
            state.segments,
            state.suppressed,
            state.timers,
            patterns,
        ) = wire
        state.patterns = {pid: PatternState.from_wire(p) for pid, p in patterns.items()}
        return state
