"""State round trip: decoding the encoded state at any point changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpatterns.core.definitions import Definitions, load_definitions
from eventpatterns.core.evaluator import Engine
from eventpatterns.core.events import Event
from eventpatterns.core.state import StateFormatError, UserState
from tests.core.conftest import E
from tests.core.test_sequences_oracle import (
    MINUTE,
    Ev,
    Spec,
    counting_specs,
    histories,
    pattern_file,
    sequence_specs,
    to_events,
)

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Everything that leaves data in the state: checkpoints, delayed actions, suppressions,
# profile and segments, chained and macro events, suspensions, aliases, aggregates.
RICH = """
version: 1
offers:
  - {code: o1, attributes: {category: shoes}}
  - {code: o2, attributes: {category: hats}}
segments:
  many: "profile.count > 2"
patterns:
  - id: cart
    type: match_all
    window: {mode: rolling, duration: 20m}
    ignore_repeats: y
    events: [{event: a}, {event: b, where: "x >= 1"}]
    suspend: {event: c, where: "x == 3", duration: 7m}
    checkpoints:
      - {after: 5m, actions: [{action: publish, topic: t, value: "cp ${x}", delay: 2m}]}
      - {after: 9m, actions: [{action: log_contact, offer: o1}]}
    on_met:
      - {action: set_attribute, name: count, value: "x"}
      - {action: publish, topic: t, offer: o1, value: {x: "${x}", at: "${now}"}, delay: 3m}
      - {action: resegment}
  - id: seq
    type: sequence
    window: {mode: time_bound, duration: 15m}
    extend_true_state: 4m
    events:
      - {event: b, as: first}
      - {event: c, max_after: 6m}
      - {event: a, where: "x != first.x", as: last}
    on_met:
      - {action: trigger_events, events: [chained], attributes: {v: "${last.x}"}}
      - {action: suppress_offers, offers: [o1], duration: 10m}
      - {action: log_accept, offer: o2, at: "2026-11-02T10:30:00Z"}
  - id: chained_counter
    type: counter
    events: [{event: chained, count: 2, aggregate: [{fn: sum, attribute: v, op: '>=', value: 1}]}]
    on_met: [{action: reset_pattern, target: cart, delay: 1m}, {action: reset_pattern}]
  - id: hats
    type: weighted_counter
    threshold: 2
    events:
      - {event: offerAcceptedInCategory, attribute: category, value: hats, weight: 1}
      - {event: offerContacted, offer: o1, weight: 1.5}
    on_met: [{action: qualify_segments, segments: [hat_lover]}]
  - id: avg
    type: counter
    events: [{event: a, count: 3, aggregate: [{fn: avg, attribute: x, op: '<', value: 2}]}]
    suspend: {event: b, where: "x == 0"}
    on_met: [{action: publish, topic: t, value: "${profile.count}"}]
"""


def play(
    definitions: Definitions, events: Sequence[Event], *, reload: Sequence[bool] = ()
) -> tuple[list[dict[str, Any]], UserState]:
    """Run the events (then every timer); before step i, round-trip the state if reload[i]."""
    engine = Engine(definitions)
    state = engine.new_state("u1")
    records: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        if index < len(reload) and reload[index]:
            data = state.encode()
            state = UserState.decode(data)
            assert state.encode() == data
        records.extend(
            engine.process(
                state, Event(event.user_id, event.name, event.time, dict(event.attributes))
            )
        )
    if len(reload) > len(events) and reload[len(events)]:
        state = UserState.decode(state.encode())
    records.extend(engine.advance(state, 2**62))
    return records, state


def check_round_trips(definitions: Definitions, events: list[Event], split: int) -> None:
    expected, final = play(definitions, events)
    every = [True] * (len(events) + 1)
    at_split = [index == split for index in range(len(events) + 1)]
    for reload in (every, at_split):
        records, state = play(definitions, events, reload=reload)
        assert records == expected
        assert state.encode() == final.encode()


@SETTINGS
@given(
    specs=st.tuples(
        sequence_specs("s1"),
        counting_specs("m", "match_all"),
        counting_specs("c", "counter"),
        counting_specs("w", "weighted_counter"),
        sequence_specs("s2"),
    ),
    history=histories(max_events=16),
    data=st.data(),
)
def test_generated_patterns_survive_encoding_at_any_point(
    specs: tuple[Spec, ...], history: list[Ev], data: st.DataObject
) -> None:
    definitions = load_definitions(pattern_file(specs))
    split = data.draw(st.integers(0, len(history)), "split")
    check_round_trips(definitions, to_events(history), split)


@SETTINGS
@given(history=histories(max_events=20), data=st.data())
def test_rich_file_survives_encoding_at_any_point(history: list[Ev], data: st.DataObject) -> None:
    definitions = load_definitions(RICH)
    split = data.draw(st.integers(0, len(history)), "split")
    check_round_trips(definitions, to_events(history), split)


def test_rich_file_is_exercised() -> None:
    """The rich file really leaves timers, profile, suppressions and segments in the state."""
    definitions = load_definitions(RICH)
    t0 = 1_793_613_600_000_000
    history = [
        Ev("a", t0, {"x": 1, "y": 1}),
        Ev("b", t0 + MINUTE, {"x": 1, "y": 2}),
        Ev("c", t0 + 2 * MINUTE, {"x": 2}),
        Ev("a", t0 + 3 * MINUTE, {"x": 2}),
        Ev("a", t0 + 4 * MINUTE, {"x": 0}),
    ]
    engine = Engine(definitions)
    state = engine.new_state("u1")
    records = []
    for event in to_events(history):
        records.extend(engine.process(state, event))
    kinds = {(r["pattern"], r.get("action") or r.get("to")) for r in records}
    assert ("cart", "met") in kinds and ("seq", "met") in kinds and ("avg", "met") in kinds
    assert ("seq", "trigger_events") in kinds and ("seq", "suppress_offers") in kinds
    assert state.timers and state.profile == {"count": 1} and "o1" in state.suppressed
    restored = UserState.decode(state.encode())
    assert restored.encode() == state.encode()
    assert engine.advance(restored, 2**62) == engine.advance(state, 2**62)
    check_round_trips(definitions, to_events(history), 2)


def test_large_integer_sums_still_encode() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: counter
    events: [{event: a, count: 5, aggregate: [{fn: sum, attribute: n, op: '>', value: 0}]}]
"""
    engine = Engine(load_definitions(text))
    state = engine.new_state("u1")
    big = 2**64 - 1  # the largest integer a JSON event can carry
    for minute in range(3):
        engine.process(state, E("a", 1_793_613_600_000_000 + minute * MINUTE, n=big))
    data = state.encode()
    assert UserState.decode(data).encode() == data
    records = engine.process(state, E("a", 1_793_613_600_000_000 + 3 * MINUTE, n=big))
    records += engine.process(state, E("a", 1_793_613_600_000_000 + 4 * MINUTE, n=-big))
    assert [r["to"] for r in records] == ["met"]


def test_missing_ignore_repeats_value_round_trips() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: counter
    ignore_repeats: y
    events: [{event: a, count: 2}]
"""
    definitions = load_definitions(text)
    t0 = 1_793_613_600_000_000
    # None (JSON null) is a value; a missing attribute is never a repeat.
    for values in ([None, None], [1, 1], ["missing", "missing"], [None, "missing"]):
        events = [
            E("a", t0 + i * MINUTE, **({} if v == "missing" else {"y": v}))
            for i, v in enumerate(values)
        ]
        expected, _ = play(definitions, events)
        assert play(definitions, events, reload=[True, True, True])[0] == expected
    assert play(definitions, [E("a", t0, y=1), E("a", t0 + 1, y=1)])[0] == []
    assert play(definitions, [E("a", t0), E("a", t0 + 1)])[0] != []


@pytest.mark.parametrize("data", [b"not json", b"[2, 1]", b"{}", b"[]"])
def test_decode_refuses_other_formats(data: bytes) -> None:
    with pytest.raises(StateFormatError):
        UserState.decode(data)
