"""Where the bytes of a user's encoded state go, and what each proposed compaction saves.

    python -m benchmarks.state_size [--users 5000]

Makes real states with the core (the benchmark's ten patterns over generated
clickstream records timed from now, as a worker would hold them), then measures the
encoded size (`UserState.encode()`) by part, and the size after each compaction
below, applied one after the other to the same wire value. The compactions are
prototypes over the wire form, to size the gains; the format itself is the
core's to change.

1. drop the pattern states that hold nothing (not_met, no occurrence, no partial
   match, no previous value, never suspended, nothing dropped);
2. key pattern states by their position in the file, with one definitions
   fingerprint for the whole state instead of one per pattern;
3. keep in a checkpoint timer only the event attributes its actions' templates
   read (the benchmark's checkpoint reads none), not the whole event;
4. write times relative to the state's clock, in milliseconds where the pattern
   windows allow (here: all of them), instead of absolute microseconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from eventpatterns.core.definitions import load_definitions_file
from eventpatterns.core.evaluator import Engine
from eventpatterns.core.events import decode_event
from eventpatterns.core.state import UserState

from . import datagen

HERE = Path(__file__).resolve().parent

Wire = list[Any]


def make_states(users: int, patterns: Path = HERE / "patterns.yaml") -> list[UserState]:
    definitions = load_definitions_file(str(patterns))
    engine = Engine(definitions)
    states: dict[str, UserState] = {}
    records = datagen.generate(users * 10, users, seed=5, start_ns=time.time_ns())
    for raw in datagen.encode(records):
        event = decode_event(raw, definitions.source)
        state = states.get(event.user_id)
        if state is None:
            state = states[event.user_id] = engine.new_state(event.user_id)
        engine.process(state, event)
    return list(states.values())


def size(wire: Wire) -> int:
    return len(orjson.dumps(wire))


def _empty_pattern(pattern: Wire) -> bool:
    _, status, occurrences, runs, has_last, _, suspended_until, dropped = pattern
    return (
        status == 0
        and not any(occurrences)
        and not runs
        and not has_last
        and suspended_until is None
        and not dropped
    )


def drop_empty_patterns(wire: Wire) -> Wire:
    patterns = {pid: p for pid, p in wire[9].items() if not _empty_pattern(p)}
    return [*wire[:9], patterns]


def index_patterns(wire: Wire, order: dict[str, int]) -> Wire:
    patterns = [[order[pid], *p[1:]] for pid, p in wire[9].items()]
    timers = [[t[0], t[1], t[2], order.get(t[3], -1), t[5]] for t in wire[8]]
    return [*wire[:8], timers, patterns, "definitions-fingerprint"]


def trim_checkpoint_payloads(wire: Wire) -> Wire:
    timers = []
    for timer in wire[8]:
        if timer[2] == "checkpoint" and isinstance(timer[-1], list):
            index, _attributes, depth = timer[-1]
            timer = [*timer[:-1], [index, {}, depth]]
        timers.append(timer)
    return [*wire[:8], timers, *wire[9:]]


def relative_times(wire: Wire) -> Wire:
    clock = wire[2] or 0

    def rel(value: Any) -> Any:
        return (value - clock) // 1000 if isinstance(value, int) and value > 10**15 else value

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        return rel(value)

    return [*wire[:3], *walk(wire[3:])]


def parts(wire: Wire) -> dict[str, int]:
    """Bytes of each part of the current format (separators counted with their part)."""
    out = {
        "header (version, user id, clock, seq, timer id)": size(wire[:5]),
        "profile, segments, suppressed offers": size(wire[5:8]),
        "timers": size(wire[8]),
    }
    patterns = wire[9]
    empty = [p for p in patterns.values() if _empty_pattern(p)]
    out["pattern states holding nothing"] = sum(size(p) for p in empty)
    out["pattern states: fingerprints and id keys"] = sum(
        len(pid) + 3 + len(p[0]) + 3 for pid, p in patterns.items() if not _empty_pattern(p)
    )
    out["pattern states: the rest"] = size([p[1:] for p in patterns.values() if p not in empty])
    return out


def analyse(users: int) -> dict[str, Any]:
    definitions = load_definitions_file(str(HERE / "patterns.yaml"))
    order = {pattern.id: index for index, pattern in enumerate(definitions.patterns)}
    states = make_states(users)
    wires: list[Wire] = [orjson.loads(state.encode()) for state in states]
    total = sum(size(w) for w in wires)
    breakdown: dict[str, int] = {}
    for wire in wires:
        for key, value in parts(wire).items():
            breakdown[key] = breakdown.get(key, 0) + value
    steps: list[tuple[str, Callable[[Wire], Wire]]] = [
        ("1. drop pattern states holding nothing", drop_empty_patterns),
        ("2. patterns by position, one fingerprint", lambda w: index_patterns(w, order)),
        ("3. checkpoint timers without the event", trim_checkpoint_payloads),
        ("4. times relative to the clock, in ms", relative_times),
    ]
    savings = []
    current = wires
    before = total
    for name, step in steps:
        current = [step(w) for w in current]
        after = sum(size(w) for w in current)
        savings.append(
            {"step": name, "bytes_per_user": round(after / len(wires)), "saved": before - after}
        )
        before = after
    return {
        "users": len(wires),
        "encoded_bytes_per_user": round(total / len(wires)),
        "breakdown_bytes_per_user": {k: round(v / len(wires)) for k, v in breakdown.items()},
        "compactions": savings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5_000)
    args = parser.parse_args(argv)
    result = analyse(args.users)
    print(f"{result['users']:,} users, {result['encoded_bytes_per_user']:,} B per user encoded")
    for name, value in result["breakdown_bytes_per_user"].items():
        print(f"  {name:<48} {value:>6,} B")
    print("after each compaction, cumulatively:")
    for entry in result["compactions"]:
        print(f"  {entry['step']:<48} {entry['bytes_per_user']:>6,} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
