"""Actions (SPEC section 5): fields, templates, effects, delays."""

from __future__ import annotations

from typing import Any

from eventpatterns.core.evaluator import Engine
from eventpatterns.core.state import UserState
from tests.core.conftest import E, actions, brief, defs, fired, ms, run, t

T0 = "2026-11-02T10:00:00Z"


def at_min(minutes: float) -> str:
    from eventpatterns.core.timeutil import format_us

    return format_us(t(T0) + int(minutes * 60_000_000))


def on(event: str, *action_yaml: str, pid: str = "p", extra: str = "") -> str:
    """A pattern `pid` that fires on every `event` (time_bound, no extension) with actions."""
    body = "".join(f"\n      - {a}" for a in action_yaml)
    return f"""
  - id: {pid}
    type: match_all
    window: {{mode: time_bound, duration: 1s}}
    events: [{{event: {event}}}]
    {extra}
    on_met:{body}
"""


def file(*patterns: str, head: str = "") -> str:
    return "version: 1\n" + head + "patterns:" + "".join(patterns)


OFFERS = """offers:
  - {code: web1, attributes: {channel: web, category: shoes}}
  - {code: web2, attributes: {channel: web, category: hats}}
  - {code: app1, attributes: {channel: app, category: shoes}}
"""


def values(records: list[dict[str, Any]], pattern: str | None = None) -> list[Any]:
    return [a["value"] for a in actions(records, pattern) if a["action"] == "publish"]


# ---------------------------------------------------------------------------------------
# publish and templates


def test_publish_record_carries_rendered_fields() -> None:
    text = file(on("go", '{action: publish, topic: offers, key: "${user_id}-k", value: {a: 1}}'))
    records = run(text, [E("go", T0, user="u-17")])
    assert records[1] == {
        "kind": "action",
        "time": ms(T0),
        "user_id": "u-17",
        "pattern": "p",
        "trigger": "met",
        "action": "publish",
        "topic": "offers",
        "key": "u-17-k",
        "value": {"a": 1},
    }


def test_whole_placeholder_keeps_type_embedded_formats_text() -> None:
    text = file(
        on(
            "go",
            "action: publish\n        topic: t\n        value:\n"
            '          n: "${n}"\n          f: "${f}"\n          b: "${b}"\n          l: "${l}"\n'
            '          s: "${s}"\n          missing: "${nope}"\n          sum: "${n + 1}"\n'
            '          text: "n=${n} f=${f} b=${b} missing=[${nope}] s=${s}"\n'
            '          nested: [{deep: "${n * 2}"}, "${s}!"]\n'
            '          ctx: "${user_id}/${pattern}"\n          lit: 7',
        )
    )
    records = run(text, [E("go", T0, n=5, f=2.5, b=True, l=[1, 2], s="x")])
    assert values(records) == [
        {
            "n": 5,
            "f": 2.5,
            "b": True,
            "l": [1, 2],
            "s": "x",
            "missing": None,
            "sum": 6,
            "text": "n=5 f=2.5 b=true missing=[] s=x",
            "nested": [{"deep": 10}, "x!"],
            "ctx": "u1/p",
            "lit": 7,
        }
    ]


def test_time_names_in_templates() -> None:
    text = file(
        on(
            "go",
            '{action: publish, topic: t, value: {ns: "${now_ns}", ms: "${now_ms}", now: "${now}",'
            ' text: "at ${now_ms}"}}',
        )
    )
    when = "2026-11-02T10:00:00.123456Z"
    records = run(text, [E("go", when)])
    micros = t(when)
    assert values(records) == [
        {
            "ns": micros * 1000,
            "ms": micros // 1000,
            "now": "2026-11-02T10:00:00.123Z",
            "text": f"at {micros // 1000}",
        }
    ]


def test_profile_in_templates() -> None:
    text = file(
        on(
            "go",
            "{action: set_attribute, name: tier, value: \"'gold'\"}",
            '{action: publish, topic: t, value: "${profile.tier}"}',
            '{action: publish, topic: t, value: "tier ${profile.tier}, x ${profile.x}"}',
        )
    )
    assert values(run(text, [E("go", T0)])) == ["gold", "tier gold, x "]


def test_sequence_aliases_in_on_met_templates() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: sequence
    events:
      - {event: click, where: "category == 'clothing'", as: first}
      - {event: click, where: "category == 'shoes'", as: shoe}
      - {event: click, where: "category == 'clothing' and productId != first.productId", as: third}
    on_met:
      - action: publish
        topic: t
        key: "${first.productId}"
        value: {first: "${first.productId}", shoe: "${shoe.productId}", third: "${third.productId}",
                text: "${first.productId}->${third.productId}", now: "${productId}"}
"""
    events = [
        E("click", at_min(0), category="clothing", productId="C1"),
        E("click", at_min(1), category="shoes", productId="S1"),
        E("click", at_min(2), category="clothing", productId="C2"),
    ]
    records = run(text, events)
    action = actions(records)[0]
    assert action["key"] == "C1"
    assert action["value"] == {
        "first": "C1",
        "shoe": "S1",
        "third": "C2",
        "text": "C1->C2",
        "now": "C2",
    }


# ---------------------------------------------------------------------------------------
# Offers: suppression, publish with offer, log actions


def test_publish_with_offer_while_suppressed() -> None:
    text = file(
        on("go", "{action: publish, topic: t, offer: web1, value: w}"),
        on("stop", "{action: suppress_offers, offers: [web1], duration: 1h}", pid="s"),
        head=OFFERS,
    )
    records = run(
        text,
        [
            E("go", at_min(0)),
            E("stop", at_min(1)),
            E("go", at_min(2)),
            E("go", at_min(61)),
            E("go", at_min(62)),
        ],
    )
    published = [
        (a["time"], a.get("suppressed", False), a["offer"], a["value"])
        for a in actions(records, "p")
    ]
    assert published == [
        (ms(at_min(0)), False, "web1", "w"),
        (ms(at_min(2)), True, "web1", "w"),
        (ms(at_min(61)), False, "web1", "w"),  # until = 61: expired at 61
        (ms(at_min(62)), False, "web1", "w"),
    ]
    assert "suppressed" not in actions(records, "p")[0]
    suppress = actions(records, "s")[0]
    assert suppress["offers"] == ["web1"] and suppress["until"] == ms(at_min(61))


def test_suppress_for_good_and_publish_without_offer_unaffected() -> None:
    text = file(
        on(
            "go",
            "{action: publish, topic: t, offer: web1, value: w}",
            "{action: publish, topic: t, value: plain}",
        ),
        on("stop", "{action: suppress_offers, offers: [web1, app1]}", pid="s"),
        head=OFFERS,
    )
    records = run(text, [E("stop", at_min(0)), E("go", at_min(100000))])
    flags = [(a["value"], a.get("suppressed")) for a in actions(records, "p")]
    assert flags == [("w", True), ("plain", None)]
    assert actions(records, "s")[0]["until"] is None


def test_suppress_by_where_over_offer_attributes() -> None:
    text = file(
        on(
            "go",
            "{action: publish, topic: t, offer: web1, value: w1}",
            "{action: publish, topic: t, offer: web2, value: w2}",
            "{action: publish, topic: t, offer: app1, value: a1}",
        ),
        on(
            "stop", "{action: suppress_offers, where: \"channel == 'web'\", duration: 30m}", pid="s"
        ),
        head=OFFERS,
    )
    records = run(text, [E("stop", at_min(0)), E("go", at_min(10)), E("go", at_min(30))])
    assert actions(records, "s")[0]["offers"] == ["web1", "web2"]
    flags = [(a["time"], a["value"], a.get("suppressed", False)) for a in actions(records, "p")]
    assert flags == [
        (ms(at_min(10)), "w1", True),
        (ms(at_min(10)), "w2", True),
        (ms(at_min(10)), "a1", False),
        (ms(at_min(30)), "w1", False),
        (ms(at_min(30)), "w2", False),
        (ms(at_min(30)), "a1", False),
    ]


def test_suppression_extends_never_shortens() -> None:
    text = file(
        on("go", "{action: publish, topic: t, offer: web1, value: w}"),
        on("long", "{action: suppress_offers, offers: [web1], duration: 2h}", pid="l"),
        on("short", "{action: suppress_offers, offers: [web1], duration: 10m}", pid="s"),
        head=OFFERS,
    )
    records = run(text, [E("long", at_min(0)), E("short", at_min(1)), E("go", at_min(60))])
    assert actions(records, "p")[0].get("suppressed") is True


LOGS = file(
    on("contact", "{action: log_contact, offer: web1}"),
    on("accept", "{action: log_accept, offer: app1}", pid="a"),
    on("reject", "{action: log_reject, offer: web2}", pid="r"),
    on("stop", "{action: suppress_offers, offers: [web1]}", pid="s"),
    """
  - id: contacted
    type: counter
    events: [{event: offerContacted, offer: web1, count: 2}]
  - id: accepted_shoes
    type: match_all
    events: [{event: offerAcceptedInCategory, attribute: category, value: shoes}]
    on_met: [{action: publish, topic: t, value: "${offer}/${channel}"}]
  - id: rejected
    type: match_all
    events: [{event: offerRejected, where: "category == 'hats'"}]
""",
    head=OFFERS,
)


def test_log_actions_emit_macro_events() -> None:
    records = run(
        LOGS,
        [
            E("contact", at_min(0)),
            E("contact", at_min(1)),
            E("accept", at_min(2)),
            E("reject", at_min(3)),
        ],
    )
    logs = [
        (a["pattern"], a["action"], a["offer"]) for a in actions(records) if "log" in a["action"]
    ]
    assert logs == [
        ("p", "log_contact", "web1"),
        ("p", "log_contact", "web1"),
        ("a", "log_accept", "app1"),
        ("r", "log_reject", "web2"),
    ]
    assert fired(records, "contacted") == [ms(at_min(1))]
    assert fired(records, "accepted_shoes") == [ms(at_min(2))]
    assert values(records, "accepted_shoes") == ["app1/app"]
    assert fired(records, "rejected") == [ms(at_min(3))]
    # The macro event is processed after the log action's pattern, at the same time.
    order = [
        (r["pattern"], r.get("to") or r["action"])
        for r in records
        if r["time"] == ms(at_min(2)) and r.get("to") != "not_met"
    ]
    assert order == [
        ("a", "met"),
        ("a", "log_accept"),
        ("accepted_shoes", "met"),
        ("accepted_shoes", "publish"),
    ]


def test_log_contact_while_suppressed_posts_nothing() -> None:
    records = run(LOGS, [E("stop", at_min(0)), E("contact", at_min(1)), E("contact", at_min(2))])
    contacts = actions(records, "p")
    assert [(a["offer"], a.get("suppressed")) for a in contacts] == [("web1", True), ("web1", True)]
    assert fired(records, "contacted") == []


def test_log_accept_and_reject_ignore_suppression() -> None:
    text = LOGS.replace("offers: [web1]}", "offers: [web1, web2, app1]}")
    records = run(text, [E("stop", at_min(0)), E("accept", at_min(1)), E("reject", at_min(2))])
    assert fired(records, "accepted_shoes") == [ms(at_min(1))]
    assert fired(records, "rejected") == [ms(at_min(2))]
    assert all("suppressed" not in a for a in actions(records) if a["action"] != "suppress_offers")


# ---------------------------------------------------------------------------------------
# Profile, segments


PROFILE = """
version: 1
segments:
  gold: "profile.tier == 'gold'"
  big: "profile.spend > 100"
patterns:
  - id: setter
    type: match_all
    window: {mode: time_bound, duration: 1s}
    events: [{event: upgrade}]
    on_met:
      - {action: set_attribute, name: tier, value: "level"}
      - {action: set_attribute, name: spend, value: "amount * 2"}
      - {action: set_attribute, name: seen_at, value: "now_ms"}
  - id: gold_buyer
    type: counter
    audience: "profile.tier == 'gold'"
    events: [{event: upgrade, count: 1}, {event: buy, count: 2}]
    on_met: [{action: publish, topic: t, value: "${profile.tier}"}]
  - id: seg
    type: match_all
    window: {mode: time_bound, duration: 1s}
    events: [{event: reseg}]
    on_met: [{action: resegment}]
  - id: qual
    type: match_all
    window: {mode: time_bound, duration: 1s}
    events: [{event: qualify}]
    on_met: [{action: qualify_segments, segments: [vip, gold]}]
"""


def test_set_attribute_then_profile_in_a_later_patterns_audience() -> None:
    events = [
        E("buy", at_min(0)),  # not gold yet: does not count
        E("upgrade", at_min(1), level="gold", amount=30),  # setter runs first: upgrade counts
        E("buy", at_min(2)),
    ]
    records = run(PROFILE, events)
    assert fired(records, "gold_buyer") == []
    records = run(PROFILE, [*events, E("buy", at_min(3))])
    assert fired(records, "gold_buyer") == [ms(at_min(3))]
    assert values(records, "gold_buyer") == ["gold"]
    sets = [(a["name"], a["value"]) for a in actions(records, "setter")]
    assert sets == [("tier", "gold"), ("spend", 60), ("seen_at", t(at_min(1)) // 1000)]


def test_set_attribute_missing_value_is_null() -> None:
    engine = Engine(defs(PROFILE))
    state = engine.new_state("u1")
    records = engine.process(state, E("upgrade", T0))
    assert [(a["name"], a["value"]) for a in actions(records)][:2] == [
        ("tier", None),
        ("spend", None),
    ]
    assert state.profile["tier"] is None


def test_qualify_and_resegment() -> None:
    engine = Engine(defs(PROFILE))
    state = engine.new_state("u1")
    records = engine.process(state, E("qualify", at_min(0)))
    assert actions(records)[0]["segments"] == ["vip", "gold"]
    assert state.segments == ["vip", "gold"]
    engine.process(state, E("qualify", at_min(1)))
    assert state.segments == ["vip", "gold"]  # no duplicates
    # Resegment: gold is a file segment and the profile says no -> removed; vip is kept.
    records = engine.process(state, E("reseg", at_min(2)))
    assert actions(records)[0]["segments"] == ["vip"]
    assert state.segments == ["vip"]
    engine.process(state, E("upgrade", at_min(3), level="gold", amount=51))
    records = engine.process(state, E("reseg", at_min(4)))
    assert state.segments == ["vip", "gold", "big"]
    assert actions(records)[0]["segments"] == ["vip", "gold", "big"]
    engine.process(state, E("upgrade", at_min(5), level="silver", amount=50))
    engine.process(state, E("reseg", at_min(6)))
    assert state.segments == ["vip"]


# ---------------------------------------------------------------------------------------
# trigger_events

TRIGGER = """
version: 1
patterns:
  - id: src
    type: match_all
    window: {mode: time_bound, duration: 1s}
    events: [{event: go}]
    on_met:
      - action: trigger_events
        events: [hop, hop2]
        attributes: {source: "${pattern}", amount: "${amount}", label: "n${amount}", fixed: [1, 2]}
  - id: dst
    type: counter
    events: [{event: hop, where: "amount > 10 and source == 'src'", count: 2}]
    on_met:
      - {action: publish, topic: t, value: {label: "${label}", fixed: "${fixed}", at: "${now}"}}
  - id: dst2
    type: match_all
    events: [{event: hop2}]
"""


def test_trigger_events_posts_rendered_attributes() -> None:
    records = run(
        TRIGGER,
        [
            E("go", at_min(0), amount=11),
            E("go", at_min(1), amount=5),
            E("go", at_min(2), amount=12),
        ],
    )
    trigger = actions(records, "src")[0]
    assert trigger["events"] == ["hop", "hop2"]
    assert trigger["attributes"] == {"source": "src", "amount": 11, "label": "n11", "fixed": [1, 2]}
    assert fired(records, "dst") == [ms(at_min(2))]
    assert values(records, "dst") == [{"label": "n12", "fixed": [1, 2], "at": ms(at_min(2))}]
    assert fired(records, "dst2") == [ms(at_min(0))]


# ---------------------------------------------------------------------------------------
# delay and at

DELAYS = """
version: 1
offers: [{code: o1, attributes: {}}]
patterns:
  - id: p
    type: match_all
    window: {mode: time_bound, duration: 1s}
    events: [{event: go}]
    on_met:
      - action: publish
        topic: t
        value: {v: delayed, at: "${now}", tier: "${profile.tier}", n: "${n}"}
        delay: 1h
      - {action: publish, topic: t, value: past, at: "2020-01-01T00:00:00Z"}
      - {action: publish, topic: t, value: {v: future, at: "${now}"}, at: "2026-11-03T00:00:00Z"}
      - {action: publish, topic: t, value: offer, offer: o1, delay: 2h}
      - {action: log_contact, offer: o1, delay: 3h}
      - {action: trigger_events, events: [later], delay: 4h}
      - {action: set_attribute, name: tier, value: "'bronze'"}
  - id: setter
    type: match_all
    window: {mode: time_bound, duration: 1s}
    events: [{event: upgrade}]
    on_met: [{action: set_attribute, name: tier, value: "'gold'"}]
  - id: stopper
    type: match_all
    window: {mode: time_bound, duration: 1s}
    events: [{event: stop}]
    on_met: [{action: suppress_offers, offers: [o1]}]
  - id: got_later
    type: match_all
    events: [{event: later}]
  - id: contacted
    type: match_all
    events: [{event: offerContacted}]
"""


def test_delay_and_at_take_effect_by_timers() -> None:
    records = run(DELAYS, [E("go", T0, n=3)], drain=True)
    published = [(a["time"], a["value"]) for a in actions(records, "p") if a["action"] == "publish"]
    assert published == [
        (ms(T0), "past"),  # an `at` in the past takes effect at once
        (ms(at_min(60)), {"v": "delayed", "at": ms(at_min(60)), "tier": "bronze", "n": 3}),
        (ms(at_min(120)), "offer"),
        (ms("2026-11-03T00:00:00Z"), {"v": "future", "at": ms("2026-11-03T00:00:00Z")}),
    ]
    assert fired(records, "got_later") == [ms(at_min(240))]
    assert fired(records, "contacted") == [ms(at_min(180))]


def test_templates_rendered_when_the_action_takes_effect() -> None:
    # The profile changes between the firing and the delayed action.
    records = run(DELAYS, [E("go", T0, n=3), E("upgrade", at_min(30))], until=at_min(60))
    delayed = [a for a in actions(records, "p") if a["time"] == ms(at_min(60))]
    assert delayed[0]["value"]["tier"] == "gold"


def test_delayed_actions_check_suppression_when_they_take_effect() -> None:
    records = run(DELAYS, [E("go", T0), E("stop", at_min(90))], drain=True)
    offer = next(a for a in actions(records, "p") if a["value"] == "offer")
    assert offer.get("suppressed") is True
    contact = next(a for a in actions(records, "p") if a["action"] == "log_contact")
    assert contact.get("suppressed") is True and contact["time"] == ms(at_min(180))
    assert fired(records, "contacted") == []


def test_delayed_actions_wait_for_advance() -> None:
    engine = Engine(defs(DELAYS))
    state = engine.new_state("u1")
    first = engine.process(state, E("go", T0))
    assert [a.get("value") for a in actions(first)] == ["past", "bronze"]  # + set_attribute
    # The time_bound extension (0) ends at once, by a timer.
    assert state.next_due() == t(T0)
    assert brief(engine.advance(state, t(T0))) == [("T", ms(T0), "p", "met", "not_met")]
    assert state.next_due() == t(at_min(60))
    assert engine.advance(state, t(at_min(59))) == []
    assert [a["value"]["v"] for a in actions(engine.advance(state, t(at_min(60))))] == ["delayed"]
    assert brief(engine.advance(state, t(at_min(240)))) == [
        ("A", ms(at_min(120)), "p", "publish", "met"),
        ("A", ms(at_min(180)), "p", "log_contact", "met"),
        ("T", ms(at_min(180)), "contacted", "not_met", "met"),
        ("A", ms(at_min(240)), "p", "trigger_events", "met"),
        ("T", ms(at_min(240)), "got_later", "not_met", "met"),
    ]
    assert state.next_due() == t("2026-11-03T00:00:00Z")


def test_delayed_action_state_survives_encoding() -> None:
    engine = Engine(defs(DELAYS))
    state = engine.new_state("u1")
    engine.process(state, E("go", T0, n=3))
    restored = UserState.decode(state.encode())
    assert engine.advance(restored, t(at_min(300))) == engine.advance(state, t(at_min(300)))


def test_delayed_checkpoint_action() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: match_all
    events: [{event: add}, {event: buy}]
    checkpoints:
      - after: 1h
        actions:
          - {action: publish, topic: t, value: "${sku}@${now}", delay: 30m}
          - {action: publish, topic: t, value: now}
"""
    records = run(text, [E("add", T0, sku="X")], drain=True)
    assert [(a["time"], a["trigger"], a["value"]) for a in actions(records)] == [
        (ms(at_min(60)), "checkpoint", "now"),
        (ms(at_min(90)), "checkpoint", f"X@{ms(at_min(90))}"),
    ]


def test_delayed_reset_pattern() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: match_all
    events: [{event: A}]
    on_met: [{action: reset_pattern, delay: 1d}]
"""
    records = run(text, [E("A", at_min(0)), E("A", at_min(10)), E("A", at_min(1441))])
    assert brief(records) == [
        ("T", ms(at_min(0)), "p", "not_met", "met"),
        ("A", ms(at_min(1440)), "p", "reset_pattern", "met"),
        ("T", ms(at_min(1440)), "p", "met", "not_met"),
        ("T", ms(at_min(1441)), "p", "not_met", "met"),
    ]


def test_aliases_rendered_when_a_kept_chain_fires_again() -> None:
    # After a suspension the kept chain A -> B makes the pattern met again at the next
    # occurrence, which completes no new chain: the templates still see the aliases.
    for window in ("", "window: {mode: rolling, duration: 1d}"):
        text = f"""
version: 1
patterns:
  - id: p
    type: sequence
    {window}
    events: [{{event: A, as: first}}, {{event: B, as: second}}]
    suspend: {{event: S, duration: 1h}}
    on_met: [{{action: publish, topic: t, value: "${{first.x}}-${{second.x}}"}}]
"""
        events = [
            E("A", at_min(0), x=1),
            E("B", at_min(1), x=2),
            E("S", at_min(2)),
            E("A", at_min(90), x=3),
        ]
        records = run(text, events)
        assert fired(records) == [ms(at_min(1)), ms(at_min(90))]
        assert values(records) == ["1-2", "1-2"]


def test_set_attribute_reads_sequence_aliases() -> None:
    text = """
version: 1
patterns:
  - id: p
    type: sequence
    events: [{event: A, as: first}, {event: B}]
    on_met: [{action: set_attribute, name: last_product, value: "first.productId"}]
"""
    records = run(text, [E("A", at_min(0), productId="P1"), E("B", at_min(1))])
    assert [(a["name"], a["value"]) for a in actions(records)] == [("last_product", "P1")]
