"""Picking an event's routes by one attribute (core/dispatch.py) changes no outcome."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventpatterns.core.definitions import Definitions, load_definitions_file
from eventpatterns.core.dispatch import Dispatch, matcher_gates

from .conftest import E, defs, run, t

HERE = Path(__file__).resolve().parent
BENCH_PATTERNS = HERE.parents[1] / "benchmarks" / "patterns.yaml"


def gates_of(where: str | None) -> dict[str, set[str]]:
    step: dict[str, Any] = {"event": "click"}
    if where is not None:
        step["where"] = where
    definitions = defs(
        f"""
        version: 1
        patterns:
          - id: p
            type: match_all
            events:
              - {json.dumps(step)}
            on_met:
              - {{action: publish, topic: t, value: met}}
        """
    )
    (step_def,) = definitions.patterns[0].events
    return {key: set(values) for key, values in matcher_gates(step_def.matcher).items()}


@pytest.mark.parametrize(
    ("where", "gates"),
    [
        ("category == 'shoes'", {"category": {"shoes"}}),
        ("'shoes' == category", {"category": {"shoes"}}),
        ("event.category == 'shoes'", {"category": {"shoes"}}),
        ("category in ['shoes', 'hats']", {"category": {"shoes", "hats"}}),
        ("category == 'shoes' and price > 3", {"category": {"shoes"}}),
        ("category in ['shoes', 'hats'] and category == 'hats'", {"category": {"hats"}}),
        ("category == 'shoes' or category == 'hats'", {}),
        ("category != 'shoes'", {}),
        ("category == 3", {}),
        ("profile.tier == 'gold'", {}),
        ("price >= 250", {}),
        (None, {}),
    ],
)
def test_the_attributes_an_arrival_test_needs_among_strings(
    where: str | None, gates: dict[str, set[str]]
) -> None:
    assert gates_of(where) == gates


def test_the_benchmarks_clicks_go_to_the_patterns_that_test_their_category() -> None:
    definitions = load_definitions_file(str(BENCH_PATTERNS))
    dispatch = definitions.dispatch["click"]
    assert dispatch.attribute == "category"

    def ids(attributes: dict[str, Any]) -> list[str]:
        return [route.pattern.id for route in dispatch.routes_for(attributes)]

    everything = [route.pattern.id for route in definitions.routes["click"]]
    clothing = ids({"category": "clothing"})
    assert clothing == [i for i in everything if i in clothing]  # file order
    assert set(clothing) == {
        "offer1_male_36_45",
        "offer2_female_25_35",
        "style_mix",
        "big_ticket",
        "loyal_visitor",
    }
    assert set(ids({"category": "checkout"})) == {
        "sports_fan",  # its suspender
        "home_abandon",
        "big_ticket",
        "loyal_visitor",
    }
    for other in ({"category": "garden"}, {"category": 5}, {}):
        assert ids(other) == ["big_ticket", "loyal_visitor"]


def without_dispatch(definitions: Definitions) -> Definitions:
    every_route = {name: Dispatch(None, {}, routes) for name, routes in definitions.routes.items()}
    return dataclasses.replace(definitions, dispatch=every_route)


CATEGORIES = ["clothing", "shoes", "electronics", "beauty", "accessories", "sports"]
CATEGORIES += ["checkout", "home", "garden"]

click = st.fixed_dictionaries(
    {
        "category": st.one_of(st.sampled_from(CATEGORIES), st.none(), st.integers(0, 2)),
        "price": st.integers(1, 400),
        "productId": st.sampled_from(["p1", "p2", "p3"]),
    },
    optional={"extra": st.booleans()},
)


@settings(max_examples=60, deadline=None)
@given(
    clicks=st.lists(
        st.tuples(st.sampled_from(["u1", "u2"]), st.integers(0, 900), click), max_size=40
    )
)
def test_dispatch_gives_the_records_of_trying_every_pattern(
    clicks: list[tuple[str, int, dict[str, Any]]],
) -> None:
    definitions = load_definitions_file(str(BENCH_PATTERNS))
    start = t("2026-11-02T10:00:00")
    events = []
    elapsed = 0
    for user, gap, attributes in clicks:
        elapsed += gap
        if attributes.get("category") is None:
            attributes = {k: v for k, v in attributes.items() if k != "category"}
        events.append(E("click", start + elapsed * 1_000_000, user, **attributes))
    assert run(definitions, events, drain=True) == run(
        without_dispatch(definitions), events, drain=True
    )
