"""The worked examples of the seed documents and SPEC section 4, end to end."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from eventpatterns.core.definitions import load_definitions
from eventpatterns.core.events import Event, event_from_record
from eventpatterns.replay import run_replay
from tests.core.conftest import E, actions, brief, fired, ms, run, t, transitions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# ---------------------------------------------------------------------------------------
# SPEC section 4 worked example: P1 time_bound (extend 4d) vs P2 rolling, A and B in 7 days


P1_P2 = """
version: 1
patterns:
  - id: P1
    type: match_all
    window: {mode: time_bound, duration: 7d}
    extend_true_state: 4d
    events: [{event: A}, {event: B}]
    on_met: [{action: publish, topic: t, value: p1}]
  - id: P2
    type: match_all
    window: {mode: rolling, duration: 7d}
    events: [{event: A}, {event: B}]
    on_met: [{action: publish, topic: t, value: p2}]
"""

MON = "2026-11-02T10:00:00Z"
SAT = "2026-11-07T10:00:00Z"
WED = "2026-11-11T10:00:00Z"
NEXT_TUE = "2026-11-17T10:00:00Z"


def test_p1_p2_both_fire_on_saturday() -> None:
    records = run(P1_P2, [E("A", MON), E("B", SAT)])
    assert brief(records) == [
        ("T", ms(SAT), "P1", "not_met", "met"),
        ("A", ms(SAT), "P1", "publish", "met"),
        ("T", ms(SAT), "P2", "not_met", "met"),
        ("A", ms(SAT), "P2", "publish", "met"),
    ]
    assert [a["value"] for a in actions(records)] == ["p1", "p2"]


def test_p1_stays_met_until_wednesday_then_not_met() -> None:
    before = run(P1_P2, [E("A", MON), E("B", SAT)], until="2026-11-11T09:59:59.999Z")
    assert transitions(before, "P1") == [(ms(SAT), "not_met", "met")]
    after = run(P1_P2, [E("A", MON), E("B", SAT)], until=WED)
    assert transitions(after, "P1") == [(ms(SAT), "not_met", "met"), (ms(WED), "met", "not_met")]
    # P2 (rolling) has no timer: it stays met.
    assert transitions(after, "P2") == [(ms(SAT), "not_met", "met")]


def test_p1_ignores_composing_events_during_extension() -> None:
    records = run(P1_P2, [E("A", MON), E("B", SAT), E("A", "2026-11-09T10:00:00Z")])
    # P1 is met and ignores A on Monday 9th; nothing new happens for either pattern.
    assert fired(records, "P1") == [ms(SAT)]
    assert transitions(records, "P1") == [(ms(SAT), "not_met", "met")]
    # B on Thursday 12th after the extension: the A of the 9th was ignored, so no fire.
    records = run(
        P1_P2,
        [E("A", MON), E("B", SAT), E("A", "2026-11-09T10:00:00Z"), E("B", "2026-11-12T10:00:00Z")],
    )
    assert fired(records, "P1") == [ms(SAT)]
    # P2 is still met on the 12th (A of the 9th and B of the 12th are in its window).
    assert transitions(records, "P2") == [(ms(SAT), "not_met", "met")]


def test_b_on_next_tuesday() -> None:
    records = run(P1_P2, [E("A", MON), E("B", SAT), E("B", NEXT_TUE)])
    assert brief(records)[4:] == [
        ("T", ms(WED), "P1", "met", "not_met"),
        ("T", ms(NEXT_TUE), "P2", "met", "not_met"),
    ]
    # P1 stays not_met: no A since Wednesday.
    assert fired(records, "P1") == [ms(SAT)]


def test_p1_new_cycle_after_extension() -> None:
    records = run(
        P1_P2,
        [E("A", MON), E("B", SAT), E("A", "2026-11-12T10:00:00Z"), E("B", "2026-11-13T10:00:00Z")],
    )
    assert fired(records, "P1") == [ms(SAT), ms("2026-11-13T10:00:00Z")]
    # P2 never left met (A of the 12th and B of the 13th keep the condition true).
    assert fired(records, "P2") == [ms(SAT)]


# ---------------------------------------------------------------------------------------
# Weighted counter: A weight 2, B weight 5, threshold 10

WEIGHTED = """
version: 1
patterns:
  - id: W
    type: weighted_counter
    threshold: 10
    events: [{event: A, weight: 2}, {event: B, weight: 5}]
    on_met: [{action: publish, topic: t, value: w}]
"""


def _times(n: int) -> list[str]:
    return [f"2026-11-02T10:{minute:02d}:00Z" for minute in range(n)]


@pytest.mark.parametrize(
    ("names", "fires_at"),
    [
        ("AAAAA", 4),  # 5 x 2 = 10
        ("BB", 1),  # 2 x 5 = 10
        ("AAAB", 3),  # 3 x 2 + 5 = 11
        ("BAAA", 3),  # 5, 7, 9, 11
        ("ABAA", 3),  # 2, 7, 9, 11
    ],
)
def test_weighted_counter_seed_examples(names: str, fires_at: int) -> None:
    times = _times(len(names))
    records = run(WEIGHTED, [E(n, when) for n, when in zip(names, times, strict=True)])
    assert fired(records) == [ms(times[fires_at])]
    assert len(actions(records)) == 1


@pytest.mark.parametrize("names", ["AAAA", "B", "AAB", "ABA", "CCCCCC"])
def test_weighted_counter_does_not_fire_below_threshold(names: str) -> None:
    times = _times(len(names))
    records = run(WEIGHTED, [E(n, when) for n, when in zip(names, times, strict=True)])
    assert records == []


# ---------------------------------------------------------------------------------------
# Qualifying and suspending events: the credit card


def card_yaml(suspend: str, mode: str = "rolling", extend: str = "") -> str:
    return f"""
version: 1
patterns:
  - id: card
    type: match_all
    window: {{mode: {mode}, duration: 60d}}
    {extend}
    audience: "segment == 'retail'"
    events:
      - {{event: open_bank_account}}
      - {{event: ATM_activity}}
      - {{event: offer_credit_card}}
    suspend: {suspend}
    on_met: [{{action: publish, topic: offers, value: credit_card}}]
"""


def day(n: int, hour: int = 10) -> str:
    """Day n after Monday 2026-11-02 (0-based), at `hour`."""
    from datetime import date, timedelta

    d = date(2026, 11, 2) + timedelta(days=n)
    return f"{d.isoformat()}T{hour:02d}:00:00Z"


def R(name: str, when: str, **attributes: Any) -> Event:
    return E(name, when, segment="retail", **attributes)


def test_card_fires_without_suspension() -> None:
    records = run(
        card_yaml("{event: got_card}"),
        [
            R("open_bank_account", day(0)),
            R("ATM_activity", day(10)),
            R("offer_credit_card", day(40)),
        ],
    )
    assert fired(records) == [ms(day(40))]


def test_card_suspended_until_reset() -> None:
    events = [
        R("open_bank_account", day(0)),
        E("got_card", day(30)),  # no audience attribute: suspending events ignore audience
        R("ATM_activity", day(31)),
        R("offer_credit_card", day(32)),
    ]
    records = run(card_yaml("{event: got_card}"), events, drain=True)
    assert transitions(records) == [(ms(day(30)), "not_met", "suspended")]
    assert actions(records) == []


def test_card_suspension_with_duration_keeps_occurrences() -> None:
    events = [
        R("open_bank_account", day(0)),
        R("ATM_activity", day(5)),
        E("got_card", day(10)),
        R("offer_credit_card", day(15)),  # suspended: does not count
        R("offer_credit_card", day(21)),  # counts, with the kept occurrences of days 0 and 5
    ]
    records = run(card_yaml("{event: got_card, duration: 10d}"), events)
    assert brief(records) == [
        ("T", ms(day(10)), "card", "not_met", "suspended"),
        ("T", ms(day(20)), "card", "suspended", "not_met"),
        ("T", ms(day(21)), "card", "not_met", "met"),
        ("A", ms(day(21)), "card", "publish", "met"),
    ]


def test_card_suspension_ends_by_timer_without_event() -> None:
    events = [R("open_bank_account", day(0)), E("got_card", day(10))]
    assert transitions(run(card_yaml("{event: got_card, duration: 10d}"), events)) == [
        (ms(day(10)), "not_met", "suspended")
    ]
    records = run(card_yaml("{event: got_card, duration: 10d}"), events, until=day(20))
    assert transitions(records) == [
        (ms(day(10)), "not_met", "suspended"),
        (ms(day(20)), "suspended", "not_met"),
    ]


def test_card_windows_still_apply_after_suspension() -> None:
    events = [
        R("open_bank_account", day(0)),
        R("ATM_activity", day(5)),
        E("got_card", day(10)),
        R("offer_credit_card", day(61)),  # open_bank_account is now older than 60 days
    ]
    records = run(card_yaml("{event: got_card, duration: 10d}"), events)
    assert fired(records) == []
    records = run(
        card_yaml("{event: got_card, duration: 10d}"), [*events, R("open_bank_account", day(62))]
    )
    assert fired(records) == [ms(day(62))]


def test_card_second_suspending_event_extends_suspension() -> None:
    events = [
        R("open_bank_account", day(0)),
        R("ATM_activity", day(5)),
        E("got_card", day(10)),  # until day 20
        E("got_card", day(15)),  # until day 25
        E("got_card", day(16)),  # until day 26
        R("offer_credit_card", day(24)),  # still suspended
        R("offer_credit_card", day(27)),
    ]
    records = run(card_yaml("{event: got_card, duration: 10d}"), events)
    assert transitions(records) == [
        (ms(day(10)), "not_met", "suspended"),
        (ms(day(26)), "suspended", "not_met"),
        (ms(day(27)), "not_met", "met"),
    ]


def test_card_shorter_suspension_does_not_shorten() -> None:
    yaml_text = card_yaml("[{event: got_card, duration: 10d}, {event: card_query, duration: 1d}]")
    events = [E("got_card", day(10)), E("card_query", day(11))]
    records = run(yaml_text, events, drain=True)
    assert transitions(records) == [
        (ms(day(10)), "not_met", "suspended"),
        (ms(day(20)), "suspended", "not_met"),
    ]


def test_card_suspension_for_good_is_not_shortened_by_one_with_duration() -> None:
    yaml_text = card_yaml("[{event: got_card}, {event: card_query, duration: 1d}]")
    records = run(yaml_text, [E("got_card", day(10)), E("card_query", day(11))], drain=True)
    assert transitions(records) == [(ms(day(10)), "not_met", "suspended")]


def test_card_suspension_with_duration_made_permanent() -> None:
    yaml_text = card_yaml("[{event: got_card}, {event: card_query, duration: 1d}]")
    records = run(yaml_text, [E("card_query", day(10)), E("got_card", day(10, 12))], drain=True)
    assert transitions(records) == [(ms(day(10)), "not_met", "suspended")]


def test_card_suspending_event_ends_time_bound_extension() -> None:
    yaml_text = card_yaml("{event: got_card, duration: 5d}", "time_bound", "extend_true_state: 30d")
    events = [
        R("open_bank_account", day(0)),
        R("ATM_activity", day(1)),
        R("offer_credit_card", day(2)),  # met, extension until day 32
        E("got_card", day(4)),  # ends the extension, suspended until day 9
    ]
    records = run(yaml_text, events, drain=True)
    assert transitions(records) == [
        (ms(day(2)), "not_met", "met"),
        (ms(day(4)), "met", "suspended"),
        (ms(day(9)), "suspended", "not_met"),
    ]
    # After the suspension: a fresh cycle (the time_bound firing cleared the occurrences).
    more = [*events, R("open_bank_account", day(10)), R("ATM_activity", day(11))]
    assert fired(run(yaml_text, more, drain=True)) == [ms(day(2))]
    more.append(R("offer_credit_card", day(12)))
    assert fired(run(yaml_text, more, drain=True)) == [ms(day(2)), ms(day(12))]


def test_card_suspended_pattern_ignores_composing_events_for_good() -> None:
    events = [
        E("got_card", day(1)),
        R("open_bank_account", day(2)),
        R("ATM_activity", day(3)),
        R("offer_credit_card", day(4)),
    ]
    assert fired(run(card_yaml("{event: got_card, duration: 2d}"), events)) == []
    # With the suspension over by day 3, only ATM (3) and offer (4) count: no open account.
    events.append(R("open_bank_account", day(5)))
    assert fired(run(card_yaml("{event: got_card, duration: 2d}"), events)) == [ms(day(5))]


# ---------------------------------------------------------------------------------------
# Pattern in-activity: cart abandonment checkpoint at day 3

CART = """
version: 1
patterns:
  - id: cart
    type: match_all
    window: {mode: rolling, duration: 7d}
    events: [{event: add_item_to_cart}, {event: checkout}]
    suspend: {event: do_not_disturb, duration: 10d}
    checkpoints:
      - after: 3d
        actions:
          - {action: publish, topic: email, value: {template: send_reminder_email, sku: "${sku}"}}
"""


def reminders(records: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(a["time"], a["value"]) for a in actions(records) if a["trigger"] == "checkpoint"]


def test_cart_checkpoint_fires_without_checkout() -> None:
    events = [E("add_item_to_cart", day(0), sku="X1")]
    assert run(CART, events, until=day(3, 9)) == []
    records = run(CART, events, until=day(3))
    assert reminders(records) == [(ms(day(3)), {"template": "send_reminder_email", "sku": "X1"})]
    assert records[0]["kind"] == "action" and records[0]["action"] == "publish"


def test_cart_checkpoint_runs_before_a_later_event() -> None:
    records = run(CART, [E("add_item_to_cart", day(0), sku="X1"), E("browse", day(5))])
    assert reminders(records) == [(ms(day(3)), {"template": "send_reminder_email", "sku": "X1"})]


def test_cart_checkpoint_cancelled_by_checkout() -> None:
    events = [E("add_item_to_cart", day(0), sku="X1"), E("checkout", day(1))]
    records = run(CART, events, drain=True)
    assert reminders(records) == []
    assert fired(records) == [ms(day(1))]


def test_cart_checkpoint_does_not_fire_when_met() -> None:
    # checkout first, then the item: met at day 1, before the checkpoint of day 3.
    events = [E("checkout", day(0)), E("add_item_to_cart", day(1), sku="X1")]
    records = run(CART, events, drain=True)
    assert reminders(records) == [] and fired(records) == [ms(day(1))]


def test_cart_checkpoint_cancelled_by_reset() -> None:
    from eventpatterns.core.evaluator import Engine

    definitions = load_definitions(CART)
    engine = Engine(definitions)
    state = engine.new_state("u1")
    engine.process(state, E("add_item_to_cart", day(0), sku="X1"))
    assert state.next_due() == t(day(3))
    assert engine.reset(state, "cart", t(day(1))) == []  # already not_met: no transition
    assert state.next_due() is None
    assert engine.advance(state, t(day(30))) == []


def test_cart_checkpoint_not_run_while_suspended() -> None:
    events = [E("add_item_to_cart", day(0), sku="X1"), E("do_not_disturb", day(1))]
    records = run(CART, events, drain=True)
    assert reminders(records) == []


def test_cart_new_cycle_only_when_pattern_has_no_occurrences() -> None:
    events = [
        E("add_item_to_cart", day(0), sku="X1"),  # cycle: checkpoint at day 3
        E("add_item_to_cart", day(2), sku="X2"),  # has occurrences: no new cycle
        E("add_item_to_cart", day(4), sku="X3"),  # still has (days 0, 2): no new cycle
        E("add_item_to_cart", day(12), sku="X4"),  # days 0-4 out of the window: new cycle
    ]
    records = run(CART, events, drain=True)
    assert reminders(records) == [
        (ms(day(3)), {"template": "send_reminder_email", "sku": "X1"}),
        (ms(day(15)), {"template": "send_reminder_email", "sku": "X4"}),
    ]


def test_cart_checkpoint_after_met_then_not_met() -> None:
    # Rolling: met at day 1 (cancels); at day 9 the add is alone in the window -> not_met,
    # and as the pattern had no occurrences in its window, a new cycle starts.
    events = [
        E("add_item_to_cart", day(0), sku="X1"),
        E("checkout", day(1)),
        E("add_item_to_cart", day(9), sku="X2"),
    ]
    records = run(CART, events, drain=True)
    assert brief(records) == [
        ("T", ms(day(1)), "cart", "not_met", "met"),
        ("T", ms(day(9)), "cart", "met", "not_met"),
        ("A", ms(day(12)), "cart", "publish", "checkpoint"),
    ]


# ---------------------------------------------------------------------------------------
# The clickstream offers (examples/clickstream.yaml)


def clickstream_text() -> str:
    return (EXAMPLES / "clickstream.yaml").read_text()


def replay_file(patterns: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    definitions = load_definitions(patterns)
    out = io.BytesIO()
    err = io.StringIO()
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    run_replay(definitions, io.BytesIO(data), out, err)
    assert err.getvalue() == ""
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


NS0 = 1_700_221_869_000_000_000  # 2023-11-17T11:51:09Z in ns


def click(
    user: str, offset_s: float, category: str, product: str, gender: str = "F", age: int = 31
) -> dict[str, Any]:
    return {
        "timestamp": NS0 + int(offset_s * 1_000_000_000),
        "userId": user,
        "category": category,
        "productId": product,
        "gender": gender,
        "age": age,
        "ip": "10.0.0.1",
    }


def test_clickstream_example_file_exact_output() -> None:
    definitions = load_definitions(clickstream_text())
    out = io.BytesIO()
    with open(EXAMPLES / "clickstream.jsonl", "rb") as events:
        run_replay(definitions, events, out, io.StringIO())
    records = [orjson.loads(line) for line in out.getvalue().splitlines()]
    published = [
        (r["user_id"], r["time"], r["key"], r["value"], r["offer"])
        for r in records
        if r["kind"] == "action"
    ]
    assert published == [
        (
            "sad-music-boxing",
            "2023-11-17T11:51:15.000Z",
            "sad-music-boxing",
            [{"Timestamp": 1700221875000000000, "Tags": {}, "Id": "offer", "Value": "offer2"}],
            "offer2",
        ),
        (
            "calm-river-delta",
            "2023-11-17T11:51:47.989Z",
            "calm-river-delta",
            [{"Timestamp": 1700221907989992000, "Tags": {}, "Id": "offer", "Value": "offer1"}],
            "offer1",
        ),
    ]
    # The seed's exact offer JSON, byte for byte.
    action = next(
        r for r in records if r["kind"] == "action" and r["user_id"] == "calm-river-delta"
    )
    assert orjson.dumps(action["value"]) == (
        b'[{"Timestamp":1700221907989992000,"Tags":{},"Id":"offer","Value":"offer1"}]'
    )
    assert all(not r.get("suppressed") for r in records)


def test_clickstream_source_mapping() -> None:
    definitions = load_definitions(clickstream_text())
    event = event_from_record(click("u", 0.000123456, "shoes", "P9", "M", 41), definitions.source)
    assert event.user_id == "u" and event.name == "click"
    assert event.time == NS0 // 1000 + 123  # ns -> us, truncated
    assert event.attributes == {
        "category": "shoes",
        "productId": "P9",
        "gender": "M",
        "age": 41,
        "ip": "10.0.0.1",
    }


def test_clickstream_female_offer() -> None:
    records = replay_file(
        clickstream_text(),
        [
            click("f", 0, "clothing", "P1"),
            click("f", 3, "shoes", "S1"),
            click("f", 6, "clothing", "P2"),
        ],
    )
    assert next((r["pattern"], r.get("to")) for r in records if r["kind"] == "transition") == (
        "offer2_female_25_35",
        "met",
    )
    action = actions(records)[0]
    assert action["topic"] == "special-offers" and action["key"] == "f"
    assert action["value"] == [
        {"Timestamp": NS0 + 6 * 10**9, "Tags": {}, "Id": "offer", "Value": "offer2"}
    ]


@pytest.mark.parametrize(
    ("gender", "age", "offer"),
    [
        ("F", 24, None),
        ("F", 25, "offer2"),
        ("F", 35, "offer2"),
        ("F", 36, None),
        ("M", 35, None),
        ("M", 36, "offer1"),
        ("M", 45, "offer1"),
        ("M", 46, None),
        ("M", 30, None),
        ("F", 40, None),
        ("X", 30, None),
    ],
)
def test_clickstream_audience_boundaries(gender: str, age: int, offer: str | None) -> None:
    lines = [
        click("u", 0, "clothing", "P1", gender, age),
        click("u", 1, "shoes", "S1", gender, age),
        click("u", 2, "clothing", "P2", gender, age),
    ]
    offers = [a["value"][0]["Value"] for a in actions(replay_file(clickstream_text(), lines))]
    assert offers == ([offer] if offer else [])


def test_clickstream_third_click_must_differ_from_first() -> None:
    lines = [
        click("u", 0, "clothing", "P1"),
        click("u", 1, "shoes", "S1"),
        click("u", 2, "clothing", "P1"),
    ]
    assert actions(replay_file(clickstream_text(), lines)) == []
    lines.append(click("u", 3, "clothing", "P2"))
    records = replay_file(clickstream_text(), lines)
    assert [a["time"] for a in actions(records)] == ["2023-11-17T11:51:12.000Z"]


def test_clickstream_any_earlier_clothing_can_be_first() -> None:
    # Two clothing views P1, P2, then shoes, then P1 again: P2 is a valid first.
    lines = [
        click("u", 0, "clothing", "P1"),
        click("u", 1, "clothing", "P2"),
        click("u", 2, "shoes", "S1"),
        click("u", 3, "clothing", "P1"),
    ]
    assert [a["time"] for a in actions(replay_file(clickstream_text(), lines))] == [
        "2023-11-17T11:51:12.000Z"
    ]


def test_clickstream_order_matters() -> None:
    lines = [
        click("u", 0, "shoes", "S1"),
        click("u", 1, "clothing", "P1"),
        click("u", 2, "clothing", "P2"),
    ]
    assert actions(replay_file(clickstream_text(), lines)) == []


def test_clickstream_thirty_minute_window() -> None:
    inside = [
        click("u", 0, "clothing", "P1"),
        click("u", 60, "shoes", "S1"),
        click("u", 30 * 60 - 1, "clothing", "P2"),
    ]
    assert len(actions(replay_file(clickstream_text(), inside))) == 1
    # Window (t - 30m, t]: a first click exactly 30 minutes earlier is out.
    edge = [
        click("u", 0, "clothing", "P1"),
        click("u", 60, "shoes", "S1"),
        click("u", 30 * 60, "clothing", "P2"),
    ]
    assert actions(replay_file(clickstream_text(), edge)) == []


def test_clickstream_page_refresh_ignored() -> None:
    # P1 viewed at 0 and "refreshed" 31 minutes later: the refresh does not count, and the
    # only counted view of P1 is too old for the window.
    lines = [
        click("u", 0, "clothing", "P1"),
        click("u", 31 * 60, "clothing", "P1"),
        click("u", 32 * 60, "shoes", "S1"),
        click("u", 33 * 60, "clothing", "P2"),
    ]
    assert actions(replay_file(clickstream_text(), lines)) == []
    # Without ignore_repeats the refresh would count and the offer would fire.
    document = yaml.safe_load(clickstream_text())
    for pattern in document["patterns"]:
        del pattern["ignore_repeats"]
    assert len(actions(replay_file(orjson.dumps(document).decode(), lines))) == 1
    # A different product at 31 minutes is not a repeat.
    lines[1] = click("u", 31 * 60, "clothing", "P3")
    assert len(actions(replay_file(clickstream_text(), lines))) == 1


def test_clickstream_time_bound_new_cycle_after_offer() -> None:
    lines = [
        click("u", 0, "clothing", "P1"),
        click("u", 1, "shoes", "S1"),
        click("u", 2, "clothing", "P2"),  # offer; occurrences cleared
        click("u", 3, "shoes", "S2"),
        click("u", 4, "clothing", "P3"),  # no clothing after the offer before the shoes
    ]
    records = replay_file(clickstream_text(), lines)
    assert len(actions(records)) == 1
    lines += [click("u", 5, "shoes", "S3"), click("u", 6, "clothing", "P4")]
    assert len(actions(replay_file(clickstream_text(), lines))) == 2
