"""Helpers for the evaluator tests: readable events, a tiny replay, record summaries."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from eventpatterns.core.definitions import Definitions, load_definitions
from eventpatterns.core.events import Event
from eventpatterns.core.timeutil import parse_timestamp
from eventpatterns.replay import Replayer

Record = dict[str, Any]

# 2026-11-02 is a Monday.
MONDAY = "2026-11-02"


def t(when: str) -> int:
    """An ISO time (a bare date-time gets 'Z') as microseconds."""
    if len(when) == 10:
        when += "T00:00:00"
    if not (when.endswith("Z") or "+" in when[10:] or when[10:].count("-")):
        when += "Z"
    return parse_timestamp(when)


def E(name: str, when: str | int, user: str = "u1", **attributes: Any) -> Event:
    """An event named `name` at `when` (ISO text or microseconds) for `user`."""
    time = when if isinstance(when, int) else t(when)
    return Event(user, name, time, dict(attributes))


def defs(yaml_text: str) -> Definitions:
    return load_definitions(textwrap.dedent(yaml_text))


def run(
    yaml_text: str | Definitions,
    events: Iterable[Event],
    *,
    until: str | int | None = None,
    drain: bool = False,
) -> list[Record]:
    """Replay `events` in order; at the end run timers due up to `until` (default: the
    largest event time, as `replay` does), or all of them with `drain`."""
    definitions = defs(yaml_text) if isinstance(yaml_text, str) else yaml_text
    records: list[Record] = []
    replayer = Replayer(definitions, records.append)
    for event in events:
        replayer.feed(event)
    if drain:
        replayer.finish(None)
    else:
        end = replayer.latest if until is None else (until if isinstance(until, int) else t(until))
        replayer.finish(end)
    return records


def brief(records: Sequence[Record]) -> list[tuple[Any, ...]]:
    """Short, comparable form: transitions, actions (with trigger), errors."""
    out: list[tuple[Any, ...]] = []
    for record in records:
        kind = record["kind"]
        if kind == "transition":
            out.append(("T", record["time"], record["pattern"], record["from"], record["to"]))
        elif kind == "action":
            out.append(
                ("A", record["time"], record["pattern"], record["action"], record["trigger"])
            )
        else:
            out.append(("E", record["time"], record.get("pattern")))
    return out


def transitions(
    records: Sequence[Record], pattern: str | None = None
) -> list[tuple[str, str, str]]:
    """(time, from, to) of each transition (of `pattern`, if given)."""
    return [
        (r["time"], r["from"], r["to"])
        for r in records
        if r["kind"] == "transition" and (pattern is None or r["pattern"] == pattern)
    ]


def actions(records: Sequence[Record], pattern: str | None = None) -> list[Record]:
    return [
        r for r in records if r["kind"] == "action" and (pattern is None or r["pattern"] == pattern)
    ]


def fired(records: Sequence[Record], pattern: str | None = None) -> list[str]:
    """Times of transitions into met."""
    return [time for time, _, to in transitions(records, pattern) if to == "met"]


def ms(when: str) -> str:
    """The record form of an ISO time: UTC, milliseconds, 'Z'."""
    from eventpatterns.core.timeutil import format_ms

    return format_ms(t(when))
