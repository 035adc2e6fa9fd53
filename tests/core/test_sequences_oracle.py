"""Hypothesis oracles: a brute-force model of SPEC section 4, compared with the engine.

The model keeps every occurrence and, at each one, searches the condition from scratch
(for sequences: every chain over the stored occurrences, per the existence semantics),
running the same not_met / met / suspended state machine. The engine keeps compact
partial matches and summaries instead; both must emit the same transitions and actions.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpatterns.core.definitions import load_definitions
from eventpatterns.core.events import Event
from eventpatterns.core.timeutil import format_ms, parse_timestamp
from tests.core.conftest import brief, run

T0 = parse_timestamp("2026-11-02T10:00:00Z")
MINUTE = 60_000_000
NAMES = ("a", "b", "c")
OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

# ---------------------------------------------------------------------------------------
# Generated histories


@dataclass(frozen=True)
class Ev:
    name: str
    time: int  # microseconds
    attributes: dict[str, Any]


@st.composite
def histories(
    draw: st.DrawFn, max_events: int = 12, favour: Sequence[str] = (), late: bool = False
) -> list[Ev]:
    """One user, names a/b/c (those in `favour` more often), small ints in x (sometimes
    missing or a string), y for ignore_repeats, non-decreasing times (equal times frequent);
    with `late`, some events are older than the one before them."""
    names = [*NAMES, *favour]
    steps = [0, 0, 1, 1, 2, 3, 5, 8] + ([-1, -3, -6, -12] if late else [])
    count = draw(st.integers(0, max_events))
    time = T0
    out = []
    for _ in range(count):
        time += draw(st.sampled_from(steps)) * MINUTE
        name = draw(st.sampled_from(names))
        attributes: dict[str, Any] = {}
        x = draw(st.sampled_from([0, 1, 2, 3, 3, None, "s"]))
        if x is not None:
            attributes["x"] = x
        y = draw(st.sampled_from([1, 2, None]))
        if y is not None:
            attributes["y"] = y
        out.append(Ev(name, time, attributes))
    return out


def to_events(history: Sequence[Ev], user: str = "u1") -> list[Event]:
    return [Event(user, e.name, e.time, dict(e.attributes)) for e in history]


# ---------------------------------------------------------------------------------------
# Generated patterns (a description the model reads and a YAML/JSON file the engine reads)


@dataclass
class Step:
    name: str
    plain: tuple[str, int] | None = None  # (op, k): x <op> k
    alias: str | None = None
    alias_test: tuple[str, str] | None = None  # (op, alias): x <op> alias.x
    min_after: int | None = None  # minutes
    max_after: int | None = None
    count: int = 1
    weight: float = 1.0
    aggregates: list[tuple[str, str, float]] = field(default_factory=list)  # (fn, op, value)

    def where(self) -> str | None:
        parts = []
        if self.plain is not None:
            parts.append(f"x {self.plain[0]} {self.plain[1]}")
        if self.alias_test is not None:
            parts.append(f"x {self.alias_test[0]} {self.alias_test[1]}.x")
        return " and ".join(parts) or None


@dataclass
class Spec:
    id: str
    type: str
    steps: list[Step]
    mode: str = "unbounded"
    duration: int = 0  # minutes
    extend: int = 0
    threshold: float = 0.0
    suspend: tuple[str, int | None] | None = None  # (name, duration minutes); where x == 3
    ignore_repeats: bool = False

    def to_dict(self) -> dict[str, Any]:
        pattern: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.mode != "unbounded":
            pattern["window"] = {"mode": self.mode, "duration": f"{self.duration}m"}
        if self.mode == "time_bound" and self.extend:
            pattern["extend_true_state"] = f"{self.extend}m"
        if self.type == "weighted_counter":
            pattern["threshold"] = self.threshold
        if self.ignore_repeats:
            pattern["ignore_repeats"] = "y"
        events = []
        for step in self.steps:
            event: dict[str, Any] = {"event": step.name}
            if step.where():
                event["where"] = step.where()
            if step.alias:
                event["as"] = step.alias
            if step.min_after is not None:
                event["min_after"] = f"{step.min_after}m"
            if step.max_after is not None:
                event["max_after"] = f"{step.max_after}m"
            if self.type == "counter":
                event["count"] = step.count
            if self.type == "weighted_counter":
                event["weight"] = step.weight
            if step.aggregates:
                event["aggregate"] = [
                    {"fn": fn, "attribute": "x", "op": op, "value": value}
                    for fn, op, value in step.aggregates
                ]
            events.append(event)
        pattern["events"] = events
        if self.suspend is not None:
            name, minutes = self.suspend
            suspend: dict[str, Any] = {"event": name, "where": "x == 3"}
            if minutes is not None:
                suspend["duration"] = f"{minutes}m"
            pattern["suspend"] = suspend
        pattern["on_met"] = [{"action": "publish", "topic": "t", "value": self.id}]
        return pattern


def pattern_file(specs: Sequence[Spec]) -> str:
    return json.dumps({"version": 1, "patterns": [spec.to_dict() for spec in specs]})


windows = st.sampled_from(["unbounded", "rolling", "time_bound"])


@st.composite
def window_fields(draw: st.DrawFn) -> dict[str, Any]:
    mode = draw(windows)
    if mode == "unbounded":
        return {"mode": mode}
    fields: dict[str, Any] = {"mode": mode, "duration": draw(st.integers(1, 12))}
    if mode == "time_bound":
        fields["extend"] = draw(st.sampled_from([0, 0, 1, 3, 10]))
    return fields


@st.composite
def common_fields(draw: st.DrawFn) -> dict[str, Any]:
    fields = draw(window_fields())
    if draw(st.booleans()):
        fields["suspend"] = (
            draw(st.sampled_from(NAMES)),
            draw(st.sampled_from([None, 1, 4, 10])),
        )
    fields["ignore_repeats"] = draw(st.booleans())
    return fields


plain_tests = st.one_of(
    st.none(), st.none(), st.tuples(st.sampled_from([">=", "<", "!="]), st.integers(0, 3))
)


@st.composite
def sequence_specs(draw: st.DrawFn, pid: str = "seq") -> Spec:
    length = draw(st.integers(2, 3))
    steps: list[Step] = []
    for index in range(length):
        step = Step(draw(st.sampled_from(NAMES)), plain=draw(plain_tests))
        if draw(st.booleans()):
            step.alias = f"s{index}"
        earlier = [s.alias for s in steps if s.alias]
        if earlier and draw(st.booleans()):
            step.alias_test = (
                draw(st.sampled_from(["<", ">", "==", "!="])),
                draw(st.sampled_from(earlier)),
            )
        if index > 0:
            low = draw(st.sampled_from([None, None, 0, 1, 2]))
            high = draw(st.sampled_from([None, None, 0, 1, 3, 6]))
            if low is not None and high is not None and low > high:
                low, high = high, low
            step.min_after, step.max_after = low, high
        steps.append(step)
    return Spec(pid, "sequence", steps, **draw(common_fields()))


aggregate_specs = st.tuples(
    st.sampled_from(["sum", "min", "max", "avg"]),
    st.sampled_from([">=", ">", "<=", "<", "==", "!="]),
    st.sampled_from([0, 1, 1.5, 2, 4]),
)


@st.composite
def counting_specs(draw: st.DrawFn, pid: str = "cnt", kind: str | None = None) -> Spec:
    kind = kind or draw(st.sampled_from(["match_all", "counter", "weighted_counter"]))
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        step = Step(draw(st.sampled_from(NAMES)), plain=draw(plain_tests))
        step.count = draw(st.integers(1, 3))
        step.weight = draw(st.sampled_from([0.5, 1.0, 2.0, 2.5]))
        if draw(st.integers(0, 3)) == 0:
            step.aggregates = draw(st.lists(aggregate_specs, min_size=1, max_size=2))
        steps.append(step)
    spec = Spec(pid, kind, steps, **draw(common_fields()))
    spec.threshold = draw(st.sampled_from([1, 2, 3, 4.5, 5]))
    return spec


# ---------------------------------------------------------------------------------------
# The brute-force model


def compare(op: str, left: Any, right: Any) -> bool:
    """SPEC section 3 at run time: missing or incompatible -> False."""
    if left is None or right is None:
        return False
    if isinstance(left, str) != isinstance(right, str):
        return False
    return OPS[op](left, right)


def numeric(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


@dataclass
class Occ:
    time: int
    seq: int
    attributes: dict[str, Any]
    steps: frozenset[int]


@dataclass
class Model:
    spec: Spec
    status: str = "not_met"
    occurrences: list[Occ] = field(default_factory=list)
    extension_end: int | None = None
    suspended: bool = False
    suspension_end: int | None = None  # None while suspended: until reset
    last_y: Any = None
    has_last: bool = False
    timer_id: int = 0  # creation order of the pending timer: the engine's tie-break

    # -- matching

    def plain_match(self, step: Step, attributes: dict[str, Any]) -> bool:
        return step.plain is None or compare(step.plain[0], attributes.get("x"), step.plain[1])

    # -- condition

    def window(self, now: int) -> list[Occ]:
        if self.spec.mode == "unbounded":
            return self.occurrences
        horizon = now - self.spec.duration * MINUTE
        return [o for o in self.occurrences if o.time > horizon]

    def holds(self, now: int) -> bool:
        occurrences = self.window(now)
        spec = self.spec
        per_step = [[o for o in occurrences if i in o.steps] for i in range(len(spec.steps))]
        if spec.type == "match_all":
            ok = all(per_step)
        elif spec.type == "counter":
            ok = all(len(per_step[i]) >= s.count for i, s in enumerate(spec.steps))
        elif spec.type == "weighted_counter":
            score = sum(s.weight * len(per_step[i]) for i, s in enumerate(spec.steps))
            ok = score >= spec.threshold
        else:
            ok = self.chain_exists(per_step)
        if not ok:
            return False
        for index, step in enumerate(spec.steps):
            values = [numeric(o.attributes.get("x")) for o in per_step[index]]
            for fn, op, value in step.aggregates:
                if not values:
                    result = 0.0
                elif fn == "sum":
                    result = float(sum(values))
                elif fn == "min":
                    result = min(values)
                elif fn == "max":
                    result = max(values)
                else:
                    result = float(sum(values)) / len(values)
                if not OPS[op](result, value):
                    return False
        return True

    def chain_exists(self, per_step: list[list[Occ]]) -> bool:
        steps = self.spec.steps

        def search(index: int, previous: Occ | None, bound: dict[str, Occ]) -> bool:
            if index == len(steps):
                return True
            step = steps[index]
            for occ in per_step[index]:
                if previous is not None:
                    if (occ.time, occ.seq) <= (previous.time, previous.seq):
                        continue
                    gap = occ.time - previous.time
                    if step.min_after is not None and gap < step.min_after * MINUTE:
                        continue
                    if step.max_after is not None and gap > step.max_after * MINUTE:
                        continue
                if step.alias_test is not None:
                    op, alias = step.alias_test
                    if not compare(op, occ.attributes.get("x"), bound[alias].attributes.get("x")):
                        continue
                more = dict(bound)
                if step.alias:
                    more[step.alias] = occ
                if search(index + 1, occ, more):
                    return True
            return False

        return search(0, None, {})


class World:
    """Several patterns of one file, one user; produces records in the engine's shape."""

    def __init__(self, specs: Sequence[Spec]) -> None:
        self.models = [Model(spec) for spec in specs]
        self.records: list[tuple[Any, ...]] = []
        self.seq = 0
        self.next_timer = 0

    def new_timer(self) -> int:
        self.next_timer += 1
        return self.next_timer

    def transition(self, model: Model, to: str, now: int) -> None:
        if model.status != to:
            self.records.append(("T", format_ms(now), model.spec.id, model.status, to))
            model.status = to

    def timers(self, now: int) -> None:
        while True:
            due: list[tuple[int, int, Model, str]] = []
            for model in self.models:
                if model.extension_end is not None and model.extension_end <= now:
                    due.append((model.extension_end, model.timer_id, model, "extension"))
                if (
                    model.suspended
                    and model.suspension_end is not None
                    and model.suspension_end <= now
                ):
                    due.append((model.suspension_end, model.timer_id, model, "suspension"))
            if not due:
                return
            when, _, model, kind = min(due, key=lambda item: (item[0], item[1]))
            if kind == "extension":
                model.extension_end = None
                self.transition(model, "not_met", when)
            else:
                model.suspended = False
                model.suspension_end = None
                self.transition(model, "not_met", when)

    def event(self, ev: Ev) -> None:
        self.timers(ev.time)
        self.seq += 1
        for model in self.models:
            self.apply(model, ev)

    def apply(self, model: Model, ev: Ev) -> None:
        spec, now, attributes = model.spec, ev.time, ev.attributes
        if spec.suspend is not None and ev.name == spec.suspend[0] and attributes.get("x") == 3:
            minutes = spec.suspend[1]
            until = None if minutes is None else now + minutes * MINUTE
            if model.suspended:
                if model.suspension_end is not None and (
                    until is None or until > model.suspension_end
                ):
                    model.suspension_end = until
                    model.timer_id = self.new_timer()
            else:
                model.extension_end = None
                model.suspended = True
                model.suspension_end = until
                model.timer_id = self.new_timer()
                self.transition(model, "suspended", now)
        matched = frozenset(
            index
            for index, step in enumerate(spec.steps)
            if step.name == ev.name and model.plain_match(step, attributes)
        )
        if not matched:
            return
        if spec.ignore_repeats:
            value = attributes.get("y")
            repeat = model.has_last and value is not None and value == model.last_y
            model.last_y, model.has_last = value, value is not None
            if repeat:
                return
        if model.suspended or (model.status == "met" and spec.mode != "rolling"):
            return
        # A late event joins the window ending at the pattern's latest occurrence.
        end = max([now, *(o.time for o in model.occurrences)])
        if spec.mode != "unbounded" and now <= end - spec.duration * MINUTE:
            return
        model.occurrences.append(Occ(now, self.seq, attributes, matched))
        holds = model.holds(end)
        if holds and model.status == "not_met":
            self.transition(model, "met", now)
            self.records.append(("A", format_ms(now), spec.id, "publish", "met"))
            if spec.mode == "time_bound":
                model.occurrences = []
                model.extension_end = now + spec.extend * MINUTE
                model.timer_id = self.new_timer()
        elif not holds and model.status == "met":
            self.transition(model, "not_met", now)


def uses_not_equal(specs: Sequence[Spec]) -> bool:
    return any(
        (step.plain is not None and step.plain[0] == "!=")
        or (step.alias_test is not None and step.alias_test[0] == "!=")
        for spec in specs
        for step in spec.steps
    )


def settle(specs: Sequence[Spec], history: list[Ev]) -> list[Ev]:
    """Whether `'s' != 0` holds is disputed (SPEC section 3 says a comparison between
    incompatible types is false; the expression module follows Python for == and !=):
    with a `!=` test, keep x numeric or missing so that the oracle tests the evaluator."""
    if not uses_not_equal(specs):
        return history
    return [
        Ev(e.name, e.time, {k: v for k, v in e.attributes.items() if not isinstance(v, str)})
        for e in history
    ]


def model_run(specs: Sequence[Spec], history: Sequence[Ev]) -> list[tuple[Any, ...]]:
    world = World(specs)
    for ev in history:
        world.event(ev)
    if history:
        world.timers(max(ev.time for ev in history))
    return world.records


def engine_run(specs: Sequence[Spec], history: Sequence[Ev]) -> list[tuple[Any, ...]]:
    definitions = load_definitions(pattern_file(specs))
    return brief(run(definitions, to_events(history)))


def describe(specs: Sequence[Spec], history: Sequence[Ev]) -> str:
    lines = [pattern_file(specs)]
    for ev in history:
        lines.append(f"  {(ev.time - T0) // MINUTE:>4}m {ev.name} {ev.attributes}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The properties


def favoured(specs: Sequence[Spec]) -> list[str]:
    """Step names, so that histories complete patterns more often."""
    return [step.name for spec in specs for step in spec.steps] * 2


@SETTINGS
@given(data=st.data())
def test_sequences_match_the_brute_force_model(data: st.DataObject) -> None:
    spec = data.draw(sequence_specs(), "spec")
    history = settle([spec], data.draw(histories(favour=favoured([spec])), "history"))
    assert engine_run([spec], history) == model_run([spec], history), describe([spec], history)


@SETTINGS
@given(data=st.data())
def test_counting_patterns_match_the_brute_force_model(data: st.DataObject) -> None:
    spec = data.draw(counting_specs(), "spec")
    history = settle([spec], data.draw(histories(favour=favoured([spec])), "history"))
    assert engine_run([spec], history) == model_run([spec], history), describe([spec], history)


@SETTINGS
@given(data=st.data())
def test_counting_patterns_with_late_events_match_the_model(data: st.DataObject) -> None:
    spec = data.draw(counting_specs(), "spec")
    history = data.draw(histories(favour=favoured([spec]), late=True), "history")
    history = settle([spec], history)
    assert engine_run([spec], history) == model_run([spec], history), describe([spec], history)


@settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_several_patterns_match_the_model_in_file_order(data: st.DataObject) -> None:
    specs = [
        data.draw(sequence_specs("s1"), "s1"),
        data.draw(counting_specs("c1"), "c1"),
        data.draw(sequence_specs("s2"), "s2"),
        data.draw(counting_specs("c2"), "c2"),
    ]
    history = settle(specs, data.draw(histories(16, favoured(specs)), "history"))
    assert engine_run(specs, history) == model_run(specs, history), describe(specs, history)


# ---------------------------------------------------------------------------------------
# The model itself must be able to disagree: sanity checks on hand-made cases


def test_model_sees_alias_chains() -> None:
    spec = Spec(
        "seq",
        "sequence",
        [Step("a", alias="s0"), Step("b"), Step("a", alias_test=(">", "s0"))],
    )
    history = [
        Ev("a", T0, {"x": 2}),
        Ev("a", T0 + MINUTE, {"x": 0}),
        Ev("b", T0 + 2 * MINUTE, {}),
        Ev("a", T0 + 3 * MINUTE, {"x": 1}),
    ]
    expected = [
        ("T", format_ms(T0 + 3 * MINUTE), "seq", "not_met", "met"),
        ("A", format_ms(T0 + 3 * MINUTE), "seq", "publish", "met"),
    ]
    assert model_run([spec], history) == expected
    assert engine_run([spec], history) == expected
    # Without the a(x=0): 1 > 2 is false, no chain.
    assert model_run([spec], [history[0], *history[2:]]) == []
    assert engine_run([spec], [history[0], *history[2:]]) == []
