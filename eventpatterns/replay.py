"""The `replay` command (SPEC section 7): the core over a file of events.

Replay owns time the way the streaming runtime does, from the events: each
user's timers run before that user's next event, and at the end every timer
due up to `until` runs, across users, in due order.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

import orjson

from .core.definitions import Definitions
from .core.evaluator import Engine
from .core.events import BadEvent, Event, decode_event
from .core.state import UserState


@dataclass
class ReplayStats:
    events: int = 0
    bad_lines: int = 0
    records: int = 0
    users: int = 0


@dataclass
class Replayer:
    """Feeds events to the core in order and collects what it emits."""

    definitions: Definitions
    emit: Callable[[dict[str, Any]], None]
    engine: Engine = field(init=False)
    states: dict[str, UserState] = field(default_factory=dict)
    stats: ReplayStats = field(default_factory=ReplayStats)
    latest: int | None = None

    def __post_init__(self) -> None:
        self.engine = Engine(self.definitions)

    def state_of(self, user_id: str) -> UserState:
        state = self.states.get(user_id)
        if state is None:
            state = self.states[user_id] = self.engine.new_state(user_id)
        return state

    def feed(self, event: Event) -> None:
        self.stats.events += 1
        if self.latest is None or event.time > self.latest:
            self.latest = event.time
        for record in self.engine.process(self.state_of(event.user_id), event):
            self._emit(record)

    def finish(self, until: int | None) -> None:
        """Run every user's timers due up to `until` (None: all of them), in due order."""
        order = {user_id: position for position, user_id in enumerate(self.states)}
        heap = [
            (due, order[user_id], user_id)
            for user_id, state in self.states.items()
            if (due := state.next_due()) is not None
        ]
        heapq.heapify(heap)
        while heap:
            due, position, user_id = heapq.heappop(heap)
            if until is not None and due > until:
                break
            state = self.states[user_id]
            if state.next_due() != due:
                continue
            for record in self.engine.advance(state, due):
                self._emit(record)
            following = state.next_due()
            if following is not None:
                heapq.heappush(heap, (following, position, user_id))
        self.stats.users = len(self.states)

    def _emit(self, record: dict[str, Any]) -> None:
        self.stats.records += 1
        self.emit(record)


def read_events(
    lines: Iterable[bytes],
    definitions: Definitions,
    on_bad: Callable[[int, str], None],
) -> Iterator[Event]:
    """Decode JSON lines; a line without a timestamp takes the previous event's time."""
    previous: int | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = decode_event(line, definitions.source, received_at=previous)
        except BadEvent as error:
            on_bad(number, str(error))
            continue
        previous = event.time
        yield event


def run_replay(
    definitions: Definitions,
    events: BinaryIO,
    out: BinaryIO,
    err: TextIO = sys.stderr,
    until: int | None = None,
    drain: bool = False,
) -> ReplayStats:
    def write(record: dict[str, Any]) -> None:
        if record.get("kind") == "error":
            # SPEC section 5: a cut chain is a line on stderr in replay, not an output record
            err.write(
                f"error: {record.get('time')} user {record.get('user_id')} "
                f"pattern {record.get('pattern')}: {record.get('error')}\n"
            )
            return
        out.write(orjson.dumps(record) + b"\n")

    replayer = Replayer(definitions, write)

    def report_bad(number: int, reason: str) -> None:
        replayer.stats.bad_lines += 1
        err.write(f"line {number}: {reason}\n")

    for event in read_events(events, definitions, report_bad):
        replayer.feed(event)
    replayer.finish(None if drain else (until if until is not None else replayer.latest))
    out.flush()
    return replayer.stats
