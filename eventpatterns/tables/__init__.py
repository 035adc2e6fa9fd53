"""Changelog-backed Faust tables: each user's state, and each user's next timer.

Both are keyed by user id (bytes) and written only by the events agent, so
every change is in the changelog and a worker that takes over a partition
recovers it from there.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import EventT

STATE_TABLE = "state"
TIMERS_TABLE = "timers"


def declare(app: faust.App, partitions: int) -> tuple[faust.Table, faust.Table]:
    """Keys and values are raw bytes (the app's default serializers)."""
    options: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "partitions": partitions,
    }
    state = app.Table(STATE_TABLE, help="user id -> applied offsets and core state", **options)
    timers = app.Table(TIMERS_TABLE, help="user id -> earliest pending timer (us)", **options)
    return state, timers


@contextmanager
def writing_as(event: EventT) -> Iterator[None]:
    """Make table writes go to `event`'s partition.

    Faust picks a table write's changelog partition from the event being
    processed; a batch holds events of several partitions, so each write names
    the event of its own partition.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class TableStateStore:
    """The processor's `StateStore` over the Faust state and timers tables."""

    def __init__(self, state: faust.Table, timers: faust.Table) -> None:
        self.state = state
        self.timers = timers
        self.events_by_partition: Mapping[int, EventT] = {}

    def get(self, user_id: str) -> bytes | None:
        value: bytes | None = self.state.get(user_id.encode())
        return value

    def put(self, user_id: str, value: bytes, partition: int) -> None:
        with writing_as(self.events_by_partition[partition]):
            self.state[user_id.encode()] = value

    def set_next_due(self, user_id: str, partition: int, due: int | None) -> bool:
        """Record the user's earliest timer; False when it did not change."""
        key = user_id.encode()
        current = self.timers.get(key)
        wanted = None if due is None else str(due).encode()
        if current == wanted:
            return False
        with writing_as(self.events_by_partition[partition]):
            if wanted is None:
                del self.timers[key]
            else:
                self.timers[key] = wanted
        return True

    def pending(self) -> Iterator[tuple[str, int]]:
        """(user, due) of every user with a timer, as recovered from the changelog."""
        for key, value in list(self.timers.items()):
            if value:
                yield key.decode(), int(value)
