"""The evaluator against SPEC section 4 (and the parts of 5-6 it drives)."""

from __future__ import annotations

from typing import Any

import pytest

from eventpatterns.core.evaluator import Engine
from eventpatterns.core.events import Event
from eventpatterns.core.state import UserState
from tests.core.conftest import E, actions, brief, defs, fired, ms, run, t, transitions

T0 = "2026-11-02T10:00:00Z"


def at_min(minutes: float) -> str:
    """T0 + minutes, as ISO text."""
    from eventpatterns.core.timeutil import format_us

    return format_us(t(T0) + int(minutes * 60_000_000))


def evs(*items: tuple[str, float] | tuple[str, float, dict[str, Any]]) -> list[Event]:
    out = []
    for item in items:
        name, minute = item[0], item[1]
        attributes = item[2] if len(item) > 2 else {}  # type: ignore[misc]
        out.append(E(name, at_min(minute), **attributes))
    return out


# ---------------------------------------------------------------------------------------
# Every pattern type x window mode

TYPES: dict[str, tuple[str, list[str]]] = {
    # type: (yaml of type-specific keys and events, names that complete the condition)
    "match_all": ("type: match_all\n    events: [{event: A}, {event: B}]", ["A", "B"]),
    "counter": (
        "type: counter\n    events: [{event: A, count: 2}, {event: B, count: 1}]",
        ["A", "A", "B"],
    ),
    "weighted_counter": (
        "type: weighted_counter\n    threshold: 3\n"
        "    events: [{event: A, weight: 1}, {event: B, weight: 2}]",
        ["A", "B"],
    ),
    "sequence": ("type: sequence\n    events: [{event: A}, {event: B}]", ["A", "B"]),
}


def typed(kind: str, window: str = "", extend: str = "") -> str:
    body, _ = TYPES[kind]
    return f"""
version: 1
patterns:
  - id: p
    {body}
    {window}
    {extend}
    on_met: [{{action: publish, topic: t, value: "${{now}}"}}]
"""


ALL_TYPES = list(TYPES)


@pytest.mark.parametrize("kind", ALL_TYPES)
@pytest.mark.parametrize(
    "window",
    ["", "window: {mode: rolling, duration: 1h}", "window: {mode: time_bound, duration: 1h}"],
)
def test_fires_when_complete_and_not_before(kind: str, window: str) -> None:
    names = TYPES[kind][1]
    events = [E(name, at_min(index)) for index, name in enumerate(names)]
    assert run(typed(kind, window), events[:-1]) == []
    records = run(typed(kind, window), events)
    last = ms(at_min(len(names) - 1))
    assert brief(records)[:2] == [
        ("T", last, "p", "not_met", "met"),
        ("A", last, "p", "publish", "met"),
    ]
    assert actions(records)[0]["value"] == last


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_unbounded_has_no_window_and_stays_met(kind: str) -> None:
    names = TYPES[kind][1]
    # A year apart: no window.
    events = [E(name, t(T0) + index * 365 * 86400 * 10**6) for index, name in enumerate(names)]
    events += [
        E(name, t(T0) + (10 + index) * 365 * 86400 * 10**6) for index, name in enumerate(names * 3)
    ]
    records = run(typed(kind), events, drain=True)
    assert len(fired(records)) == 1 and len(transitions(records)) == 1


def test_sequence_order_matters_in_every_mode() -> None:
    for window in (
        "",
        "window: {mode: rolling, duration: 1h}",
        "window: {mode: time_bound, duration: 1h}",
    ):
        assert run(typed("sequence", window), evs(("B", 0), ("A", 1))) == []
        assert fired(run(typed("sequence", window), evs(("B", 0), ("A", 1), ("B", 2)))) == [
            ms(at_min(2))
        ]


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_rolling_leaves_met_at_first_failing_occurrence_and_fires_again(kind: str) -> None:
    names = TYPES[kind][1]
    window = "window: {mode: rolling, duration: 1h}"
    first = [E(name, at_min(index)) for index, name in enumerate(names)]
    # Still in the window: a repeated last name keeps the condition true.
    keep = [E(names[-1], at_min(30))]
    # At +2h a lone A: nothing else in (t - 1h, t].
    leave = [E("A", at_min(120))]
    again = [E(name, at_min(121 + index)) for index, name in enumerate(names)]
    records = run(typed(kind, window), first + keep + leave + again)
    assert transitions(records) == [
        (ms(at_min(len(names) - 1)), "not_met", "met"),
        (ms(at_min(120)), "met", "not_met"),
        (ms(at_min(120 + len(names))), "not_met", "met"),
    ]
    assert len(actions(records)) == 2


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_rolling_window_is_half_open(kind: str) -> None:
    """(t - D, t]: an occurrence exactly D old is out."""
    names = TYPES[kind][1]
    window = "window: {mode: rolling, duration: 1h}"
    spaced = [E(name, at_min(60 * index)) for index, name in enumerate(names)]
    assert fired(run(typed(kind, window), spaced)) == []
    close = [E(name, at_min(60 * index - 1e-6 * index)) for index, name in enumerate(names)]
    if len(names) == 2:
        assert fired(run(typed(kind, window), close)) == [ms(at_min(60 - 1e-6))]


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_time_bound_clears_ignores_during_extension_and_returns_by_timer(kind: str) -> None:
    names = TYPES[kind][1]
    text = typed(kind, "window: {mode: time_bound, duration: 1h}", "extend_true_state: 30m")
    n = len(names)
    first = [E(name, at_min(index)) for index, name in enumerate(names)]
    during = [E(name, at_min(10 + index)) for index, name in enumerate(names)]  # ignored
    records = run(text, first + during)
    assert transitions(records) == [(ms(at_min(n - 1)), "not_met", "met")]
    # The extension ends by a timer, with no event needed.
    end = at_min(n - 1 + 30)
    records = run(text, first + during, until=end)
    assert transitions(records) == [
        (ms(at_min(n - 1)), "not_met", "met"),
        (ms(end), "met", "not_met"),
    ]
    # After the extension the events of the extension did not count, nor the first ones.
    after = [E(names[-1], at_min(50))]
    assert len(fired(run(text, first + during + after))) == 1
    # A fresh complete set fires again.
    fresh = [E(name, at_min(60 + index)) for index, name in enumerate(names)]
    assert len(fired(run(text, first + during + fresh))) == 2


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_time_bound_default_extension_is_zero(kind: str) -> None:
    names = TYPES[kind][1]
    text = typed(kind, "window: {mode: time_bound, duration: 1h}")
    events = [E(name, at_min(index)) for index, name in enumerate(names)]
    n = len(names)
    records = run(text, events)
    assert transitions(records) == [
        (ms(at_min(n - 1)), "not_met", "met"),
        (ms(at_min(n - 1)), "met", "not_met"),
    ]
    # The cleared occurrences do not count again; a second full set fires again.
    twice = events + [E(name, at_min(n + index)) for index, name in enumerate(names)]
    assert len(fired(run(text, twice))) == 2
    assert len(fired(run(text, [*events, E(names[-1], at_min(n))]))) == 1


def test_time_bound_slides_like_rolling_before_firing() -> None:
    text = typed("match_all", "window: {mode: time_bound, duration: 1h}")
    assert fired(run(text, evs(("A", 0), ("B", 61)))) == []
    assert fired(run(text, evs(("A", 0), ("A", 30), ("B", 61)))) == [ms(at_min(61))]


def test_rolling_sequence_stays_met_while_a_chain_is_in_the_window() -> None:
    text = typed("sequence", "window: {mode: rolling, duration: 1h}")
    records = run(text, evs(("A", 0), ("B", 10), ("B", 50), ("A", 59), ("B", 65), ("A", 100)))
    assert transitions(records) == [(ms(at_min(10)), "not_met", "met")]
    # At 100 (window (40, 100]): A@100 alone -> not_met.
    records = run(text, evs(("A", 0), ("B", 10), ("B", 39), ("A", 100)))
    assert transitions(records) == [
        (ms(at_min(10)), "not_met", "met"),
        (ms(at_min(100)), "met", "not_met"),
    ]


# ---------------------------------------------------------------------------------------
# Sequences: gaps, aliases, equal times

SEQ_GAPS = """
version: 1
patterns:
  - id: p
    type: sequence
    events:
      - {event: A, as: a}
      - {event: B, min_after: 10m, max_after: 20m}
      - {event: C, where: "level > a.level", max_after: 5m}
    on_met: [{action: publish, topic: t, value: {level: "${a.level}", at: "${now}"}}]
"""


def test_sequence_gaps_are_inclusive() -> None:
    ok = evs(("A", 0, {"level": 1}), ("B", 10), ("C", 15, {"level": 2}))
    assert fired(run(SEQ_GAPS, ok)) == [ms(at_min(15))]
    ok = evs(("A", 0, {"level": 1}), ("B", 20), ("C", 25, {"level": 2}))
    assert fired(run(SEQ_GAPS, ok)) == [ms(at_min(25))]


@pytest.mark.parametrize(
    "events",
    [
        [("A", 0, {"level": 1}), ("B", 9.99), ("C", 12, {"level": 2})],  # B too soon
        [("A", 0, {"level": 1}), ("B", 20.01), ("C", 22, {"level": 2})],  # B too late
        [("A", 0, {"level": 1}), ("B", 15), ("C", 20.01, {"level": 2})],  # C too late
        [("A", 0, {"level": 2}), ("B", 15), ("C", 16, {"level": 2})],  # where false
        [("A", 0, {"level": 2}), ("B", 15), ("C", 16)],  # missing attribute
    ],
)
def test_sequence_gap_and_alias_failures(events: list[Any]) -> None:
    assert run(SEQ_GAPS, evs(*events)) == []


def test_sequence_searches_all_chains() -> None:
    # Only the second A and second B make a valid chain with C.
    events = evs(
        ("A", 0, {"level": 5}),
        ("A", 5, {"level": 1}),
        ("B", 12),  # 12 after A@0 (ok), 7 after A@5 (too soon)
        ("B", 16),  # 16 after A@0, 11 after A@5
        ("C", 18, {"level": 3}),  # > 1 (A@5) but not > 5 (A@0)
    )
    records = run(SEQ_GAPS, events)
    assert fired(records) == [ms(at_min(18))]
    assert actions(records)[0]["value"] == {"level": 1, "at": ms(at_min(18))}


def test_sequence_equal_times_use_arrival_order() -> None:
    text = typed("sequence")
    assert fired(run(text, [E("A", T0), E("B", T0)])) == [ms(T0)]
    assert fired(run(text, [E("B", T0), E("A", T0)])) == []


def test_one_event_is_not_two_sequence_steps() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: sequence
    events: [{event: click}, {event: click, where: "category == 'shoes'"}]
"""
    assert run(text, [E("click", T0, category="shoes")]) == []
    assert fired(run(text, [E("click", T0), E("click", T0, category="shoes")])) == [ms(T0)]


def test_sequence_same_name_in_steps() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: sequence
    events: [{event: A}, {event: B}, {event: A}]
"""
    assert run(text, evs(("A", 0), ("B", 1))) == []
    assert run(text, evs(("B", 0), ("A", 1), ("A", 2))) == []
    assert fired(run(text, evs(("A", 0), ("B", 1), ("A", 2)))) == [ms(at_min(2))]


# ---------------------------------------------------------------------------------------
# start / end, audience

DATES = """
version: 1
patterns:
  - id: p
    type: match_all
    start: "2026-11-02T10:00:00Z"
    end: "2026-11-02T11:00:00+00:00"
    events: [{event: A}, {event: B}]
"""


@pytest.mark.parametrize(
    ("a", "b", "fires"),
    [
        ("2026-11-02T09:59:59.999999Z", "2026-11-02T10:30:00Z", False),
        ("2026-11-02T10:00:00Z", "2026-11-02T10:30:00Z", True),
        ("2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z", False),
        ("2026-11-02T10:00:00Z", "2026-11-02T10:59:59.999999Z", True),
    ],
)
def test_start_end_half_open(a: str, b: str, fires: bool) -> None:
    assert bool(fired(run(DATES, [E("A", a), E("B", b)]))) is fires


def test_audience_false_does_not_count() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: counter
    audience: "tier == 'gold' and 25 <= age <= 35"
    events: [{event: A, count: 2}]
"""
    assert (
        run(
            text, [E("A", at_min(0), tier="gold", age=30), E("A", at_min(1), tier="silver", age=30)]
        )
        == []
    )
    assert run(text, [E("A", at_min(0), tier="gold", age=30), E("A", at_min(1), tier="gold")]) == []
    assert (
        run(text, [E("A", at_min(0), tier="gold", age=30), E("A", at_min(1), tier="gold", age=36)])
        == []
    )
    events = [E("A", at_min(0), tier="gold", age=25), E("A", at_min(1), tier="gold", age=35)]
    assert fired(run(text, events)) == [ms(at_min(1))]


# ---------------------------------------------------------------------------------------
# ignore_repeats

REPEATS = """
version: 1
patterns:
  - id: p
    type: counter
    audience: "not (tier == 'banned')"
    start: "2026-11-02T09:00:00Z"
    ignore_repeats: productId
    events: [{event: view, where: "category == 'shoes'", count: 3}]
    suspend: {event: pause, duration: 1h}
"""


def views(*specs: tuple[float, Any] | tuple[float, Any, dict[str, Any]]) -> list[Event]:
    out = []
    for spec in specs:
        extra = spec[2] if len(spec) > 2 else {}  # type: ignore[misc]
        attributes = {"category": "shoes", **extra}
        if spec[1] is not None:
            attributes["productId"] = spec[1]
        out.append(E("view", at_min(spec[0]), **attributes))
    return out


def test_ignore_repeats_counts_changes_only() -> None:
    assert run(REPEATS, views((0, "P1"), (1, "P1"), (2, "P1"), (3, "P1"))) == []
    assert fired(run(REPEATS, views((0, "P1"), (1, "P2"), (2, "P1")))) == [ms(at_min(2))]
    assert fired(run(REPEATS, views((0, "P1"), (1, "P1"), (2, "P2"), (3, "P2"), (4, "P1")))) == [
        ms(at_min(4))
    ]


def test_ignore_repeats_missing_value_is_never_a_repeat() -> None:
    assert fired(run(REPEATS, views((0, None), (1, None), (2, None)))) == [ms(at_min(2))]
    # A missing value in between breaks a repeat: P1, (none), P1 are three occurrences.
    assert fired(run(REPEATS, views((0, "P1"), (1, None), (2, "P1")))) == [ms(at_min(2))]


def test_ignore_repeats_previous_must_match_where() -> None:
    # The hat view is not a composing event: the next P1 repeats the first.
    events = views((0, "P1"), (1, "P1", {"category": "hats"}), (2, "P1"), (3, "P2"), (4, "P3"))
    assert fired(run(REPEATS, events)) == [ms(at_min(4))]
    assert run(REPEATS, events[:4]) == []


def test_ignore_repeats_previous_must_match_audience_and_dates() -> None:
    events = views((0, "P1"), (1, "P2", {"tier": "banned"}), (2, "P1"), (3, "P2"))
    assert run(REPEATS, events) == []  # P1 at 2 repeats P1 at 0: only P1, P2 count
    before_start = [E("view", "2026-11-02T08:59:00Z", category="shoes", productId="P1")]
    assert fired(run(REPEATS, before_start + views((0, "P1"), (1, "P2"), (2, "P3")))) == [
        ms(at_min(2))
    ]
    # The view before start is not previous: P1 at 0 counts after a pre-start P1.


def test_ignore_repeats_ignored_events_are_previous_too() -> None:
    # P1, P1 (ignored), P1 (previous is the ignored P1: still a repeat), P2, P3
    events = views((0, "P1"), (1, "P1"), (2, "P1"), (3, "P2"), (4, "P3"))
    assert fired(run(REPEATS, events)) == [ms(at_min(4))]


def test_ignore_repeats_event_during_suspension_is_previous() -> None:
    # P2 during the suspension does not count but is the previous composing event.
    events = [
        *views((0, "P1")),
        E("pause", at_min(1)),
        *views((2, "P2"), (70, "P2"), (71, "P3"), (72, "P4")),
    ]
    records = run(REPEATS, events)
    assert fired(records) == [ms(at_min(72))]  # counted: P1, P3, P4


def test_ignore_repeats_across_composing_events_of_one_pattern() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: match_all
    ignore_repeats: productId
    events: [{event: view}, {event: cart}]
  - id: q
    type: match_all
    events: [{event: view}, {event: cart}]
"""
    records = run(
        text, [E("view", at_min(0), productId="P1"), E("cart", at_min(1), productId="P1")]
    )
    assert fired(records, "p") == [] and fired(records, "q") == [ms(at_min(1))]
    records = run(
        text, [E("view", at_min(0), productId="P1"), E("cart", at_min(1), productId="P2")]
    )
    assert fired(records, "p") == [ms(at_min(1))]


def test_ignore_repeats_is_per_pattern() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: counter
    ignore_repeats: productId
    events: [{event: view, count: 2}]
  - id: q
    type: counter
    ignore_repeats: productId
    events: [{event: view, count: 2, where: "productId != 'P2'"}]
"""
    events = [
        E("view", at_min(0), productId="P1"),
        E("view", at_min(1), productId="P2"),
        E("view", at_min(2), productId="P1"),
    ]
    records = run(text, events)
    # p: P1, P2 -> fires at 1. q: P1 (P2 not composing), P1 again -> a repeat.
    assert fired(records, "p") == [ms(at_min(1))] and fired(records, "q") == []


# ---------------------------------------------------------------------------------------
# One event, several composing events


@pytest.mark.parametrize(
    "body",
    [
        "type: match_all\n    events: [{event: click, where: \"category == 'shoes'\"}, "
        "{event: click, where: 'price > 100'}]",
        "type: counter\n    events: [{event: click, count: 1}, "
        "{event: click, where: 'price > 100'}]",
        "type: weighted_counter\n    threshold: 3\n    events: [{event: click, weight: 1}, "
        "{event: click, where: 'price > 100', weight: 2}]",
    ],
)
def test_one_event_counts_for_each_composing_event(body: str) -> None:
    text = f"version: 1\npatterns:\n  - id: p\n    {body}\n"
    assert fired(run(text, [E("click", T0, category="shoes", price=200)])) == [ms(T0)]
    assert run(text, [E("click", T0, category="hats", price=50)]) == []


def test_one_event_counts_for_each_counter_step() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: counter
    events: [{event: click, count: 2}, {event: click, where: "category == 'shoes'", count: 1}]
"""
    assert fired(run(text, [E("click", at_min(0), category="shoes"), E("click", at_min(1))])) == [
        ms(at_min(1))
    ]
    assert run(text, [E("click", at_min(0)), E("click", at_min(1))]) == []


# ---------------------------------------------------------------------------------------
# Aggregates


def agg(aggregate: str, *, window: str = "", count: int = 1, extra: str = "") -> str:
    return f"""
version: 1
patterns:
  - id: p
    type: counter
    {window}
    events:
      - {{event: purchase, count: {count}, aggregate: [{aggregate}]}}
      {extra}
"""


def buys(*amounts: Any, start: float = 0, step: float = 1) -> list[Event]:
    out = []
    for index, amount in enumerate(amounts):
        attributes = {} if amount is None else {"amount": amount}
        out.append(E("purchase", at_min(start + index * step), **attributes))
    return out


def test_aggregate_sum_unbounded() -> None:
    text = agg("{fn: sum, attribute: amount, op: '>=', value: 100}", count=2)
    assert run(text, buys(30, 40)) == []
    assert fired(run(text, buys(30, 40, 30))) == [ms(at_min(2))]
    assert fired(run(text, buys(60, 40))) == [ms(at_min(1))]


def test_aggregate_missing_and_non_numeric_count_as_zero() -> None:
    text = agg("{fn: sum, attribute: amount, op: '>=', value: 100}", count=3)
    assert fired(run(text, buys(None, "abc", 100))) == [ms(at_min(2))]
    text = agg("{fn: sum, attribute: amount, op: '>=', value: 101}", count=3)
    assert run(text, buys(None, "150", True, [200], {"x": 300}, 100)) == []
    text = agg("{fn: avg, attribute: amount, op: '>=', value: 50}", count=2)
    assert fired(run(text, buys(100, None))) == [ms(at_min(1))]
    text = agg("{fn: avg, attribute: amount, op: '>', value: 50}", count=2)
    assert run(text, buys(100, None)) == []
    text = agg("{fn: avg, attribute: amount, op: '>=', value: 50}", count=3)
    assert run(text, buys(100, None, "x")) == []  # 33.3


@pytest.mark.parametrize(
    ("aggregate", "amounts", "fires_at"),
    [
        ("{fn: min, attribute: amount, op: '>=', value: 10}", [20, 5, 30], 0),
        ("{fn: min, attribute: amount, op: '<', value: 10}", [20, 5, 30], 1),
        ("{fn: max, attribute: amount, op: '>', value: 25}", [20, 5, 30], 2),
        ("{fn: max, attribute: amount, op: '<=', value: 20}", [30, 5], None),
        ("{fn: avg, attribute: amount, op: '==', value: 15}", [20, 10], 1),
        ("{fn: avg, attribute: amount, op: '!=', value: 20}", [20, 20, 21], 2),
        ("{fn: sum, attribute: amount, op: '>=', value: 0.3}", [0.1, 0.2], 1),
        ("{fn: min, attribute: amount, op: '<', value: 0}", [3, -1.5], 1),
    ],
)
def test_aggregate_functions(aggregate: str, amounts: list[Any], fires_at: int | None) -> None:
    records = run(agg(aggregate), buys(*amounts))
    assert fired(records) == ([] if fires_at is None else [ms(at_min(fires_at))])


def test_aggregate_of_no_occurrences_is_zero() -> None:
    # B has no occurrence: its avg (and sum) is 0.
    text = """
version: 1
patterns:
  - id: p
    type: weighted_counter
    threshold: 5
    events:
      - {event: A, weight: 5}
      - {event: B, weight: 1, aggregate: [{fn: avg, attribute: amount, op: '<', value: 1}]}
  - id: q
    type: weighted_counter
    threshold: 5
    events:
      - {event: A, weight: 5}
      - {event: B, weight: 1, aggregate: [{fn: avg, attribute: amount, op: '>=', value: 1}]}
"""
    records = run(text, [E("A", T0)])
    assert fired(records, "p") == [ms(T0)] and fired(records, "q") == []
    records = run(text, [E("A", at_min(0)), E("B", at_min(1), amount=1)])
    assert fired(records, "q") == [ms(at_min(1))]


def test_aggregates_several_on_one_event_and_on_several_events() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: counter
    events:
      - event: purchase
        count: 2
        aggregate:
          - {fn: sum, attribute: amount, op: '>=', value: 100}
          - {fn: max, attribute: item, op: '>=', value: 50}
      - event: visit
        aggregate: [{fn: sum, attribute: seconds, op: '>', value: 60}]
"""
    base = [
        E("purchase", at_min(0), amount=70, item=60),
        E("purchase", at_min(1), amount=40, item=10),
    ]
    assert run(text, [*base, E("visit", at_min(2), seconds=60)]) == []
    records = run(
        text, [*base, E("visit", at_min(2), seconds=60), E("visit", at_min(3), seconds=1)]
    )
    assert fired(records) == [ms(at_min(3))]
    low_item = [
        E("purchase", at_min(0), amount=70, item=40),
        E("purchase", at_min(1), amount=40, item=49),
    ]
    assert run(text, [*low_item, E("visit", at_min(2), seconds=100)]) == []


@pytest.mark.parametrize("mode", ["rolling", "time_bound"])
def test_aggregate_in_window(mode: str) -> None:
    text = agg(
        "{fn: sum, attribute: amount, op: '>=', value: 100}",
        window=f"window: {{mode: {mode}, duration: 1h}}",
    )
    # 60 at 0 leaves the window by 70: 60 + 50 is not summed.
    assert run(text, [*buys(60), *buys(50, start=70)]) == []
    assert fired(run(text, [*buys(60), *buys(50, start=30)])) == [ms(at_min(30))]
    # Many small amounts: every occurrence in the window is summed (no cap at count).
    assert fired(run(text, buys(*([10] * 10)))) == [ms(at_min(9))]


def test_aggregate_rolling_leaves_met_when_aggregate_fails() -> None:
    text = agg(
        "{fn: max, attribute: amount, op: '>=', value: 100}",
        window="window: {mode: rolling, duration: 1h}",
    )
    records = run(
        text, [*buys(150), *buys(10, start=30), *buys(10, start=70), *buys(120, start=80)]
    )
    assert transitions(records) == [
        (ms(at_min(0)), "not_met", "met"),
        (ms(at_min(70)), "met", "not_met"),
        (ms(at_min(80)), "not_met", "met"),
    ]


def test_aggregate_avg_unbounded_over_all() -> None:
    text = agg("{fn: avg, attribute: amount, op: '>=', value: 10}", count=4)
    assert run(text, buys(1, 2, 3, 33)) == []  # avg 9.75
    assert fired(run(text, buys(1, 2, 3, 34))) == [ms(at_min(3))]  # avg 10


# ---------------------------------------------------------------------------------------
# Event macros (SPEC section 6)

MACROS = """
version: 1
offers:
  - {code: offer1, attributes: {category: shoes, channel: web}}
  - {code: offer2, attributes: {category: hats, channel: web}}
  - {code: offer3, attributes: {category: shoes, channel: app}}
patterns:
  - id: accepted1
    type: match_all
    events: [{event: offerAccepted, offer: offer1}]
  - id: shoes_accepted
    type: counter
    events: [{event: offerAcceptedInCategory, attribute: category, value: shoes, count: 2}]
  - id: web_contacts
    type: match_all
    events: [{event: offerContacted, where: "channel == 'web'"}]
  - id: hats_rejected
    type: match_all
    events: [{event: offerRejectedInCategory, attribute: category, value: hats}]
"""


def test_offer_accepted_counts_its_offer_only() -> None:
    records = run(MACROS, [E("offerAccepted", at_min(0), offer="offer2")])
    assert fired(records, "accepted1") == []
    records = run(MACROS, [E("offerAccepted", at_min(0), offer="offer1")])
    assert fired(records, "accepted1") == [ms(at_min(0))]


def test_offer_accepted_in_category_uses_catalogue_attributes() -> None:
    events = [
        E("offerAccepted", at_min(0), offer="offer1"),
        E("offerAccepted", at_min(1), offer="offer2"),
        E("offerAccepted", at_min(2), offer="offer3"),
    ]
    assert fired(run(MACROS, events), "shoes_accepted") == [ms(at_min(2))]
    # Not acceptances: contacts and rejections of shoes offers do not count.
    events = [
        E("offerContacted", at_min(0), offer="offer1"),
        E("offerRejected", at_min(1), offer="offer3"),
    ]
    assert fired(run(MACROS, events), "shoes_accepted") == []


def test_event_own_attributes_win_over_catalogue() -> None:
    events = [
        E("offerAccepted", at_min(0), offer="offer2", category="shoes"),
        E("offerAccepted", at_min(1), offer="offer1", category="hats"),
    ]
    records = run(MACROS, events)
    assert fired(records, "shoes_accepted") == []  # only one shoes acceptance
    assert fired(
        run(MACROS, [*events, E("offerAccepted", at_min(2), offer="offer3")]), "shoes_accepted"
    ) == [ms(at_min(2))]
    records = run(MACROS, [E("offerRejected", at_min(0), offer="offer1", category="hats")])
    assert fired(records, "hats_rejected") == [ms(at_min(0))]


def test_macro_catalogue_attributes_visible_to_where() -> None:
    assert fired(run(MACROS, [E("offerContacted", T0, offer="offer3")]), "web_contacts") == []
    assert fired(run(MACROS, [E("offerContacted", T0, offer="offer2")]), "web_contacts") == [ms(T0)]
    assert fired(
        run(MACROS, [E("offerContacted", T0, offer="nope", channel="web")]), "web_contacts"
    ) == [ms(T0)]


def test_in_category_macro_name_itself_is_not_an_event() -> None:
    records = run(MACROS, [E("offerAcceptedInCategory", T0, category="shoes", offer="offer1")] * 2)
    assert records == []


# ---------------------------------------------------------------------------------------
# Order: file order, FIFO of posted events, chain depth

ORDER = """
version: 1
patterns:
  - id: zeta
    type: match_all
    events: [{event: go}]
    on_met:
      - {action: publish, topic: t, value: z1}
      - {action: trigger_events, events: [x, y]}
      - {action: publish, topic: t, value: z2}
  - id: alpha
    type: match_all
    events: [{event: go}]
    on_met:
      - {action: trigger_events, events: [w]}
      - {action: publish, topic: t, value: a1}
  - id: on_x
    type: match_all
    events: [{event: x}]
    on_met: [{action: trigger_events, events: [v]}, {action: publish, topic: t, value: x}]
  - id: on_y
    type: match_all
    events: [{event: y}]
    on_met: [{action: publish, topic: t, value: y}]
  - id: on_w
    type: match_all
    events: [{event: w}]
    on_met: [{action: publish, topic: t, value: w}]
  - id: on_v
    type: match_all
    events: [{event: v}]
    on_met: [{action: publish, topic: t, value: "${now}"}]
"""


def test_file_order_and_fifo_of_posted_events() -> None:
    records = run(ORDER, [E("go", T0)])
    sequence = [(r["pattern"], r.get("to") or r.get("value") or r["action"]) for r in records]
    assert sequence == [
        ("zeta", "met"),
        ("zeta", "z1"),
        ("zeta", "trigger_events"),
        ("zeta", "z2"),
        ("alpha", "met"),
        ("alpha", "trigger_events"),
        ("alpha", "a1"),
        # posted: x, y (zeta), w (alpha) in order; then v (posted by x) last
        ("on_x", "met"),
        ("on_x", "trigger_events"),
        ("on_x", "x"),
        ("on_y", "met"),
        ("on_y", "y"),
        ("on_w", "met"),
        ("on_w", "w"),
        ("on_v", "met"),
        ("on_v", ms(T0)),
    ]
    assert {r["time"] for r in records} == {ms(T0)}


def chain_yaml(length: int) -> str:
    patterns = []
    for index in range(length):
        patterns.append(
            f"  - id: p{index}\n    type: match_all\n    events: [{{event: e{index}}}]\n"
            f"    on_met: [{{action: trigger_events, events: [e{index + 1}]}}]\n"
        )
    return "version: 1\npatterns:\n" + "".join(patterns)


def test_chain_depth_limit_is_eight() -> None:
    records = run(chain_yaml(12), [E("e0", T0)])
    assert fired(records) == [ms(T0)] * 9  # e0 (from outside) and e1..e8 (posted)
    errors = [r for r in records if r["kind"] == "error"]
    assert len(errors) == 1
    error = errors[0]
    assert error["pattern"] == "p8" and error["user_id"] == "u1" and error["time"] == ms(T0)
    assert error["event"] == "e9" and "8" in error["error"]
    assert records[-1] is error
    # The error is not fatal: another user's chain runs the same way afterwards.
    records = run(chain_yaml(12), [E("e0", T0), E("e0", at_min(1), user="u2")])
    assert len(fired(records)) == 18
    assert [r["user_id"] for r in records if r["kind"] == "error"] == ["u1", "u2"]


def test_chain_depth_cuts_a_loop() -> None:
    text = """
version: 1
patterns:
  - id: loop
    type: match_all
    window: {mode: time_bound, duration: 1s}
    events: [{event: ping}]
    on_met:
      - {action: reset_pattern}
      - {action: trigger_events, events: [ping], attributes: {n: 1}}
"""
    records = run(text, [E("ping", T0)])
    assert len(fired(records)) == 9
    assert [r["kind"] for r in records].count("error") == 1
    assert records[-1]["kind"] == "error"


def test_posted_events_get_depth() -> None:
    engine = Engine(defs(chain_yaml(3)))
    state = engine.new_state("u1")
    records = engine.process(state, E("e0", T0))
    assert fired(records) == [ms(T0)] * 3
    trigger = actions(records)[0]
    assert trigger["events"] == ["e1"] and trigger["attributes"] == {}


# ---------------------------------------------------------------------------------------
# Timers

TIMERS = """
version: 1
patterns:
  - id: p
    type: match_all
    events: [{event: go}]
    on_met:
      - {action: publish, topic: t, value: second, delay: 2h}
      - {action: publish, topic: t, value: first, delay: 1h}
      - {action: publish, topic: t, value: also_first, delay: 60m}
      - {action: publish, topic: t, value: now}
  - id: q
    type: match_all
    window: {mode: rolling, duration: 1d}
    events: [{event: go}, {event: stop}]
    checkpoints:
      - {after: 90m, actions: [{action: publish, topic: t, value: checkpoint}]}
"""


def test_timers_run_before_an_event_in_due_order() -> None:
    records = run(TIMERS, [E("go", T0), E("other", at_min(180))])
    assert [(a["time"], a["value"]) for a in actions(records)] == [
        (ms(T0), "now"),
        (ms(at_min(60)), "first"),
        (ms(at_min(60)), "also_first"),
        (ms(at_min(90)), "checkpoint"),
        (ms(at_min(120)), "second"),
    ]


def test_timer_due_at_event_time_runs_before_the_event() -> None:
    records = run(TIMERS, [E("go", T0), E("stop", at_min(90))])
    kinds = [(r["pattern"], r.get("value") or r.get("to")) for r in records]
    assert kinds[-3:] == [("p", "also_first"), ("q", "checkpoint"), ("q", "met")]


def test_timers_only_up_to_the_event_time() -> None:
    records = run(TIMERS, [E("go", T0), E("other", at_min(61))])
    assert [a["value"] for a in actions(records)] == ["now", "first", "also_first"]
    engine = Engine(defs(TIMERS))
    state = engine.new_state("u1")
    engine.process(state, E("go", T0))
    assert state.next_due() == t(at_min(60))
    assert [a["value"] for a in engine.advance(state, t(at_min(59)))] == []
    assert [a["value"] for a in engine.advance(state, t(at_min(200)))] == [
        "first",
        "also_first",
        "checkpoint",
        "second",
    ]
    assert state.next_due() is None


def test_late_event_is_processed_at_its_own_time() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: counter
    events: [{event: go, count: 2}]
    on_met:
      - {action: publish, topic: t, value: {at: "${now}", ns: "${now_ns}"}}
      - {action: publish, topic: t, value: later, delay: 30m}
  - id: q
    type: match_all
    events: [{event: ping}]
    on_met: [{action: publish, topic: t, value: "${now}", delay: 10m}]
"""
    records = run(
        text,
        [E("ping", at_min(0)), E("go", at_min(120)), E("go", at_min(60))],
        until=at_min(200),
    )
    # q's timer (due at 10) ran before the event at 120 and is not run again.
    # The late go at 60 is processed at 60: p fires with now = 60; its delayed action is due
    # at 90, already in the user's past, and runs at the end-of-input tick.
    assert [(a["pattern"], a["time"], a["value"]) for a in actions(records)] == [
        ("q", ms(at_min(10)), ms(at_min(10))),
        ("p", ms(at_min(60)), {"at": ms(at_min(60)), "ns": t(at_min(60)) * 1000}),
        ("p", ms(at_min(90)), "later"),
    ]
    assert transitions(records, "p") == [(ms(at_min(60)), "not_met", "met")]


# ---------------------------------------------------------------------------------------
# Reset


RESET = """
version: 1
patterns:
  - id: p
    type: match_all
    events: [{event: A}, {event: B}]
    suspend: {event: S, duration: 1d}
    checkpoints: [{after: 1h, actions: [{action: publish, topic: t, value: cp}]}]
    on_met: [{action: publish, topic: t, value: met}]
  - id: r
    type: match_all
    window: {mode: time_bound, duration: 1m}
    events: [{event: R}]
    on_met: [{action: reset_pattern, target: p}]
  - id: self
    type: counter
    events: [{event: X, count: 2}]
    on_met: [{action: reset_pattern}, {action: publish, topic: t, value: self}]
"""


def test_reset_api_clears_met_and_occurrences() -> None:
    engine = Engine(defs(RESET))
    state = engine.new_state("u1")
    engine.process(state, E("A", at_min(0)))
    engine.process(state, E("B", at_min(1)))
    assert state.patterns["p"].status == 1
    records = engine.reset(state, "p", t(at_min(2)))
    assert brief(records) == [("T", ms(at_min(2)), "p", "met", "not_met")]
    # Occurrences are cleared: B alone does not fire, A then does.
    assert engine.process(state, E("B", at_min(3))) == []
    assert fired(engine.process(state, E("A", at_min(4)))) == [ms(at_min(4))]
    assert engine.reset(state, "nope", t(at_min(5))) == []


def test_reset_api_clears_suspension_and_checkpoints() -> None:
    engine = Engine(defs(RESET))
    state = engine.new_state("u1")
    engine.process(state, E("A", at_min(0)))  # checkpoint due at 60
    engine.process(state, E("S", at_min(1)))  # suspended until a day later
    assert len(state.timers) == 2
    records = engine.reset(state, "p", t(at_min(2)))
    assert brief(records) == [("T", ms(at_min(2)), "p", "suspended", "not_met")]
    assert state.timers == []
    # Counts again at once; the old A is gone.
    assert engine.process(state, E("B", at_min(3))) == []
    assert fired(engine.process(state, E("A", at_min(4)))) == [ms(at_min(4))]


def test_reset_api_runs_due_timers_first() -> None:
    engine = Engine(defs(RESET))
    state = engine.new_state("u1")
    engine.process(state, E("A", at_min(0)))
    records = engine.reset(state, "p", t(at_min(61)))
    assert [(r["kind"], r.get("value")) for r in records] == [("action", "cp")]


def test_reset_pattern_action_with_target() -> None:
    records = run(
        RESET,
        [
            E("A", at_min(0)),
            E("B", at_min(1)),
            E("R", at_min(2)),
            E("A", at_min(3)),
            E("B", at_min(4)),
        ],
    )
    assert brief(records) == [
        ("T", ms(at_min(1)), "p", "not_met", "met"),
        ("A", ms(at_min(1)), "p", "publish", "met"),
        ("T", ms(at_min(2)), "r", "not_met", "met"),
        ("A", ms(at_min(2)), "r", "reset_pattern", "met"),
        ("T", ms(at_min(2)), "p", "met", "not_met"),
        ("T", ms(at_min(2)), "r", "met", "not_met"),
        ("T", ms(at_min(4)), "p", "not_met", "met"),
        ("A", ms(at_min(4)), "p", "publish", "met"),
    ]
    assert actions(records, "r")[0]["target"] == "p"


def test_reset_pattern_action_default_target_is_itself() -> None:
    records = run(RESET, [E("X", at_min(index)) for index in range(5)])
    assert brief(records) == [
        ("T", ms(at_min(1)), "self", "not_met", "met"),
        ("A", ms(at_min(1)), "self", "reset_pattern", "met"),
        ("T", ms(at_min(1)), "self", "met", "not_met"),
        ("A", ms(at_min(1)), "self", "publish", "met"),
        ("T", ms(at_min(3)), "self", "not_met", "met"),
        ("A", ms(at_min(3)), "self", "reset_pattern", "met"),
        ("T", ms(at_min(3)), "self", "met", "not_met"),
        ("A", ms(at_min(3)), "self", "publish", "met"),
    ]
    assert actions(records)[0]["target"] == "self"


def test_reset_of_time_bound_cancels_extension_end() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: match_all
    window: {mode: time_bound, duration: 1h}
    extend_true_state: 1h
    events: [{event: A}]
"""
    engine = Engine(defs(text))
    state = engine.new_state("u1")
    engine.process(state, E("A", at_min(0)))
    engine.reset(state, "p", t(at_min(10)))
    assert state.timers == []
    assert fired(engine.process(state, E("A", at_min(11)))) == [ms(at_min(11))]


# ---------------------------------------------------------------------------------------
# Unbounded after a suspension: occurrences are kept


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_unbounded_met_then_suspended_refires_with_kept_occurrences(kind: str) -> None:
    body, names = TYPES[kind]
    text = f"""
version: 1
patterns:
  - id: p
    {body}
    suspend: {{event: S, duration: 1h}}
"""
    events = [E(name, at_min(index)) for index, name in enumerate(names)]
    events += [E("S", at_min(10)), E("Z", at_min(80)), E(names[-1], at_min(90))]
    records = run(text, events)
    n = len(names)
    assert transitions(records) == [
        (ms(at_min(n - 1)), "not_met", "met"),
        (ms(at_min(10)), "met", "suspended"),
        (ms(at_min(70)), "suspended", "not_met"),
        (ms(at_min(90)), "not_met", "met"),
    ]


def test_suspension_ignores_dates() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: match_all
    start: "2030-01-01T00:00:00Z"
    events: [{event: A}]
    suspend: {event: S, where: "reason == 'x'"}
"""
    assert transitions(run(text, [E("S", T0, reason="x")])) == [(ms(T0), "not_met", "suspended")]
    assert run(text, [E("S", T0, reason="y")]) == []


def test_event_that_suspends_and_composes_does_not_count() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: match_all
    events: [{event: A}]
    suspend: {event: A, where: "stop == 1", duration: 1h}
"""
    records = run(text, [E("A", at_min(0), stop=1), E("A", at_min(30)), E("A", at_min(61))])
    assert transitions(records) == [
        (ms(at_min(0)), "not_met", "suspended"),
        (ms(at_min(60)), "suspended", "not_met"),
        (ms(at_min(61)), "not_met", "met"),
    ]


def test_fingerprint_change_starts_fresh_state() -> None:
    engine = Engine(defs(typed("match_all")))
    state = engine.new_state("u1")
    engine.process(state, E("A", at_min(0)))
    other = Engine(defs(typed("match_all").replace('value: "${now}"', "value: changed")))
    assert other.process(state, E("B", at_min(1))) == []
    assert isinstance(state, UserState)


# ---------------------------------------------------------------------------------------
# Late events and windows


def test_late_event_does_not_evict_a_newer_occurrence() -> None:
    text = typed("match_all", "window: {mode: rolling, duration: 1h}")
    # A at 100, then a late A at 50: the window at 155 is (95, 155] and holds A@100.
    records = run(text, evs(("A", 100), ("A", 50), ("B", 155)))
    assert fired(records) == [ms(at_min(155))]


def test_late_event_keeps_window_pruning_by_time() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: counter
    window: {mode: rolling, duration: 1h}
    events: [{event: A, count: 3, aggregate: [{fn: sum, attribute: n, op: '>=', value: 0}]}]
"""
    # A@100, late A@30 (70 before it: never in a window with it), A@155: in (95, 155] only
    # A@100 and A@155 -> not 3; the late A@30 must have left the window.
    events = [E("A", at_min(100)), E("A", at_min(30)), E("A", at_min(155))]
    assert run(text, events) == []
    assert fired(run(text, [*events, E("A", at_min(156))])) == [ms(at_min(156))]


def test_late_event_in_unbounded_counts() -> None:
    text = typed("counter")
    records = run(text, evs(("A", 100), ("B", 110), ("A", 50)))
    assert fired(records) == [ms(at_min(50))]


def test_late_event_joins_the_current_window() -> None:
    """Decision (SPEC silent on windows for late events): a late event counts if it lies in
    the pattern's current window, the one ending at its latest occurrence; it cannot make
    the pattern forget occurrences recorded after it."""
    text = typed("match_all", "window: {mode: rolling, duration: 1h}")
    assert fired(run(text, evs(("A", 100), ("B", 50)))) == [ms(at_min(50))]
    assert run(text, evs(("A", 100), ("B", 40))) == []  # 60m apart: not in one window
    # A late A does not turn a met rolling pattern not_met.
    assert transitions(run(text, evs(("A", 0), ("B", 10), ("A", 5)))) == [
        (ms(at_min(10)), "not_met", "met")
    ]
    counter = typed("counter", "window: {mode: rolling, duration: 1h}")
    assert run(counter, evs(("A", 100), ("A", 30), ("B", 101))) == []
    assert fired(run(counter, evs(("A", 100), ("A", 45), ("B", 101)))) == [ms(at_min(101))]


def test_chain_depth_error_reported_on_stderr_by_replay() -> None:
    import io

    import orjson

    from eventpatterns.replay import run_replay

    out, err = io.BytesIO(), io.StringIO()
    line = orjson.dumps({"user_id": "u1", "event": "e0", "timestamp": T0}) + b"\n"
    run_replay(defs(chain_yaml(12)), io.BytesIO(line), out, err)
    records = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert len(fired(records)) == 9
    assert "p8" in err.getvalue() and "e9" in err.getvalue() and err.getvalue().count("\n") == 1


def test_late_event_can_complete_a_sequence() -> None:
    text = typed("sequence", "window: {mode: rolling, duration: 1h}")
    records = run(text, [E("A", at_min(0)), E("Z", at_min(30)), E("B", at_min(20))])
    assert fired(records) == [ms(at_min(20))]
