"""Which of an event name's patterns an event can concern, from one attribute.

Most patterns test a string attribute of their events against literals
(`category == 'shoes'`); an event of another category is turned away by every
such pattern, at ~1 µs each (matcher, expression, their calls). A `Dispatch`
picks, per event name, the attribute most routes test that way and, per value
of it, the routes that can match (with those that do not test it), in file
order: one dict lookup per event instead of a test per pattern.

Exact, not a heuristic: a route is left out for a value only if every
composing step and every suspender of the route needs the attribute to equal
one of other strings (a conjunct of its arrival test, or a macro filter), and
`Engine._apply` changes nothing for a route where none of those match.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .definitions import Route
    from .matching import Matcher

Gate = tuple[str, frozenset[str]]
"""An attribute and the strings it must equal (one of) for a test to pass."""


@dataclass(frozen=True, slots=True)
class Dispatch:
    attribute: str | None
    """The attribute the routes are picked by (None: every route, always)."""
    by_value: Mapping[str, tuple[Route, ...]]
    others: tuple[Route, ...]
    """The routes for any other value (those that do not test the attribute)."""

    def routes_for(self, attributes: Mapping[str, Any]) -> tuple[Route, ...]:
        if self.attribute is None:
            return self.others
        value = attributes.get(self.attribute)
        if type(value) is str:
            return self.by_value.get(value, self.others)
        return self.others


def build_dispatch(routes: Mapping[str, tuple[Route, ...]]) -> dict[str, Dispatch]:
    return {name: _dispatch(name_routes) for name, name_routes in routes.items()}


def _dispatch(routes: tuple[Route, ...]) -> Dispatch:
    gates = [route_gate(route) for route in routes]
    counts = Counter(gate[0] for gate in gates if gate is not None)
    if not counts:
        return Dispatch(None, {}, routes)
    attribute = counts.most_common(1)[0][0]
    allowed = [gate[1] if gate is not None and gate[0] == attribute else None for gate in gates]
    values = sorted(set().union(*(values for values in allowed if values is not None)))
    by_value = {
        value: tuple(
            route for route, ok in zip(routes, allowed, strict=True) if ok is None or value in ok
        )
        for value in values
    }
    others = tuple(route for route, ok in zip(routes, allowed, strict=True) if ok is None)
    return Dispatch(attribute, by_value, others)


def route_gate(route: Route) -> Gate | None:
    """The attribute every test of the route needs among some strings, if there is one."""
    matchers = [step.matcher for step in route.composing]
    matchers.extend(suspender.matcher for suspender in route.suspenders)
    return _common_gate([matcher_gates(matcher) for matcher in matchers])


def _common_gate(per_matcher: list[dict[str, frozenset[str]]]) -> Gate | None:
    if not per_matcher:
        return None
    shared = set(per_matcher[0]).intersection(*per_matcher[1:])
    if not shared:
        return None
    attribute = min(shared)  # any would do; the same one every time
    return attribute, frozenset().union(*(gates[attribute] for gates in per_matcher))


def matcher_gates(matcher: Matcher) -> dict[str, frozenset[str]]:
    """Per attribute, the strings it must equal (one of) for the matcher to pass."""
    gates: dict[str, frozenset[str]] = {}
    for key, expected in matcher.filters:
        if type(expected) is str:
            _narrow(gates, key, frozenset((expected,)))
    if matcher.where is not None:
        for attribute, values in _where_gates(matcher.where.source):
            _narrow(gates, attribute, values)
    return gates


def _narrow(gates: dict[str, frozenset[str]], attribute: str, values: frozenset[str]) -> None:
    gates[attribute] = gates[attribute] & values if attribute in gates else values


def _where_gates(source: str) -> Iterable[Gate]:
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return
    conjuncts = (
        tree.values if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And) else [tree]
    )
    for conjunct in conjuncts:
        gate = _comparison_gate(conjunct)
        if gate is not None:
            yield gate


def _comparison_gate(node: ast.expr) -> Gate | None:
    """`attr == 'x'`, `'x' == attr`, `attr in ['x', 'y']` (attr: the event's, bare or `event.`)."""
    if not isinstance(node, ast.Compare) or len(node.ops) != 1:
        return None
    op, left, right = node.ops[0], node.left, node.comparators[0]
    if isinstance(op, ast.Eq):
        attribute = _event_attribute(left)
        literal = right
        if attribute is None:
            attribute, literal = _event_attribute(right), left
        text = _string(literal)
        if attribute is not None and text is not None:
            return attribute, frozenset((text,))
        return None
    if isinstance(op, ast.In) and isinstance(right, ast.List | ast.Tuple):
        attribute = _event_attribute(left)
        texts = [_string(element) for element in right.elts]
        if attribute is not None and texts and None not in texts:
            return attribute, frozenset(text for text in texts if text is not None)
    return None


def _event_attribute(node: ast.expr) -> str | None:
    # A matcher's expression has no aliases and no context names: a bare name is the
    # event's attribute (`event` and `profile` are reserved).
    if isinstance(node, ast.Name) and node.id not in ("event", "profile"):
        return node.id
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "event"
    ):
        return node.attr
    return None


def _string(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and type(node.value) is str:
        return node.value
    return None
