# ruff: noqa: E501  (YAML fixtures read best on one line)
"""Loading and validating pattern files (SPEC sections 2, 3, 5 and 6).

A file is accepted whole or refused whole, and a refusal lists every problem at once,
each with the file, the line, the pattern id and the field path.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from eventpatterns.core.definitions import (
    Definitions,
    PatternFileError,
    Problem,
    load_definitions,
    load_definitions_file,
)
from eventpatterns.core.timeutil import parse_timestamp

ROOT = Path(__file__).resolve().parents[2]

# Two offers and the start of the pattern list: patterns written after HEADER start on
# line 6.
HEADER = """\
version: 1
offers:
  - {code: o1, attributes: {category: shoes, channel: web}}
  - {code: o2, attributes: {category: books, channel: email}}
patterns:
"""
FIRST_PATTERN_LINE = 6


def load(text: str) -> Definitions:
    return load_definitions(textwrap.dedent(text), "p.yaml")


def refused(text: str, filename: str = "p.yaml") -> list[Problem]:
    with pytest.raises(PatternFileError) as caught:
        load_definitions(textwrap.dedent(text), filename)
    error = caught.value
    assert error.problems, "a refusal always says why"
    assert error.filename == filename
    assert str(error) == "\n".join(problem.render(filename) for problem in error.problems)
    for problem in error.problems:
        assert "Input should" not in problem.message, problem
        assert "Value error" not in problem.message, problem
        assert "\n" not in problem.message, problem
    return error.problems


def with_patterns(patterns: str) -> str:
    return HEADER + textwrap.indent(textwrap.dedent(patterns), "  ")


def pattern_problems(patterns: str) -> list[tuple[str, str]]:
    """(path, message) of every problem in a file with the given pattern list."""
    return [(problem.path, problem.message) for problem in refused(with_patterns(patterns))]


def only(patterns: str) -> tuple[str, str]:
    """The single problem of a file with the given pattern list."""
    found = pattern_problems(patterns)
    assert len(found) == 1, found
    return found[0]


def rendered(text: str) -> list[str]:
    return [problem.render("p.yaml") for problem in refused(text)]


# ---------------------------------------------------------------------- accepted files


def test_the_seed_example_loads() -> None:
    definitions = load_definitions_file(str(ROOT / "examples" / "clickstream.yaml"))
    assert [pattern.id for pattern in definitions.patterns] == [
        "offer1_male_36_45",
        "offer2_female_25_35",
    ]
    assert definitions.source.topic == "enriched-click-data"
    assert definitions.source.timestamp is not None and definitions.source.timestamp.unit == "ns"
    assert definitions.source.attributes == "*"
    assert set(definitions.offers) == {"offer1", "offer2"}


def test_the_all_kinds_example_uses_every_kind_and_loads() -> None:
    definitions = load_definitions_file(str(ROOT / "examples" / "all_kinds.yaml"))
    kinds = {(pattern.type, pattern.mode) for pattern in definitions.patterns}
    assert kinds == {
        (kind, mode)
        for kind in ("match_all", "counter", "weighted_counter", "sequence")
        for mode in ("unbounded", "time_bound", "rolling")
    }
    actions = {
        action.kind
        for pattern in definitions.patterns
        for action in (
            *pattern.on_met,
            *(a for checkpoint in pattern.checkpoints for a in checkpoint.actions),
        )
    }
    assert actions == {
        "publish",
        "log_contact",
        "log_accept",
        "log_reject",
        "set_attribute",
        "trigger_events",
        "suppress_offers",
        "qualify_segments",
        "resegment",
        "reset_pattern",
    }


def test_a_minimal_file() -> None:
    definitions = load("version: 1\n")
    assert definitions.patterns == ()
    assert definitions.offers == {}
    assert definitions.segments == {}
    assert definitions.summary().startswith("0 patterns (none), 0 offers, 0 segments")


def test_summary_counts_kinds() -> None:
    definitions = load(
        with_patterns(
            """\
            - {id: a, type: match_all, events: [{event: x}]}
            - {id: b, type: counter, window: {mode: rolling, duration: 1h},
               events: [{event: x, count: 2}]}
            """
        )
    )
    summary = definitions.summary()
    assert summary.startswith("2 patterns (1 counter/rolling, 1 match_all/unbounded), 2 offers")
    assert "source topic eventpatterns-events" in summary


def test_compiled_pattern_fields() -> None:
    definitions = load(
        with_patterns(
            """\
            - id: p
              type: weighted_counter
              window: {mode: time_bound, duration: PT30M}
              extend_true_state: 4d
              start: 2026-01-01T00:00:00Z
              end: "2027-01-01T00:00:00+01:00"
              threshold: 10
              audience: "age >= 18"
              ignore_repeats: productId
              events:
                - {event: view, weight: 1.5, aggregate: [{fn: avg, attribute: price, op: ">", value: 5}]}
                - {event: offerAcceptedInCategory, attribute: category, value: shoes, weight: 4}
                - {event: offerContacted, offer: o1, weight: 2}
              suspend: {event: bought, duration: 1w}
              on_met:
                - {action: publish, topic: t, value: x, delay: 250ms}
                - {action: log_contact, offer: o2, at: "2026-06-01T09:00:00Z"}
              checkpoints:
                - {after: 2d, actions: [{action: resegment}]}
            """
        )
    )
    (pattern,) = definitions.patterns
    assert (pattern.id, pattern.type, pattern.mode) == ("p", "weighted_counter", "time_bound")
    assert pattern.duration == 30 * 60 * 1_000_000
    assert pattern.extend == 4 * 86400 * 1_000_000
    assert pattern.start == parse_timestamp("2026-01-01T00:00:00Z")
    assert pattern.end == parse_timestamp("2026-12-31T23:00:00Z")
    assert pattern.threshold == 10
    assert pattern.ignore_repeats == "productId"
    assert [step.weight for step in pattern.events] == [1.5, 4, 2]
    view, category, contacted = pattern.events
    assert view.aggregates[0].describe() == "avg(price) > 5"
    assert category.matcher.name == "offerAccepted"
    assert category.matcher.filters == (("category", "shoes"),)
    assert contacted.matcher.filters == (("offer", "o1"),)
    assert len(pattern.suspenders) == 1  # a single mapping is a list of one
    assert pattern.suspenders[0].duration == 7 * 86400 * 1_000_000
    assert pattern.on_met[0].delay == 250_000
    assert pattern.on_met[1].at == parse_timestamp("2026-06-01T09:00:00Z")
    assert pattern.checkpoints[0].after == 2 * 86400 * 1_000_000
    assert [route.pattern.id for route in definitions.routes["offerAccepted"]] == ["p"]


def test_unquoted_timestamps_and_yes_no_stay_text() -> None:
    """YAML would turn these into datetimes and booleans; the file means the text."""
    definitions = load(
        """\
        version: 1
        offers:
          - {code: o1, attributes: {member: yes, since: 2026-01-01, active: true}}
        patterns:
          - {id: p, type: match_all, start: 2026-01-01T00:00:00Z, events: [{event: on}]}
        """
    )
    assert definitions.offers["o1"] == {"member": "yes", "since": "2026-01-01", "active": True}
    assert definitions.patterns[0].events[0].matcher.name == "on"
    assert definitions.patterns[0].start == parse_timestamp("2026-01-01T00:00:00Z")


def test_set_attribute_value_may_be_a_bare_number_or_boolean() -> None:
    definitions = load(
        with_patterns(
            """\
            - id: p
              type: match_all
              events: [{event: x}]
              on_met:
                - {action: set_attribute, name: n, value: 5}
                - {action: set_attribute, name: b, value: true}
                - {action: set_attribute, name: s, value: "'gold'"}
            """
        )
    )
    values = [
        action.fields["value"].evaluate({}, {}, {}, {}) for action in definitions.patterns[0].on_met
    ]
    assert values == [5, True, "gold"]


def test_aliases_read_by_set_attribute_are_kept_for_the_action() -> None:
    definitions = load(
        with_patterns(
            """\
            - id: p
              type: sequence
              events:
                - {event: a, as: first}
                - {event: b}
              on_met:
                - {action: set_attribute, name: n, value: "first.channel"}
                - {action: publish, topic: t, value: "${first.productId}"}
            """
        )
    )
    assert definitions.patterns[0].bound_attributes == {"first": ("channel", "productId")}


def test_json_is_valid_yaml() -> None:
    document = {
        "version": 1,
        "offers": [{"code": "o1", "attributes": {"category": "shoes"}}],
        "patterns": [
            {
                "id": "p",
                "type": "counter",
                "events": [{"event": "click", "where": "category == 'shoes'", "count": 2}],
                "on_met": [{"action": "log_contact", "offer": "o1"}],
            }
        ],
    }
    for text in (
        json.dumps(document),
        json.dumps(document, indent=2),
        json.dumps(document, indent="\t"),
    ):
        definitions = load_definitions(text, "p.json")
        assert definitions.patterns[0].events[0].count == 2


def test_json_errors_have_lines_too() -> None:
    text = '{\n\t"version": 1,\n\t"patterns": [\n\t\t{"id": "p", "type": "counter", "events": []}\n\t]\n}\n'
    (problem,) = refused(text, "p.json")
    assert problem.render("p.json") == (
        "p.json:4: patterns[0] (id=p).events: must list at least one item"
    )


def test_the_version_hash_follows_the_content() -> None:
    a = load("version: 1\n")
    b = load("version: 1  # the same file, a comment more\n")
    c = load("version: 1\noffers: [{code: x}]\n")
    assert a.version == b.version != c.version
    assert re.fullmatch(r"[0-9a-f]{16}", a.version)


# ---------------------------------------------------------------------- every problem at once


FIVE_PROBLEMS = (
    HEADER
    + """\
  - id: cart_abandon
    type: match_all
    window: {mode: rolling, duration: 30x}
    events:
      - {event: add_to_cart, where: "len(items) > 0"}
  - id: loyal
    type: counter
    events:
      - {event: purchase, count: 3, weight: 2}
    on_met:
      - {action: log_contact, offer: nope}
  - id: fashion
    type: sequence
    events:
      - {event: click, as: first}
      - {event: click, where: "productId != second.productId", as: second}
"""
)


def test_five_problems_in_three_patterns_are_five_problems() -> None:
    assert rendered(FIVE_PROBLEMS) == [
        "p.yaml:8: patterns[0] (id=cart_abandon).window.duration: '30x' is not a duration; "
        "write e.g. 250ms, 30s, 30m, 2h, 7d, 1w or ISO-8601 PT30M",
        "p.yaml:10: patterns[0] (id=cart_abandon).events[0].where: "
        "function calls are not allowed (at column 1)",
        "p.yaml:14: patterns[1] (id=loyal).events[0].weight: "
        "only allowed in weighted_counter patterns (this one is counter)",
        "p.yaml:16: patterns[1] (id=loyal).on_met[0].offer: "
        "unknown offer 'nope' (not in the file's 'offers' catalogue)",
        "p.yaml:21: patterns[2] (id=fashion).events[1].where: "
        "alias 'second' refers to the same or a later step (at column 14)",
    ]


def test_structural_and_semantic_problems_of_one_pattern_are_reported_together() -> None:
    """A pydantic error in a pattern does not hide the checks made after it."""
    found = pattern_problems(
        """\
        - id: p
          type: match_all
          colour: red
          start: "2026-01-01T00:00:00"
          events:
            - {event: a, count: 2, where: "x[0] == 1"}
            - {event: b, weight: -1}
          on_met:
            - {action: publish, topic: t, value: 1, delay: soon}
            - {action: log_accept, offer: nope}
            - {action: reset_pattern, target: nowhere}
            - {action: frobnicate}
        """
    )
    assert [path for path, _ in found] == [
        "patterns[0] (id=p).colour",
        "patterns[0] (id=p).start",
        "patterns[0] (id=p).events[0].count",
        "patterns[0] (id=p).events[0].where",
        "patterns[0] (id=p).events[1].weight",
        "patterns[0] (id=p).on_met[0].delay",
        "patterns[0] (id=p).on_met[1].offer",
        "patterns[0] (id=p).on_met[2].target",
        "patterns[0] (id=p).on_met[3]",
    ]


def test_top_level_problems_do_not_hide_pattern_problems() -> None:
    found = refused(
        """\
        version: 2
        colour: red
        segments: {vip: "len(x)"}
        patterns:
          - {id: p, type: counter, events: [{event: a, weight: 2}]}
        """
    )
    assert [(p.line, p.path) for p in found] == [
        (1, "version"),
        (2, "colour"),
        (3, "segments.vip"),
        (5, "patterns[0] (id=p).events[0].weight"),
    ]


def test_problems_are_listed_top_of_the_file_first_and_once() -> None:
    found = refused(FIVE_PROBLEMS)
    lines = [problem.line or 0 for problem in found]
    assert lines == sorted(lines)
    assert len(set(found)) == len(found)


def test_a_broken_type_does_not_cause_follow_up_problems() -> None:
    assert only(
        """\
        - id: p
          type: matchall
          events: [{event: a, count: 2, weight: 3, as: x, min_after: 1m}]
        """
    ) == (
        "patterns[0] (id=p).type",
        "must be match_all, counter, weighted_counter or sequence",
    )


def test_a_broken_pattern_id_does_not_cause_follow_up_problems() -> None:
    found = pattern_problems(
        """\
        - id: "cart abandon"
          type: match_all
          events: [{event: a}]
          on_met: [{action: reset_pattern, target: "cart abandon"}]
        - {id: ok, type: match_all, events: [{event: a}], on_met: [{action: reset_pattern, target: "cart abandon"}]}
        """
    )
    assert found == [
        (
            "patterns[0] (id=cart abandon).id",
            "may contain only letters, digits, '_', '.' and '-' (no spaces), e.g. cart_abandon",
        )
    ]


# ---------------------------------------------------------------------- rendering


def test_problem_rendering() -> None:
    assert Problem("patterns[0] (id=a).type", "bad", 7).render("f.yaml") == (
        "f.yaml:7: patterns[0] (id=a).type: bad"
    )
    assert Problem("", "bad", None).render(None) == "<patterns>: bad"
    assert Problem("version", "bad", 1).render(None) == "<patterns>:1: version: bad"


def test_a_pattern_without_a_usable_id_is_named_by_position() -> None:
    found = pattern_problems("- {type: match_all, events: [{event: a}]}\n- {id: 5, type: x}\n")
    assert found[0] == ("patterns[0].id", "required but missing")
    assert ("patterns[1].id", "must be text") in found


# ---------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("text", "line", "path", "message"),
    [
        (
            "version: 1\ncolour: red\n",
            2,
            "colour",
            "unknown key; the keys allowed here are version, source, offers, segments, patterns",
        ),
        ("version: 1\npattern: []\n", 2, "pattern", "unknown key; did you mean 'patterns'?"),
        (
            "version: 1\nsource: {topic: t, userid: u}\n",
            2,
            "source.userid",
            "unknown key; did you mean 'user_id'?",
        ),
        (
            "version: 1\nsource: {timestamp: {field: t, units: s}}\n",
            2,
            "source.timestamp.units",
            "unknown key; did you mean 'unit'?",
        ),
        (
            "version: 1\noffers: [{code: a, attrs: {}}]\n",
            2,
            "offers[0].attrs",
            "unknown key; did you mean 'attributes'?",
        ),
    ],
)
def test_unknown_top_level_keys(text: str, line: int, path: str, message: str) -> None:
    (problem,) = refused(text)
    assert (problem.line, problem.path, problem.message) == (line, path, message)


@pytest.mark.parametrize(
    ("pattern", "path", "message"),
    [
        (
            "{id: p, type: match_all, events: [{event: a}], on_mett: []}",
            "patterns[0] (id=p).on_mett",
            "unknown key; did you mean 'on_met'?",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], category: x}",
            "patterns[0] (id=p).category",
            "unknown key; the keys allowed here are id, type, window, extend_true_state, start, "
            "end, audience, ignore_repeats, events, threshold, suspend, on_met, checkpoints",
        ),
        (
            "{id: p, type: match_all, events: [{event: a, wher: x}]}",
            "patterns[0] (id=p).events[0].wher",
            "unknown key; did you mean 'where'?",
        ),
        (
            "{id: p, type: match_all, window: {mode: rolling, duration: 1h, length: 1h}, "
            "events: [{event: a}]}",
            "patterns[0] (id=p).window.length",
            "unknown key; the keys allowed here are mode, duration",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], suspend: [{event: b, for: 1d}]}",
            "patterns[0] (id=p).suspend[0].for",
            "unknown key; the keys allowed here are event, where, offer, attribute, value, duration",
        ),
        (
            "{id: p, type: match_all, events: [{event: a, aggregate: [{fn: sum, attribute: x, "
            "op: '>', value: 1, of: y}]}]}",
            "patterns[0] (id=p).events[0].aggregate[0].of",
            "unknown key; the keys allowed here are fn, attribute, op, value",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: publish, topic: t, "
            "value: 1, topics: x}]}",
            "patterns[0] (id=p).on_met[0].topics",
            "unknown key; did you mean 'topic'?",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: log_contact, "
            "offer: o1, channel: web}]}",
            "patterns[0] (id=p).on_met[0].channel",
            "unknown key; the keys allowed here are action, offer, delay, at",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: suppress_offers, "
            "offers: [o1], until: 1d}]}",
            "patterns[0] (id=p).on_met[0].until",
            "unknown key; the keys allowed here are action, offers, where, duration",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], checkpoints: [{after: 1d, "
            "actions: [{action: resegment}], every: 1d}]}",
            "patterns[0] (id=p).checkpoints[0].every",
            "unknown key; the keys allowed here are after, actions",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], checkpoints: [{after: 1d, "
            "actions: [{action: resegment, segment: x}]}]}",
            "patterns[0] (id=p).checkpoints[0].actions[0].segment",
            "unknown key; the keys allowed here are action, delay, at",
        ),
    ],
)
def test_unknown_pattern_event_and_action_keys(pattern: str, path: str, message: str) -> None:
    assert only(f"- {pattern}\n") == (path, message)


def test_unknown_key_line_is_the_key_line() -> None:
    (problem,) = refused(
        with_patterns(
            """\
            - id: p
              type: match_all
              events:
                - event: a
                  whre: "x == 1"
            """
        )
    )
    assert problem.line == FIRST_PATTERN_LINE + 4


# ---------------------------------------------------------------------- missing keys


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("{type: match_all, events: [{event: a}]}", "patterns[0].id"),
        ("{id: p, events: [{event: a}]}", "patterns[0] (id=p).type"),
        ("{id: p, type: match_all}", "patterns[0] (id=p).events"),
        (
            "{id: p, type: match_all, events: [{where: 'x == 1'}]}",
            "patterns[0] (id=p).events[0].event",
        ),
        (
            "{id: p, type: match_all, window: {mode: rolling}, events: [{event: a}]}",
            "patterns[0] (id=p).window.duration",
        ),
        (
            "{id: p, type: match_all, window: {duration: 1d}, events: [{event: a}]}",
            "patterns[0] (id=p).window.mode",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], suspend: [{duration: 1d}]}",
            "patterns[0] (id=p).suspend[0].event",
        ),
        (
            "{id: p, type: match_all, events: [{event: a, aggregate: [{attribute: x, op: '>', value: 1}]}]}",
            "patterns[0] (id=p).events[0].aggregate[0].fn",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: publish, value: 1}]}",
            "patterns[0] (id=p).on_met[0].topic",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: publish, topic: t}]}",
            "patterns[0] (id=p).on_met[0].value",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: log_reject}]}",
            "patterns[0] (id=p).on_met[0].offer",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: set_attribute, value: '1'}]}",
            "patterns[0] (id=p).on_met[0].name",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: set_attribute, name: n}]}",
            "patterns[0] (id=p).on_met[0].value",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: trigger_events}]}",
            "patterns[0] (id=p).on_met[0].events",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: qualify_segments}]}",
            "patterns[0] (id=p).on_met[0].segments",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], checkpoints: [{actions: [{action: resegment}]}]}",
            "patterns[0] (id=p).checkpoints[0].after",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], checkpoints: [{after: 1d}]}",
            "patterns[0] (id=p).checkpoints[0].actions",
        ),
    ],
)
def test_missing_required_keys(pattern: str, path: str) -> None:
    assert only(f"- {pattern}\n") == (path, "required but missing")


def test_missing_action_type() -> None:
    path, message = only("- {id: p, type: match_all, events: [{event: a}], on_met: [{topic: t}]}\n")
    assert path == "patterns[0] (id=p).on_met[0]"
    assert message.startswith("'action' is missing; it names the action: one of publish, ")


def test_missing_offer_code_and_version() -> None:
    found = refused("offers: [{attributes: {a: 1}}]\n")
    assert [(p.path, p.message) for p in found] == [
        ("version", "required but missing"),
        ("offers[0].code", "required but missing"),
    ]


# ---------------------------------------------------------------------- version


@pytest.mark.parametrize("version", ["2", "'1'", "1.5", "v1", "null"])
def test_bad_version(version: str) -> None:
    (problem,) = refused(f"version: {version}\n")
    assert (problem.path, problem.line) == ("version", 1)
    assert problem.message == "must be 1 (the only version of the pattern file format)"


# ---------------------------------------------------------------------- durations and timestamps


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        (
            "{id: p, type: match_all, window: {mode: rolling, duration: 30x}, events: [{event: a}]}",
            "patterns[0] (id=p).window.duration",
        ),
        (
            "{id: p, type: match_all, window: {mode: time_bound, duration: 1d}, extend_true_state: 4days, "
            "events: [{event: a}]}",
            "patterns[0] (id=p).extend_true_state",
        ),
        (
            "{id: p, type: sequence, events: [{event: a}, {event: b, min_after: soon}]}",
            "patterns[0] (id=p).events[1].min_after",
        ),
        (
            "{id: p, type: sequence, events: [{event: a}, {event: b, max_after: '-5m'}]}",
            "patterns[0] (id=p).events[1].max_after",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], suspend: {event: b, duration: P1M}}",
            "patterns[0] (id=p).suspend[0].duration",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], checkpoints: [{after: 3 days, "
            "actions: [{action: resegment}]}]}",
            "patterns[0] (id=p).checkpoints[0].after",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: resegment, delay: 1h30m}]}",
            "patterns[0] (id=p).on_met[0].delay",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: suppress_offers, "
            "offers: [o1], duration: forever}]}",
            "patterns[0] (id=p).on_met[0].duration",
        ),
    ],
)
def test_bad_durations(pattern: str, path: str) -> None:
    found_path, message = only(f"- {pattern}\n")
    assert found_path == path
    assert "is not a duration; write e.g. 250ms, 30s, 30m, 2h, 7d, 1w or ISO-8601 PT30M" in message


def test_a_duration_without_unit_says_so() -> None:
    assert only(
        "- {id: p, type: match_all, window: {mode: rolling, duration: 30}, events: [{event: a}]}\n"
    ) == (
        "patterns[0] (id=p).window.duration",
        "30 has no unit; write a duration such as 250ms, 30s, 30m, 2h, 7d, 1w or ISO-8601 PT30M",
    )


@pytest.mark.parametrize(
    ("pattern", "path", "message"),
    [
        (
            "{id: p, type: match_all, window: {mode: rolling, duration: 0s}, events: [{event: a}]}",
            "patterns[0] (id=p).window.duration",
            "must be longer than zero",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], checkpoints: [{after: PT0S, "
            "actions: [{action: resegment}]}]}",
            "patterns[0] (id=p).checkpoints[0].after",
            "must be longer than zero",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], suspend: {event: b, duration: 0ms}}",
            "patterns[0] (id=p).suspend[0].duration",
            "must be longer than zero (leave it out to suspend until a reset)",
        ),
        (
            "{id: p, type: match_all, events: [{event: a}], on_met: [{action: suppress_offers, "
            "offers: [o1], duration: 0s}]}",
            "patterns[0] (id=p).on_met[0].duration",
            "must be longer than zero (leave it out to suppress for good)",
        ),
    ],
)
def test_zero_durations_where_they_make_no_sense(pattern: str, path: str, message: str) -> None:
    assert only(f"- {pattern}\n") == (path, message)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("start", "2026-01-01T00:00:00"),
        ("start", "2026-01-01"),
        ("end", "'2026-01-01 09:00'"),
    ],
)
def test_timestamps_need_an_offset(key: str, value: str) -> None:
    path, message = only(f"- {{id: p, type: match_all, {key}: {value}, events: [{{event: a}}]}}\n")
    assert path == f"patterns[0] (id=p).{key}"
    assert "has no offset; add one, e.g." in message and "Z (UTC)" in message


def test_at_needs_an_offset_and_must_be_a_timestamp() -> None:
    found = pattern_problems(
        """\
        - id: p
          type: match_all
          events: [{event: a}]
          on_met:
            - {action: resegment, at: "2026-11-20T09:00:00"}
            - {action: resegment, at: tomorrow}
            - {action: resegment, at: 1700000000}
        """
    )
    assert [path for path, _ in found] == [
        "patterns[0] (id=p).on_met[0].at",
        "patterns[0] (id=p).on_met[1].at",
        "patterns[0] (id=p).on_met[2].at",
    ]
    assert "has no offset" in found[0][1]
    assert "'tomorrow' is not a timestamp" in found[1][1]
    assert "1700000000 is not a timestamp" in found[2][1]


# ---------------------------------------------------------------------- windows and dates


@pytest.mark.parametrize("window", ["", "window: {mode: rolling, duration: 1d}, "])
def test_extend_true_state_only_with_time_bound(window: str) -> None:
    assert only(
        f"- {{id: p, type: match_all, {window}extend_true_state: 1d, events: [{{event: a}}]}}\n"
    ) == (
        "patterns[0] (id=p).extend_true_state",
        "only allowed with window mode time_bound (window: {mode: time_bound, duration: ...})",
    )


def test_unbounded_is_the_absence_of_a_window() -> None:
    assert only(
        "- {id: p, type: match_all, window: {mode: unbounded, duration: 1d}, events: [{event: a}]}\n"
    ) == (
        "patterns[0] (id=p).window.mode",
        "must be rolling or time_bound (leave 'window' out for an unbounded pattern)",
    )


@pytest.mark.parametrize(
    "end", ["2026-01-01T00:00:00Z", "2025-12-31T00:00:00Z", "2026-01-01T01:00:00+01:00"]
)
def test_start_must_be_before_end(end: str) -> None:
    assert only(
        "- {id: p, type: match_all, start: 2026-01-01T00:00:00Z, "
        f"end: {end}, events: [{{event: a}}]}}\n"
    ) == ("patterns[0] (id=p).end", "must be later than 'start'")


# ---------------------------------------------------------------------- ids


def test_duplicate_ids() -> None:
    found = refused(
        with_patterns(
            """\
            - {id: p, type: match_all, events: [{event: a}]}
            - {id: q, type: match_all, events: [{event: a}]}
            - {id: p, type: counter, events: [{event: a, count: 2}]}
            """
        )
    )
    assert [(p.line, p.path, p.message) for p in found] == [
        (
            FIRST_PATTERN_LINE + 2,
            "patterns[2] (id=p).id",
            "duplicate pattern id 'p' (also patterns[0])",
        ),
    ]


@pytest.mark.parametrize("bad_id", ["'cart abandon'", "'a/b'", "'x!'", "''", "'café'", "'a:b'"])
def test_bad_id_characters(bad_id: str) -> None:
    path, message = only(f"- {{id: {bad_id}, type: match_all, events: [{{event: a}}]}}\n")
    assert path.endswith(".id")
    assert message.startswith("may contain only letters, digits, '_', '.' and '-'")


@pytest.mark.parametrize("good_id", ["a", "cart_abandon", "v1.2-b", "2026", "A-B.C_d"])
def test_good_ids(good_id: str) -> None:
    load(with_patterns(f"- {{id: '{good_id}', type: match_all, events: [{{event: a}}]}}\n"))


# ---------------------------------------------------------------------- type-specific keys


@pytest.mark.parametrize(
    ("kind", "step", "key", "allowed_in"),
    [
        ("match_all", "count: 2", "count", "counter"),
        ("sequence", "count: 2", "count", "counter"),
        ("counter", "weight: 2", "weight", "weighted_counter"),
        ("match_all", "weight: 2", "weight", "weighted_counter"),
        ("counter", "as: x", "as", "sequence"),
        ("weighted_counter", "min_after: 1m", "min_after", "sequence"),
        ("match_all", "max_after: 1m", "max_after", "sequence"),
    ],
)
def test_type_specific_step_keys_in_the_wrong_type(
    kind: str, step: str, key: str, allowed_in: str
) -> None:
    threshold = "threshold: 5, " if kind == "weighted_counter" else ""
    found = pattern_problems(
        f"- {{id: p, type: {kind}, {threshold}events: [{{event: a}}, {{event: b, {step}}}]}}\n"
    )
    assert found == [
        (
            f"patterns[0] (id=p).events[1].{key}",
            f"only allowed in {allowed_in} patterns (this one is {kind})",
        )
    ]


@pytest.mark.parametrize("kind", ["match_all", "counter", "sequence"])
def test_threshold_only_for_weighted_counter(kind: str) -> None:
    assert only(f"- {{id: p, type: {kind}, threshold: 3, events: [{{event: a}}]}}\n") == (
        "patterns[0] (id=p).threshold",
        f"only allowed in weighted_counter patterns (this one is {kind})",
    )


def test_weighted_counter_needs_a_positive_threshold() -> None:
    assert only("- {id: p, type: weighted_counter, events: [{event: a, weight: 2}]}\n") == (
        "patterns[0] (id=p).threshold",
        "required for weighted_counter: the score to reach",
    )
    assert only("- {id: p, type: weighted_counter, threshold: .inf, events: [{event: a}]}\n") == (
        "patterns[0] (id=p).threshold",
        "must be a finite number",
    )
    for threshold in ("0", "-1"):
        assert only(
            f"- {{id: p, type: weighted_counter, threshold: {threshold}, events: [{{event: a}}]}}\n"
        ) == ("patterns[0] (id=p).threshold", "must be a number greater than 0")
    assert only("- {id: p, type: weighted_counter, threshold: lots, events: [{event: a}]}\n") == (
        "patterns[0] (id=p).threshold",
        "must be a number",
    )


@pytest.mark.parametrize(
    ("step", "key", "message"),
    [
        ("count: 0", "count", "must be at least 1"),
        ("count: 1.5", "count", "must be a whole number"),
        ("count: many", "count", "must be a whole number"),
    ],
)
def test_counts(step: str, key: str, message: str) -> None:
    assert only(f"- {{id: p, type: counter, events: [{{event: a, {step}}}]}}\n") == (
        f"patterns[0] (id=p).events[0].{key}",
        message,
    )


@pytest.mark.parametrize("weight", ["0", "-2"])
def test_weights_must_be_positive(weight: str) -> None:
    assert only(
        f"- {{id: p, type: weighted_counter, threshold: 4, events: [{{event: a, weight: {weight}}}]}}\n"
    ) == ("patterns[0] (id=p).events[0].weight", "must be greater than 0")


def test_aggregate_fields() -> None:
    found = pattern_problems(
        """\
        - id: p
          type: counter
          events:
            - event: purchase
              aggregate:
                - {fn: median, attribute: amount, op: ">=", value: 10}
                - {fn: sum, attribute: amount, op: "=>", value: 10}
                - {fn: sum, attribute: amount, op: ">=", value: much}
        """
    )
    assert found == [
        ("patterns[0] (id=p).events[0].aggregate[0].fn", "must be sum, min, max or avg"),
        ("patterns[0] (id=p).events[0].aggregate[1].op", "must be >=, >, <=, <, == or !="),
        ("patterns[0] (id=p).events[0].aggregate[2].value", "must be a number"),
    ]


# ---------------------------------------------------------------------- sequences and aliases


def test_alias_used_before_it_is_defined() -> None:
    assert only(
        """\
        - id: p
          type: sequence
          events:
            - {event: a, where: "x == later.x"}
            - {event: b, as: later}
        """
    ) == (
        "patterns[0] (id=p).events[0].where",
        "alias 'later' refers to the same or a later step (at column 6)",
    )


def test_alias_used_by_its_own_step() -> None:
    assert only(
        """\
        - id: p
          type: sequence
          events:
            - {event: a, as: first}
            - {event: b, as: me, where: "me.x == first.x"}
        """
    ) == (
        "patterns[0] (id=p).events[1].where",
        "alias 'me' refers to the same or a later step (at column 1)",
    )


def test_repeated_alias() -> None:
    assert only(
        """\
        - id: p
          type: sequence
          events:
            - {event: a, as: step}
            - {event: b}
            - {event: a, as: step}
        """
    ) == (
        "patterns[0] (id=p).events[2].as",
        "alias 'step' is already used by events[0]; each step needs its own alias",
    )


def test_the_same_event_name_may_appear_in_several_steps() -> None:
    definitions = load(
        with_patterns(
            """\
            - id: p
              type: sequence
              events:
                - {event: a, as: first}
                - {event: b, where: "x == first.x"}
                - {event: a, where: "y != first.y"}
            """
        )
    )
    steps = definitions.patterns[0].events
    assert [step.matcher.name for step in steps] == ["a", "b", "a"]
    assert steps[1].matcher.where is None  # checked when the sequence is searched
    assert steps[1].alias_where is not None


@pytest.mark.parametrize(
    "alias", ["event", "profile", "now", "user_id", "pattern", "_x", "1x", "a-b"]
)
def test_alias_names(alias: str) -> None:
    path, message = only(
        f"- {{id: p, type: sequence, events: [{{event: a, as: '{alias}'}}, {{event: b}}]}}\n"
    )
    assert path == "patterns[0] (id=p).events[0].as"
    assert message.startswith("must be a name of letters, digits and '_'")


def test_gaps() -> None:
    found = pattern_problems(
        """\
        - id: p
          type: sequence
          events:
            - {event: a, max_after: 1h}
            - {event: b, min_after: 2h, max_after: 1h}
        """
    )
    assert found == [
        (
            "patterns[0] (id=p).events[0].max_after",
            "not allowed on the first step: it has no previous step to measure the gap from",
        ),
        ("patterns[0] (id=p).events[1].max_after", "must not be shorter than min_after"),
    ]


# ---------------------------------------------------------------------- expressions


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("len(x) > 1", "function calls are not allowed (at column 1)"),
        ("items[0] == 1", "subscripts are not allowed (at column 1)"),
        ("__class__ == 1", "names beginning with '_' are not allowed (at column 1)"),
        ("x.__class__", "names beginning with '_' are not allowed"),
        ("[y for y in x]", "comprehensions are not allowed"),
        ("(lambda: 1)", "lambda expressions are not allowed"),
        ("a if b else c", "conditional expressions"),
        ("x // 2 == 1", "'//' is not allowed"),
        ("x ** 2 == 1", "'**' is not allowed"),
        ("f'{x}' == 'a'", "f-strings are not allowed"),
        ("x = 1", "syntax error: invalid syntax; use '==' to compare (at column 3)"),
        ("profile == 1", "'profile' must be followed by an attribute"),
        ("", "empty expression"),
    ],
)
def test_expression_errors_in_where(where: str, message: str) -> None:
    path, found = only(
        f"- {{id: cart_abandon, type: match_all, events: [{{event: a, where: {json.dumps(where)}}}]}}\n"
    )
    assert path == "patterns[0] (id=cart_abandon).events[0].where"
    assert message in found


def test_the_spec_example_message() -> None:
    text = with_patterns(
        """\
        - {id: a, type: match_all, events: [{event: a}]}
        - {id: b, type: match_all, events: [{event: b}]}
        - id: cart_abandon
          type: match_all
          events:
            - {event: add_to_cart, where: "count(items) > 2"}
        """
    )
    (problem,) = refused(text, "shop.yaml")
    assert problem.render("shop.yaml").startswith(
        "shop.yaml:11: patterns[2] (id=cart_abandon).events[0].where: "
        "function calls are not allowed"
    )


def test_expression_errors_elsewhere() -> None:
    found = refused(
        """\
        version: 1
        offers: [{code: o1}]
        segments:
          big: "profile.spend > 1000"
          bad: "sum(profile.spend) > 1"
          worse: 5
        patterns:
          - id: p
            type: match_all
            audience: "age >= 18 and __import__"
            events: [{event: a, where: 'category == "shoes" and price[0] > 1'}]
            suspend: {event: b, where: "x if y else z"}
            on_met:
              - {action: set_attribute, name: n, value: "profile.n ** 2"}
              - {action: suppress_offers, where: "channel ="}
        """
    )
    assert [(p.line, p.path) for p in found] == [
        (5, "segments.bad"),
        (6, "segments.worse"),
        (10, "patterns[0] (id=p).audience"),
        (11, "patterns[0] (id=p).events[0].where"),
        (12, "patterns[0] (id=p).suspend[0].where"),
        (14, "patterns[0] (id=p).on_met[0].value"),
        (15, "patterns[0] (id=p).on_met[1].where"),
    ]
    assert found[1].message == "must be text"


# ---------------------------------------------------------------------- actions


@pytest.mark.parametrize("action", ["suppress_offers", "qualify_segments"])
@pytest.mark.parametrize("timing", ["delay: 1h", "at: '2026-01-01T00:00:00Z'"])
def test_delay_and_at_are_not_for_immediate_actions(action: str, timing: str) -> None:
    what = "offers: [o1]" if action == "suppress_offers" else "segments: [vip]"
    key = timing.split(":")[0]
    assert only(
        f"- {{id: p, type: match_all, events: [{{event: a}}], "
        f"on_met: [{{action: {action}, {what}, {timing}}}]}}\n"
    ) == (
        f"patterns[0] (id=p).on_met[0].{key}",
        f"not allowed: {action} always takes effect at once (no 'delay' or 'at')",
    )


def test_delay_or_at_not_both() -> None:
    assert only(
        "- {id: p, type: match_all, events: [{event: a}], on_met: [{action: publish, topic: t, "
        "value: 1, delay: 1h, at: '2026-01-01T00:00:00Z'}]}\n"
    ) == ("patterns[0] (id=p).on_met[0]", "give either 'delay' or 'at', not both")


def test_every_action_may_be_delayed_but_the_immediate_ones() -> None:
    load(
        with_patterns(
            """\
            - id: p
              type: match_all
              events: [{event: a}]
              on_met:
                - {action: publish, topic: t, value: 1, delay: 1m}
                - {action: log_contact, offer: o1, delay: 1m}
                - {action: log_accept, offer: o1, at: "2026-01-01T00:00:00Z"}
                - {action: log_reject, offer: o1, delay: 1m}
                - {action: set_attribute, name: n, value: "1", delay: 1m}
                - {action: trigger_events, events: [x], delay: 1m}
                - {action: resegment, delay: 1m}
                - {action: reset_pattern, delay: 1m}
                - {action: suppress_offers, offers: [o1]}
                - {action: qualify_segments, segments: [s]}
            """
        )
    )


def test_unknown_action() -> None:
    path, message = only(
        "- {id: p, type: match_all, events: [{event: a}], on_met: [{action: send_email}]}\n"
    )
    assert path == "patterns[0] (id=p).on_met[0]"
    assert message == (
        "unknown action 'send_email'; the actions are publish, log_contact, log_accept, "
        "log_reject, set_attribute, trigger_events, suppress_offers, qualify_segments, "
        "resegment, reset_pattern"
    )


def test_unknown_offer_codes_everywhere() -> None:
    found = pattern_problems(
        """\
        - id: p
          type: match_all
          events:
            - {event: offerAccepted, offer: gone}
          suspend: {event: offerRejected, offer: gone2}
          on_met:
            - {action: publish, topic: t, value: 1, offer: x1}
            - {action: log_contact, offer: x2}
            - {action: log_accept, offer: x3}
            - {action: log_reject, offer: x4}
            - {action: suppress_offers, offers: [o1, x5]}
        """
    )
    unknown = "(not in the file's 'offers' catalogue)"
    assert found == [
        ("patterns[0] (id=p).events[0].offer", f"unknown offer 'gone' {unknown}"),
        ("patterns[0] (id=p).suspend[0].offer", f"unknown offer 'gone2' {unknown}"),
        ("patterns[0] (id=p).on_met[0].offer", f"unknown offer 'x1' {unknown}"),
        ("patterns[0] (id=p).on_met[1].offer", f"unknown offer 'x2' {unknown}"),
        ("patterns[0] (id=p).on_met[2].offer", f"unknown offer 'x3' {unknown}"),
        ("patterns[0] (id=p).on_met[3].offer", f"unknown offer 'x4' {unknown}"),
        ("patterns[0] (id=p).on_met[4].offers[1]", f"unknown offer 'x5' {unknown}"),
    ]


def test_suppress_offers_needs_offers_or_where() -> None:
    found = pattern_problems(
        """\
        - id: p
          type: match_all
          events: [{event: a}]
          on_met:
            - {action: suppress_offers}
            - {action: suppress_offers, offers: [o1], where: "channel == 'web'"}
            - {action: suppress_offers, offers: []}
        """
    )
    assert found == [
        (
            "patterns[0] (id=p).on_met[0]",
            "needs 'offers' (a list of offer codes) or 'where' (a test on the offers' attributes)",
        ),
        ("patterns[0] (id=p).on_met[1]", "give either 'offers' or 'where', not both"),
        ("patterns[0] (id=p).on_met[2].offers", "must list at least one item"),
    ]


def test_reset_pattern_targets() -> None:
    # a target may be defined later in the file
    load(
        with_patterns(
            """\
            - {id: a, type: match_all, events: [{event: x}], on_met: [{action: reset_pattern, target: b}]}
            - {id: b, type: match_all, events: [{event: y}], on_met: [{action: reset_pattern}]}
            """
        )
    )
    assert only(
        "- {id: a, type: match_all, events: [{event: x}], "
        "on_met: [{action: reset_pattern, target: c}]}\n"
    ) == (
        "patterns[0] (id=a).on_met[0].target",
        "unknown pattern 'c' (no pattern in this file has that id)",
    )


def test_other_action_fields() -> None:
    found = pattern_problems(
        """\
        - id: p
          type: match_all
          events: [{event: a}]
          on_met:
            - {action: set_attribute, name: "tier level", value: "1"}
            - {action: trigger_events, events: []}
            - {action: trigger_events, events: [""]}
            - {action: qualify_segments, segments: vip}
            - {action: publish, topic: "", value: 1}
            - send_email
        """
    )
    assert found == [
        (
            "patterns[0] (id=p).on_met[0].name",
            "must be a name of letters, digits and '_', starting with a letter",
        ),
        ("patterns[0] (id=p).on_met[1].events", "must list at least one item"),
        ("patterns[0] (id=p).on_met[2].events[0]", "must not be empty"),
        (
            "patterns[0] (id=p).on_met[3].segments",
            "must be a list (items on lines starting with '- ', or [a, b])",
        ),
        ("patterns[0] (id=p).on_met[4].topic", "must not be empty"),
        ("patterns[0] (id=p).on_met[5]", "must be a mapping of keys to values (key: value)"),
    ]


# ---------------------------------------------------------------------- macros


def test_macro_filter_keys() -> None:
    found = pattern_problems(
        """\
        - id: p
          type: match_all
          events:
            - {event: click, offer: o1}
            - {event: click, attribute: category, value: shoes}
            - {event: offerAcceptedInCategory, value: shoes}
            - {event: offerContactedInCategory, attribute: category}
            - {event: offerRejectedInCategory, attribute: category, value: shoes, offer: o1}
        """
    )
    assert found == [
        (
            "patterns[0] (id=p).events[0].offer",
            "only allowed with the macros offerContacted, offerAccepted, offerRejected",
        ),
        (
            "patterns[0] (id=p).events[1].attribute",
            "only allowed with the macros offerContactedInCategory, offerAcceptedInCategory and "
            "offerRejectedInCategory",
        ),
        (
            "patterns[0] (id=p).events[1].value",
            "only allowed with the macros offerContactedInCategory, offerAcceptedInCategory and "
            "offerRejectedInCategory",
        ),
        (
            "patterns[0] (id=p).events[2].attribute",
            "required with offerAcceptedInCategory: the offer attribute to look at "
            "(e.g. attribute: category)",
        ),
        (
            "patterns[0] (id=p).events[3].value",
            "required with offerContactedInCategory: the value the offer attribute must have",
        ),
        (
            "patterns[0] (id=p).events[4].offer",
            "not allowed with offerRejectedInCategory, which matches offers by attribute/value; "
            "use offerRejected for one offer",
        ),
    ]


def test_macros_compile_to_their_event_and_filter() -> None:
    definitions = load(
        with_patterns(
            """\
            - id: p
              type: match_all
              events:
                - {event: offerAccepted, offer: o1}
                - {event: offerContactedInCategory, attribute: channel, value: web}
                - {event: offerRejected}
            """
        )
    )
    matchers = [step.matcher for step in definitions.patterns[0].events]
    assert [(m.name, m.filters) for m in matchers] == [
        ("offerAccepted", (("offer", "o1"),)),
        ("offerContacted", (("channel", "web"),)),
        ("offerRejected", ()),
    ]


# ---------------------------------------------------------------------- templates


def test_template_problems_name_the_place_inside_the_value() -> None:
    found = pattern_problems(
        """\
        - id: p
          type: match_all
          events: [{event: a}]
          on_met:
            - action: publish
              topic: t
              key: "${user_id"
              value: [{Timestamp: "${now_ns}", Tags: {}, Id: "${len(x)}"}]
            - {action: trigger_events, events: [x], attributes: {why: "at ${__name__}"}}
            - {action: publish, topic: t, value: "${}"}
        """
    )
    assert found == [
        (
            "patterns[0] (id=p).on_met[0].key",
            "'${' without a matching '}' in '${user_id'; write ${name}",
        ),
        (
            "patterns[0] (id=p).on_met[0].value[0].Id",
            "in '${len(x)}': function calls are not allowed (at column 1)",
        ),
        (
            "patterns[0] (id=p).on_met[1].attributes.why",
            "in '${__name__}': names beginning with '_' are not allowed (at column 1)",
        ),
        ("patterns[0] (id=p).on_met[2].value", "in '${}': empty expression"),
    ]


def test_template_names() -> None:
    load(
        with_patterns(
            """\
            - id: p
              type: sequence
              events: [{event: a, as: first}, {event: b}]
              on_met:
                - action: publish
                  topic: t
                  value:
                    all: ["${user_id}", "${pattern}", "${now}", "${now_ms}", "${now_ns}"]
                    event: "${event.category} ${category} ${profile.tier} ${first.productId}"
            """
        )
    )


# ---------------------------------------------------------------------- source and offers


def test_source_problems_are_one_per_field() -> None:
    found = refused(
        """\
        version: 1
        source:
          topic: ""
          user_id: 5
          event: 7
          timestamp: {field: ts, unit: minutes}
          attributes: all
        """
    )
    assert [(p.line, p.path, p.message) for p in found] == [
        (3, "source.topic", "must not be empty"),
        (4, "source.user_id", "must be text"),
        (
            5,
            "source.event",
            "must be an event name (text), or {field: <name of the field holding the event name>}",
        ),
        (6, "source.timestamp.unit", "must be s, ms, us, ns or iso"),
        (
            7,
            "source.attributes",
            'must be "*" (every other field of the record) or '
            "{field: <name of the field holding the attributes>}",
        ),
    ]


def test_source_mapping_forms_report_inside_the_mapping() -> None:
    found = refused(
        """\
        version: 1
        source:
          event: {field: 5}
          attributes: {name: data}
          timestamp: ts
        """
    )
    assert [(p.path, p.message) for p in found] == [
        ("source.event.field", "must be text"),
        ("source.attributes.field", "required but missing"),
        ("source.attributes.name", "unknown key; the keys allowed here are field"),
        ("source.timestamp", "must be a mapping of keys to values (key: value)"),
    ]


def test_offer_problems() -> None:
    found = refused(
        """\
        version: 1
        offers:
          - {code: o1}
          - {code: o1, attributes: {a: 1}}
          - {code: ""}
          - just_a_code
          - {code: o2, attributes: [a]}
        """
    )
    assert [(p.line, p.path, p.message) for p in found] == [
        (4, "offers[1].code", "duplicate offer code 'o1'"),
        (5, "offers[2].code", "must not be empty"),
        (6, "offers[3]", "must be a mapping of keys to values (key: value)"),
        (7, "offers[4].attributes", "must be a mapping of keys to values (key: value)"),
    ]


def test_wrong_shapes_at_the_top() -> None:
    found = refused("version: 1\noffers: {code: o1}\nsegments: [a]\npatterns: {id: p}\n")
    assert [(p.path, p.message) for p in found] == [
        ("offers", "must be a list (items on lines starting with '- ', or [a, b])"),
        ("segments", "must be a mapping of keys to values (key: value)"),
        ("patterns", "must be a list (items on lines starting with '- ', or [a, b])"),
    ]


def test_a_pattern_that_is_not_a_mapping() -> None:
    assert only("- cart_abandon\n") == (
        "patterns[0]",
        "a pattern must be a mapping with at least 'id', 'type' and 'events'",
    )


def test_pattern_field_shapes() -> None:
    found = pattern_problems(
        """\
        - id: p
          type: match_all
          window: 7d
          events: {event: a}
          on_met: {action: resegment}
        """
    )
    assert found == [
        ("patterns[0] (id=p).window", "must be a mapping of keys to values (key: value)"),
        (
            "patterns[0] (id=p).events",
            "must be a list (items on lines starting with '- ', or [a, b])",
        ),
        (
            "patterns[0] (id=p).on_met",
            "must be a list (items on lines starting with '- ', or [a, b])",
        ),
    ]


# ---------------------------------------------------------------------- the file itself


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("version: 1\npatterns:\n  - id: a\n    type: [match_all\n", 5, "expected ',' or ']'"),
        ("version: 1\npatterns:\n  - id: a\n   type: x\n", 4, "check the indentation"),
        ("version: 1\npatterns:\n\t- id: a\n", 3, "a tab character; YAML indents with spaces only"),
        ("version: 1\n---\nversion: 1\n", 2, "a second document ('---')"),
        ("version: 1\nsegments: {a: 'x'\n", 3, "not valid YAML"),
        ('{"version": 1, "patterns": [}', 1, "not valid YAML"),
        ("version: 1\noffers: [{code: *nothing}]\n", 2, "not valid YAML"),
    ],
)
def test_yaml_syntax_errors_have_a_line(text: str, line: int, fragment: str) -> None:
    (problem,) = refused(text)
    assert problem.path == ""
    assert problem.line == line
    assert problem.message.startswith("not valid YAML (column ")
    assert fragment in problem.message


def test_a_key_written_twice() -> None:
    found = refused(
        """\
        version: 1
        patterns:
          - id: p
            type: match_all
            events: [{event: a}]
            on_met: [{action: resegment}]
            on_met: [{action: reset_pattern}]
        """
    )
    assert [(p.line, p.path) for p in found] == [(7, "patterns[0].on_met")]
    assert found[0].message.startswith("this key is written twice in the same place")


def test_anchors_and_merge_keys_are_fine() -> None:
    definitions = load(
        """\
        version: 1
        patterns:
          - &base {id: a, type: match_all, events: [{event: x}]}
          - <<: *base
            id: b
        """
    )
    assert [pattern.id for pattern in definitions.patterns] == ["a", "b"]


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n", "---\n"])
def test_an_empty_file(text: str) -> None:
    (problem,) = refused(text)
    assert problem.message == (
        "the file is empty; a pattern file starts with 'version: 1' and lists its 'patterns'"
    )


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "a list"), ("hello\n", "just 'hello'"), ("42\n", "just 42")]
)
def test_a_document_that_is_not_a_mapping(text: str, kind: str) -> None:
    (problem,) = refused(text)
    assert problem.line == 1
    assert problem.message.startswith(f"the file holds {kind}; a pattern file is a mapping")


def test_load_definitions_file_problems(tmp_path: Path) -> None:
    with pytest.raises(PatternFileError) as caught:
        load_definitions_file(str(tmp_path / "missing.yaml"))
    assert str(caught.value) == (
        f"{tmp_path / 'missing.yaml'}: cannot read the file: No such file or directory"
    )
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"version: 1\n\xff\xfe\n")
    with pytest.raises(PatternFileError, match="not UTF-8"):
        load_definitions_file(str(binary))
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\n", encoding="utf-8")
    assert load_definitions_file(str(good)).patterns == ()


def test_the_error_names_the_file() -> None:
    with pytest.raises(PatternFileError) as caught:
        load_definitions("version: 3\n", "shop/patterns.yaml")
    assert str(caught.value) == (
        "shop/patterns.yaml:1: version: must be 1 (the only version of the pattern file format)"
    )
    with pytest.raises(PatternFileError) as caught:
        load_definitions("version: 3\n")
    assert str(caught.value).startswith("<patterns>:1: version:")
