"""Explanations (core/explain.py): what a user has, what is missing, and until when."""

from __future__ import annotations

from typing import Any

import pytest

from eventpatterns.core.definitions import Definitions
from eventpatterns.core.events import Event
from eventpatterns.core.explain import UnknownPattern, describe_user, explain, iso
from eventpatterns.core.state import UserState
from eventpatterns.replay import Replayer
from tests.core.conftest import E, defs, t


def feed(definitions: Definitions, *events: Event, user: str = "u1") -> UserState:
    replayer = Replayer(definitions, lambda record: None)
    for event in events:
        replayer.feed(event)
    return replayer.state_of(user)


def why(definitions: Definitions, state: UserState, pattern: str, now: str) -> dict[str, Any]:
    return explain(definitions, state, pattern, t(now))


COUNTER = defs(
    """
    version: 1
    patterns:
      - id: big_spender
        type: counter
        window: {mode: rolling, duration: 7d}
        events:
          - event: purchase
            count: 3
            aggregate: [{fn: sum, attribute: amount, op: ">=", value: 100}]
          - {event: visit, where: "page == 'home'"}
    """
)


def test_iso_times_are_readable() -> None:
    assert iso(t("2026-11-20T10:00:00")) == "2026-11-20T10:00:00Z"
    assert iso(t("2026-11-20T10:00:00.250")) == "2026-11-20T10:00:00.250Z"
    assert iso(None) is None


def test_counter_counts_aggregates_and_deadline() -> None:
    state = feed(
        COUNTER,
        E("purchase", "2026-11-02T10:00:00", amount=30),
        E("purchase", "2026-11-03T09:00:00", amount=20),
    )
    body = why(COUNTER, state, "big_spender", "2026-11-04T12:00:00")
    assert body["status"] == "not_met"
    assert body["condition_holds"] is False
    purchase, visit = body["events"]
    assert (purchase["count"], purchase["needed"], purchase["missing"]) == (2, 3, 1)
    assert purchase["first"] == "2026-11-02T10:00:00Z"
    assert purchase["last"] == "2026-11-03T09:00:00Z"
    assert purchase["expires"] == "2026-11-09T10:00:00Z"  # the oldest one + 7 days
    assert purchase["aggregates"] == [
        {
            "fn": "sum",
            "attribute": "amount",
            "op": ">=",
            "value": 100,
            "current": 50,
            "holds": False,
            "condition": "sum(amount) >= 100",
        }
    ]
    assert (visit["count"], visit["missing"], visit["label"]) == (
        0,
        1,
        "visit where page == 'home'",
    )
    assert body["deadline"] == "2026-11-09T10:00:00Z"
    assert body["window"] == {"mode": "rolling", "duration": "7d", "duration_us": 7 * 86400 * 10**6}
    assert body["summary"] == [
        "Has 2 'purchase' events (first 2026-11-02T10:00:00Z, last 2026-11-03T09:00:00Z); needs 3.",
        "Needs 1 more 'purchase' event before 2026-11-09T10:00:00Z.",
        "Needs 1 'visit' event where page == 'home' before 2026-11-09T10:00:00Z.",
        "'purchase': sum(amount) is 50, needs >= 100 before 2026-11-09T10:00:00Z.",
        "Events count for 7d: the oldest one still needed drops out at 2026-11-09T10:00:00Z.",
    ]


def test_occurrences_out_of_the_window_by_now_do_not_count() -> None:
    state = feed(
        COUNTER,
        E("purchase", "2026-11-02T10:00:00", amount=30),
        E("purchase", "2026-11-05T10:00:00", amount=30),
    )
    body = why(COUNTER, state, "big_spender", "2026-11-10T10:00:00")
    purchase = body["events"][0]
    assert (purchase["count"], purchase["first"]) == (1, "2026-11-05T10:00:00Z")
    assert purchase["aggregates"][0]["current"] == 30
    assert body["deadline"] == "2026-11-12T10:00:00Z"


def test_met_rolling_pattern() -> None:
    state = feed(
        COUNTER,
        *[E("purchase", f"2026-11-0{day}T10:00:00", amount=40) for day in (2, 3, 4)],
        E("visit", "2026-11-04T11:00:00", page="home"),
    )
    body = why(COUNTER, state, "big_spender", "2026-11-04T12:00:00")
    assert body["status"] == "met"
    assert body["condition_holds"] is True
    assert all(event["satisfied"] for event in body["events"])
    assert body["summary"][0].startswith("Met. A rolling pattern stays met while")
    assert "The condition holds now." in body["summary"]
    # the oldest purchase needed leaves the window first
    assert body["deadline"] == "2026-11-09T10:00:00Z"


def test_unbounded_counter_and_met_for_good() -> None:
    definitions = defs(
        """
        version: 1
        patterns:
          - id: fan
            type: counter
            events: [{event: view, count: 2}]
        """
    )
    one = feed(definitions, E("view", "2026-11-02T10:00:00"))
    body = why(definitions, one, "fan", "2026-12-30T00:00:00")
    assert body["events"][0]["count"] == 1
    assert body["deadline"] is None
    assert body["summary"] == [
        "Has 1 'view' event (last at 2026-11-02T10:00:00Z); needs 2.",
        "Needs 1 more 'view' event.",
    ]
    two = feed(definitions, E("view", "2026-11-02T10:00:00"), E("view", "2026-11-03T10:00:00"))
    body = why(definitions, two, "fan", "2026-12-30T00:00:00")
    assert body["status"] == "met"
    assert body["summary"] == ["Met. An unbounded pattern stays met until it is reset."]


SEQUENCE = defs(
    """
    version: 1
    patterns:
      - id: journey
        type: sequence
        window: {mode: rolling, duration: 1h}
        events:
          - {event: browse, as: first}
          - {event: cart, where: "sku == first.sku", max_after: 30m}
          - {event: buy, min_after: 5m, max_after: 50m}
    """
)


def test_sequence_progress_and_bounds() -> None:
    state = feed(
        SEQUENCE,
        E("browse", "2026-11-02T10:00:00", sku="a"),
        E("cart", "2026-11-02T10:10:00", sku="b"),  # not the browsed sku
        E("cart", "2026-11-02T10:20:00", sku="a"),
    )
    body = why(SEQUENCE, state, "journey", "2026-11-02T10:21:00")
    sequence = body["sequence"]
    assert (sequence["steps"], sequence["matched"], sequence["complete"]) == (3, 2, False)
    assert sequence["started"] == "2026-11-02T10:00:00Z"
    assert sequence["last_step_at"] == "2026-11-02T10:20:00Z"
    step = sequence["next_step"]
    assert (step["index"], step["event"]) == (2, "buy")
    assert step["earliest"] == "2026-11-02T10:25:00Z"  # last step + min_after
    assert step["latest"] == "2026-11-02T11:00:00Z"  # the window closes before max_after
    assert body["deadline"] == "2026-11-02T11:00:00Z"
    assert body["summary"] == [
        "Has done 2 of 3 steps (started 2026-11-02T10:00:00Z, last step 2026-11-02T10:20:00Z).",
        "Next: 'buy' (no earlier than 2026-11-02T10:25:00Z and before 2026-11-02T11:00:00Z).",
        "The partial match expires at 2026-11-02T11:00:00Z.",
    ]


def test_sequence_not_started_and_expired_partial_matches() -> None:
    state = feed(SEQUENCE, E("browse", "2026-11-02T10:00:00", sku="a"))
    fresh = why(SEQUENCE, UserState("u2"), "journey", "2026-11-02T10:00:00")
    assert fresh["sequence"]["matched"] == 0
    assert fresh["summary"] == [
        "No sequence in progress: needs 'browse' first, then 2 more steps within 1h."
    ]
    live = why(SEQUENCE, state, "journey", "2026-11-02T10:10:00")
    assert live["sequence"]["next_step"]["latest"] == "2026-11-02T10:30:00Z"  # max_after
    expired = why(SEQUENCE, state, "journey", "2026-11-02T10:31:00")
    assert expired["sequence"]["matched"] == 0


def test_suspension() -> None:
    definitions = defs(
        """
        version: 1
        patterns:
          - id: p
            type: match_all
            events: [{event: a}, {event: b}]
            suspend: [{event: complaint, duration: 2d}]
          - id: q
            type: match_all
            events: [{event: a}]
            suspend: [{event: stop}]
        """
    )
    state = feed(
        definitions,
        E("a", "2026-11-02T10:00:00"),
        E("complaint", "2026-11-02T11:00:00"),
        E("stop", "2026-11-02T11:00:00"),
    )
    body = why(definitions, state, "p", "2026-11-02T12:00:00")
    assert body["status"] == "suspended"
    assert body["suspension"] == {"until": "2026-11-04T11:00:00Z", "until_reset": False}
    assert body["summary"][0] == (
        "Suspended until 2026-11-04T11:00:00Z: nothing counts and nothing fires until then."
    )
    assert body["events"][0]["count"] == 1  # kept through the suspension
    forever = why(definitions, state, "q", "2026-11-02T12:00:00")
    assert forever["suspension"] == {"until": None, "until_reset": True}
    user = describe_user(definitions, state, t("2026-11-02T12:00:00"))
    timers = {p["id"]: p["timers"] for p in user["patterns"]}
    assert [(x["kind"], x["due"]) for x in timers["p"]] == [
        ("suspension_end", "2026-11-04T11:00:00Z")
    ]
    assert timers["q"] == []


def test_time_bound_extension() -> None:
    definitions = defs(
        """
        version: 1
        patterns:
          - id: p1
            type: match_all
            window: {mode: time_bound, duration: 7d}
            extend_true_state: 4d
            events: [{event: A}, {event: B}]
        """
    )
    state = feed(definitions, E("A", "2026-11-02T09:00:00"), E("B", "2026-11-07T09:00:00"))
    body = why(definitions, state, "p1", "2026-11-08T00:00:00")
    assert body["status"] == "met"
    assert body["extension_ends"] == "2026-11-11T09:00:00Z"
    assert body["summary"] == [
        "Met. It stays met (its events are ignored) until 2026-11-11T09:00:00Z, "
        "then a new cycle starts."
    ]
    assert [e["count"] for e in body["events"]] == [0, 0]  # cleared when it fired


def test_checkpoints_and_delayed_actions() -> None:
    definitions = defs(
        """
        version: 1
        offers:
          - {code: nudge, attributes: {channel: email}}
        patterns:
          - id: abandon
            type: match_all
            events: [{event: cart}, {event: buy}]
            checkpoints:
              - after: 1h
                actions: [{action: publish, topic: reminders, offer: nudge, value: {x: 1}}]
          - id: thanks
            type: match_all
            events: [{event: buy}]
            on_met:
              - {action: log_contact, offer: nudge, delay: 2h}
        """
    )
    state = feed(definitions, E("cart", "2026-11-02T10:00:00"))
    body = why(definitions, state, "abandon", "2026-11-02T10:05:00")
    [checkpoint] = body["checkpoints"]
    assert checkpoint["due"] == "2026-11-02T11:00:00Z"
    assert checkpoint["after"] == "1h"
    assert checkpoint["actions"][0]["offer"] == "nudge"
    assert (
        "Checkpoint at 2026-11-02T11:00:00Z: if the pattern is still not met then, it will "
        "publish to 'reminders' (offer nudge)." in body["summary"]
    )
    state = feed(definitions, E("buy", "2026-11-02T10:00:00"))
    thanks = why(definitions, state, "thanks", "2026-11-02T10:05:00")
    [delayed] = thanks["delayed_actions"]
    assert (delayed["action"], delayed["due"], delayed["trigger"]) == (
        "log_contact",
        "2026-11-02T12:00:00Z",
        "met",
    )
    assert (
        "A delayed action (log_contact (offer nudge)) runs at 2026-11-02T12:00:00Z."
        in (thanks["summary"])
    )


def test_weighted_counter_score() -> None:
    definitions = defs(
        """
        version: 1
        patterns:
          - id: engaged
            type: weighted_counter
            threshold: 10
            window: {mode: rolling, duration: 1d}
            events: [{event: like, weight: 2}, {event: share, weight: 5}]
        """
    )
    state = feed(definitions, E("like", "2026-11-02T10:00:00"), E("share", "2026-11-02T11:00:00"))
    body = why(definitions, state, "engaged", "2026-11-02T12:00:00")
    assert body["score"] == {"current": 7.0, "threshold": 10.0, "missing": 3.0}
    assert [e["score"] for e in body["events"]] == [2.0, 5.0]
    assert body["summary"][:2] == [
        "Score 7 of 10 (1 x 'like' (weight 2); 1 x 'share' (weight 5)).",
        "Needs 3 more points before 2026-11-03T10:00:00Z.",
    ]


def test_dates_audience_and_repeats_are_explained() -> None:
    definitions = defs(
        """
        version: 1
        patterns:
          - id: campaign
            type: match_all
            start: "2026-12-01T00:00:00Z"
            audience: "age >= 18"
            ignore_repeats: productId
            events: [{event: click}]
        """
    )
    body = why(definitions, UserState("u1"), "campaign", "2026-11-02T00:00:00")
    assert body["start"] == "2026-12-01T00:00:00Z"
    assert body["audience"] == "age >= 18"
    assert "The pattern starts counting at 2026-12-01T00:00:00Z." in body["summary"]
    assert "Only events where age >= 18 count." in body["summary"]
    assert "An event with the same productId as the previous one is ignored." in body["summary"]


def test_changed_pattern_starts_fresh_and_unknown_pattern() -> None:
    state = feed(COUNTER, E("purchase", "2026-11-02T10:00:00", amount=30))
    changed = defs(
        """
        version: 1
        patterns:
          - id: big_spender
            type: counter
            window: {mode: rolling, duration: 7d}
            events: [{event: purchase, count: 4}]
        """
    )
    body = why(changed, state, "big_spender", "2026-11-02T11:00:00")
    assert body["events"][0]["count"] == 0
    assert body["summary"][0] == (
        "This pattern was changed since this user's last activity: it starts fresh."
    )
    with pytest.raises(UnknownPattern):
        explain(COUNTER, state, "nope", t("2026-11-02T11:00:00"))


def test_describe_user() -> None:
    definitions = defs(
        """
        version: 1
        offers:
          - {code: gold, attributes: {tier: top}}
          - {code: silver, attributes: {tier: mid}}
        segments:
          vip: "profile.spent >= 100"
        patterns:
          - id: buyer
            type: match_all
            events: [{event: purchase}]
            on_met:
              - {action: set_attribute, name: spent, value: "amount"}
              - {action: qualify_segments, segments: [vip]}
              - {action: suppress_offers, offers: [gold], duration: 1d}
              - {action: suppress_offers, offers: [silver]}
          - id: browser
            type: counter
            window: {mode: rolling, duration: 1h}
            events: [{event: view, count: 2}]
        """
    )
    state = feed(
        definitions,
        E("purchase", "2026-11-02T10:00:00", amount=150),
        E("view", "2026-11-02T10:30:00"),
    )
    body = describe_user(definitions, state, t("2026-11-02T11:00:00"))
    assert body["user_id"] == "u1"
    assert body["last_activity"] == "2026-11-02T10:30:00Z"
    assert body["version"] == definitions.version
    assert body["profile"] == {"spent": 150}
    assert body["segments"] == ["vip"]
    assert body["suppressed_offers"] == [
        {"offer": "gold", "until": "2026-11-03T10:00:00Z", "for_good": False},
        {"offer": "silver", "until": None, "for_good": True},
    ]
    states = {p["id"]: p for p in body["patterns"]}
    assert states["buyer"]["status"] == "met"
    assert states["browser"]["status"] == "not_met"
    assert states["browser"]["events"] == [
        {"label": "view", "count": 1, "last": "2026-11-02T10:30:00Z"}
    ]
    # a day later the gold suppression is over and the view left the window
    later = describe_user(definitions, state, t("2026-11-03T11:00:00"))
    assert [o["offer"] for o in later["suppressed_offers"]] == ["silver"]
    assert {p["id"]: p for p in later["patterns"]}["browser"]["events"][0]["count"] == 0
