"""Tests for eventpatterns.core.expressions (SPEC section 3)."""

from __future__ import annotations

import ast
import copy
import math
import operator
import pickle
import string
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from eventpatterns.core.expressions import (
    EMPTY,
    MAX_DEPTH,
    MISSING,
    Expression,
    ExpressionError,
    compile_expression,
)

CONTEXT_NAMES = ("user_id", "pattern", "now_ns", "now_ms", "now")


def ev(
    source: str,
    event: Mapping[str, Any] | None = None,
    *,
    profile: Mapping[str, Any] | None = None,
    aliases: Mapping[str, Mapping[str, Any]] | None = None,
    context: Mapping[str, Any] | None = None,
    alias_names: tuple[str, ...] = (),
) -> Any:
    expr = compile_expression(
        source,
        aliases=alias_names or tuple(aliases or ()),
        context_names=CONTEXT_NAMES,
    )
    return expr.evaluate(event or {}, profile or EMPTY, aliases or EMPTY, context or EMPTY)


def rejected(source: str, **kwargs: Any) -> str:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# The public surface
# ---------------------------------------------------------------------------------------------


def test_missing_sentinel() -> None:
    assert repr(MISSING) == "MISSING"
    assert not MISSING
    assert MISSING != None  # noqa: E711
    assert MISSING != 0
    assert MISSING != False  # noqa: E712
    assert MISSING == MISSING
    assert copy.copy(MISSING) is MISSING
    assert copy.deepcopy(MISSING) is MISSING
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING


def test_expression_error_is_value_error() -> None:
    assert issubclass(ExpressionError, ValueError)


def test_expression_metadata() -> None:
    expr = compile_expression(
        "category == 'clothing' and productId != first.productId and profile.tier == 'gold'",
        aliases=["first", "second"],
    )
    assert isinstance(expr, Expression)
    assert expr.source.startswith("category ==")
    assert expr.aliases == frozenset({"first"})
    assert expr.uses_profile is True
    plain = compile_expression("category == 'clothing'", aliases=["first"])
    assert plain.aliases == frozenset()
    assert plain.uses_profile is False


def test_expression_equality_ignores_compiled_function() -> None:
    a = compile_expression("x == 1")
    b = compile_expression("x == 1")
    assert a.fn is not b.fn
    assert a == b
    assert hash(a) == hash(b)
    assert a != compile_expression("x == 2")
    assert "fn" not in repr(a)


def test_generated_code_has_no_builtins() -> None:
    expr = compile_expression("x == 1")
    assert expr.fn.__globals__["__builtins__"] == {}
    assert set(expr.fn.__code__.co_varnames) <= {"event", "profile", "aliases", "context"}


def test_evaluate_positional_defaults() -> None:
    expr = compile_expression("a == 1")
    assert expr.test({"a": 1}) is True
    assert expr.evaluate({"a": 1}) is True
    assert expr.fn({"a": 2}, EMPTY, EMPTY, EMPTY) is False


# ---------------------------------------------------------------------------------------------
# Accepted constructs
# ---------------------------------------------------------------------------------------------

EVENT = {
    "category": "clothing",
    "gender": "F",
    "age": 30,
    "amount": 95.0,
    "productId": "p1",
    "tags": ["a", "b"],
    "flag": True,
    "nothing": None,
    "zero": 0,
    "address": {"city": "Paris", "geo": {"lat": 48.8}},
    "name": "Ann",
}

VALUE_CASES: list[tuple[str, Any]] = [
    # literals
    ("1", 1),
    ("-1", -1),
    ("+2", 2),
    ("--3", 3),
    ("1.5", 1.5),
    ("-1.5", -1.5),
    ("'s'", "s"),
    ('"s"', "s"),
    ("'a' 'b'", "ab"),
    ("True", True),
    ("False", False),
    ("None", None),
    ("[1, -2, 'x', None, True]", [1, -2, "x", None, True]),
    ("[]", []),
    ("(1, -2)", (1, -2)),
    ("()", ()),
    ("(1,)", (1,)),
    # names
    ("category", "clothing"),
    ("event.category", "clothing"),
    ("address.city", "Paris"),
    ("event.address.city", "Paris"),
    ("address.geo.lat", 48.8),
    ("address.zip", MISSING),
    ("address.city.name", MISSING),
    ("category.name", MISSING),
    ("absent", MISSING),
    ("absent.deeper", MISSING),
    ("nothing", None),
    # comparisons
    ("category == 'clothing'", True),
    ("'clothing' == category", True),
    ("category == 'shoes'", False),
    ("category != 'shoes'", True),
    ("'shoes' != category", True),
    ("category != 'clothing'", False),
    ("age == 30", True),
    ("age == 30.0", True),
    ("age < 31", True),
    ("age < 30", False),
    ("age <= 30", True),
    ("age > 29", True),
    ("age > 30", False),
    ("age >= 30", True),
    ("age == amount", False),
    ("age != amount", True),
    ("age < amount", True),
    ("category in ['clothing', 'shoes']", True),
    ("category in ('clothing', 'shoes')", True),
    ("category in ['shoes']", False),
    ("category not in ['shoes']", True),
    ("category not in ['clothing']", False),
    ("'a' in tags", True),
    ("'z' in tags", False),
    ("'z' not in tags", True),
    ("'lot' in category", True),
    ("'city' in address", True),
    ("age in [-1, 30]", True),
    ("nothing is None", True),
    ("nothing is not None", False),
    ("category is not None", True),
    ("flag is True", True),
    ("flag is False", False),
    ("tags == ['a', 'b']", True),
    ("tags == ('a', 'b')", False),
    ("tags != ['a']", True),
    ("category == productId", False),
    ("category != productId", True),
    # chains
    ("25 <= age <= 35", True),
    ("30 <= age <= 30", True),
    ("31 <= age <= 35", False),
    ("25 <= age <= 29", False),
    ("25 < age < 35 < 40", True),
    ("1 < 2 < 3", True),
    ("1 < 3 < 2", False),
    ("age == 30 == age", True),
    ("'a' in tags != False", False),  # a list and a bool: incompatible, so not "unequal"
    ("'s' != 0", False),
    ("category != 5", False),
    ("age != '30'", False),
    ("nothing != 'x'", True),
    ("category != None", True),
    ("age != 31.5", True),
    # boolean operators
    ("gender == 'F' and 25 <= age <= 35", True),
    ("gender == 'M' and 25 <= age <= 35", False),
    ("gender == 'M' or age == 30", True),
    ("not gender == 'M'", True),
    ("not flag", False),
    ("not absent", True),
    ("not not absent", False),
    ("absent or 5", 5),
    ("absent and 5", MISSING),
    ("zero or category", "clothing"),
    ("(age > 20 or absent) and category == 'clothing'", True),
    # arithmetic
    ("age + 1", 31),
    ("age - 1", 29),
    ("age * 2", 60),
    ("age / 4", 7.5),
    ("age % 7", 2),
    ("amount * 1.1 >= 100", True),
    ("amount * 1.05 >= 100", False),
    ("-age", -30),
    ("+age", 30),
    ("-flag", -1),
    ("+flag", 1),
    ("flag + 1", 2),
    ("flag * 3", 3),
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("name + '!'", "Ann!"),
    ("tags + ['c']", ["a", "b", "c"]),
    ("7 % 2.5", 2.0),
    ("-7 % 3", 2),
    # arithmetic that yields MISSING
    ("absent + 1", MISSING),
    ("1 + absent", MISSING),
    ("absent - 1", MISSING),
    ("absent * 2", MISSING),
    ("absent / 2", MISSING),
    ("absent % 2", MISSING),
    ("-absent", MISSING),
    ("+absent", MISSING),
    ("age / 0", MISSING),
    ("age / zero", MISSING),
    ("age % 0", MISSING),
    ("age % 0.0", MISSING),
    ("name + 1", MISSING),
    ("1 + name", MISSING),
    ("tags + 'x'", MISSING),
    ("tags + (1,)", MISSING),
    ("(1,) + (2,)", MISSING),
    ("nothing + 1", MISSING),
    ("name - 'A'", MISSING),
    ("name / 2", MISSING),
    ("-name", MISSING),
    ("+name", MISSING),
    ("-tags", MISSING),
    ("'a' * 3", MISSING),
    ("3 * 'a'", MISSING),
    ("name * 1000000000", MISSING),
    ("'a' * 1000000000", MISSING),
    ("[1] * 1000000000", MISSING),
    ("tags * 2", MISSING),
    ("'%999999999d' % 1", MISSING),
    ("'%s' % name", MISSING),
    ("nothing * 2", MISSING),
    ("(absent + 1) == 1", False),
    ("(age / 0) != 1", False),
    ("1e308 * 10", math.inf),
    ("9223372036854775807 * 9223372036854775807", 9223372036854775807**2),
]


@pytest.mark.parametrize(("source", "expected"), VALUE_CASES)
def test_value(source: str, expected: Any) -> None:
    result = ev(source, EVENT)
    if expected is MISSING:
        assert result is MISSING
    else:
        assert type(result) is type(expected)
        assert result == expected
    expr = compile_expression(source)
    assert expr.test(EVENT) is bool(expected)


COMPARISON_SOURCES = [
    "absent == 1",
    "1 == absent",
    "absent != 1",
    "1 != absent",
    "absent < 1",
    "absent <= 1",
    "absent > 1",
    "absent >= 1",
    "1 < absent",
    "1 >= absent",
    "absent in [1, 2]",
    "absent not in [1, 2]",
    "absent in tags",
    "absent not in tags",
    "'a' in absent",
    "'a' not in absent",
    "absent is None",
    "absent is not None",
    "None is absent",
    "None is not absent",
    "absent == absent",
    "absent != absent",
    "absent is absent",
    "absent is not absent",
    "absent == other",
    "absent != other",
    "absent < other",
    "absent == None",
    "absent != None",
    "absent != False",
    "absent == False",
    "absent == 0",
    "absent != ''",
    "absent == []",
    "absent != []",
    "absent == ()",
    "0 <= absent <= 10",
    "absent <= absent <= absent",
    "profile.x == 1",
    "profile.x != 1",
    "event.absent != 'a'",
    "address.missing != 'x'",
    "first.x != 1",
    "first.x == first.x",
    "user_id != 'u'",
]


@pytest.mark.parametrize("source", COMPARISON_SOURCES)
def test_any_comparison_with_missing_is_false(source: str) -> None:
    expr = compile_expression(source, aliases=["first"], context_names=CONTEXT_NAMES)
    assert expr.evaluate(EVENT) is False
    assert expr.test(EVENT) is False
    # ... also when the alias is bound but lacks the attribute
    assert expr.evaluate(EVENT, {}, {"first": {}}, {}) is False


@pytest.mark.parametrize(
    "source",
    [
        "name < 1",
        "1 > name",
        "name <= tags",
        "name >= nothing",
        "nothing < 1",
        "address < address",
        "tags < 1",
        "age in 5",
        "age not in 5",
        "age in age",
        "1 in name",
        "1 not in name",
        "tags in name",
        "tags not in name",
        "'a' in nothing",
        "'a' not in nothing",
        "'a' in flag",
        "name in 'Annette' == False",
        "address in ['x']",
        "address in address",
        "address not in address",
    ],
)
def test_comparison_that_raises_is_false(source: str) -> None:
    assert ev(source, EVENT) is False


def test_in_with_unhashable_operands() -> None:
    assert ev("tags in [1, 2]", EVENT) is False
    assert ev("tags not in [1, 2]", EVENT) is True
    assert ev("x in y", {"x": [1], "y": [[1], 2]}) is True
    assert ev("x in y", {"x": {"a": 1}, "y": {"k": 1}}) is False  # dict key must be hashable


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"age": 24}, False),
        ({"age": 25}, True),
        ({"age": 25.0}, True),
        ({"age": 24.999}, False),
        ({"age": 35}, True),
        ({"age": 35.0001}, False),
        ({"age": 36}, False),
        ({"age": True}, False),
        ({"age": "30"}, False),
        ({"age": None}, False),
        ({"age": [30]}, False),
        ({"age": math.nan}, False),
        ({"age": math.inf}, False),
        ({"age": 10**400}, False),
        ({}, False),
    ],
)
def test_chain_boundaries(event: dict[str, Any], expected: bool) -> None:
    expr = compile_expression("gender == 'F' and 25 <= age <= 35")
    assert expr.test({"gender": "F", **event}) is expected
    assert expr.test({"gender": "M", **event}) is False


def test_chain_middle_operand_evaluated_once_and_short_circuits() -> None:
    # a non-literal middle operand is bound once; a nested chain must not blow up the code size
    source = "a < (b < (c < (d < (e < f < g) < h) < i) < j) < k"
    expr = compile_expression(source)
    assert len(expr.fn.__code__.co_code) < 2000
    values = dict(zip("abcdefghijk", [0, True, 0, False, 1, 2, 3, 4, 5, 6, 7], strict=True))
    assert expr.evaluate(values) is False
    assert ev("x < y + 1 < z", {"x": 1, "y": 1, "z": 3}) is True
    assert ev("x < y + 1 < z", {"x": 1, "y": 1, "z": 2}) is False
    assert ev("x < y + 1 < z", {"x": 1, "z": 3}) is False


def test_profile_aliases_context() -> None:
    profile = {"tier": "gold", "prefs": {"color": "red"}, "n": 3}
    aliases = {"first": {"productId": "p1", "meta": {"x": 1}}, "odd": 5}  # type: ignore[dict-item]
    expr = compile_expression(
        "profile.tier in ['gold', 'platinum'] and productId != first.productId",
        aliases=["first"],
    )
    assert expr.test(EVENT, profile, aliases) is False
    assert expr.test({**EVENT, "productId": "p2"}, profile, aliases) is True
    # unbound alias -> MISSING -> comparison False
    assert expr.test({**EVENT, "productId": "p2"}, profile, {}) is False
    names = ("first", "odd")
    assert ev("first.meta.x", aliases=aliases, alias_names=names) == 1
    assert ev("first.meta.y", aliases=aliases, alias_names=names) is MISSING
    assert ev("first.productId.x", aliases=aliases, alias_names=names) is MISSING
    assert ev("odd.x", aliases=aliases, alias_names=names) is MISSING  # bound to a non-mapping
    assert ev("profile.prefs.color", profile=profile) == "red"
    assert ev("profile.prefs.size", profile=profile) is MISSING
    assert ev("profile.tier.x", profile=profile) is MISSING
    assert ev("profile.n * 2", profile=profile) == 6
    assert ev("profile.tier") is MISSING
    # event/profile attributes named like the reserved words
    assert ev("event.profile", {"profile": 1}) == 1
    assert ev("event.event", {"event": 2}) == 2
    assert ev("profile.profile", profile={"profile": 3}) == 3


def test_context_names() -> None:
    context = {"user_id": "u1", "now_ms": 1000, "now": {"h": 9}}
    assert ev("user_id == 'u1'", {"user_id": "other"}, context=context) is True
    assert ev("now_ms + 1", context=context) == 1001
    assert ev("now.h", context=context) == 9
    assert ev("pattern", {"pattern": "p"}, context=context) is MISSING  # context wins
    assert ev("event.user_id", {"user_id": "other"}, context=context) == "other"
    expr = compile_expression("user_id == 'u1'")  # not a context name -> event attribute
    assert expr.test({"user_id": "u1"}, context={"user_id": "x"}) is True


def test_mapping_subclasses_and_non_dict_mappings() -> None:
    from types import MappingProxyType

    event = MappingProxyType({"a": MappingProxyType({"b": 1})})
    assert compile_expression("a.b == 1").test(event) is True

    class Weird(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

        def __iter__(self) -> Any:
            return iter(())

        def __len__(self) -> int:
            return 0

        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("boom")

    assert compile_expression("a.b == 1").test({"a": Weird()}) is False
    assert compile_expression("a.b").evaluate({"a": Weird()}) is MISSING
    # the top-level mapping misbehaving is still caught by evaluate()/test()
    assert compile_expression("a == 1").test(Weird()) is False
    assert compile_expression("a == 1").evaluate(Weird()) is MISSING


def test_exotic_values_never_raise() -> None:
    class Hostile:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("eq")

        def __bool__(self) -> bool:
            raise RuntimeError("bool")

        __hash__ = None  # type: ignore[assignment]

    event = {"x": Hostile(), "y": 1}
    for source in ["x == 1", "x != 1", "x == y", "x and y", "not x", "x in [1]", "x or y", "x"]:
        expr = compile_expression(source)
        expr.evaluate(event)  # must not raise
        assert expr.test(event) in (True, False)


def test_numeric_edge_values() -> None:
    big = 10**4000
    assert ev("x > 1.5", {"x": big}) is True
    assert ev("x / 3", {"x": big}) is MISSING  # OverflowError
    assert ev("x + 0.5", {"x": big}) is MISSING
    assert ev("x * 1.5", {"x": big}) is MISSING
    assert ev("x % 1.5", {"x": big}) is MISSING
    assert ev("x - 1 > 0", {"x": big}) is True
    assert ev("x == x", {"x": math.nan}) is False
    assert ev("x != x", {"x": math.nan}) is True
    assert ev("x < 1 or x >= 1", {"x": math.nan}) is False
    assert math.isnan(ev("x + 1", {"x": math.nan}))
    assert ev("x * 0", {"x": math.inf}) != ev("x * 0", {"x": math.inf})  # nan
    assert ev("x == y", {"x": [1, [2, [3]]], "y": [1, [2, [3]]]}) is True


def test_deeply_nested_data_values() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    other: list[Any] = []
    for _ in range(100_000):
        other = [other]
    event = {"x": deep, "y": other}
    for source in ["x == y", "x != y", "x < y", "x in [1]", "x == [1]", "y in x", "x + y == x"]:
        assert compile_expression(source).evaluate(event) in (True, False, MISSING)


def test_whitespace_and_multiline() -> None:
    assert compile_expression("   age == 30  \n").test(EVENT) is True
    assert compile_expression("(age == 30 and\n category == 'clothing')").test(EVENT) is True


def test_negative_literal_fast_path() -> None:
    assert ev("x == -5", {"x": -5}) is True
    assert ev("x in [-5, 5]", {"x": -5}) is True
    assert ev("x not in [-5.5, +5]", {"x": 5}) is False


# ---------------------------------------------------------------------------------------------
# Rejections
# ---------------------------------------------------------------------------------------------

REJECTIONS: list[tuple[str, str]] = [
    ("f(x)", "function calls are not allowed"),
    ("len(tags) > 1", "function calls are not allowed"),
    ("__import__('os')", "function calls are not allowed"),
    ("name.upper()", "function calls are not allowed"),
    ("x == 1 and open('f')", "function calls are not allowed"),
    ("tags[0]", "subscripts are not allowed"),
    ("tags[1:2]", "subscripts are not allowed"),
    ("[x for x in tags]", "comprehensions are not allowed"),
    ("{x for x in tags}", "comprehensions are not allowed"),
    ("{x: 1 for x in tags}", "comprehensions are not allowed"),
    ("(x for x in tags)", "generator expressions are not allowed"),
    ("lambda: 1", "lambda expressions are not allowed"),
    ("(lambda x: x)", "lambda expressions are not allowed"),
    ("1 if x else 2", "conditional expressions (x if c else y) are not allowed"),
    ("x // 2", "'//' is not allowed"),
    ("x ** 2", "'**' is not allowed"),
    ("9**9**9", "'**' is not allowed"),
    ("x @ y", "'@' is not allowed"),
    ("x | 1", "bitwise operators are not allowed"),
    ("x & 1", "bitwise operators are not allowed"),
    ("x ^ 1", "bitwise operators are not allowed"),
    ("x << 1", "bitwise operators are not allowed"),
    ("x >> 1", "bitwise operators are not allowed"),
    ("~x", "bitwise operators are not allowed"),
    ("~1", "bitwise operators are not allowed"),
    ("f'{x}'", "f-strings are not allowed"),
    ("f'plain'", "f-strings are not allowed"),
    ("(y := 1)", "assignment expressions (:=) are not allowed"),
    ("[*tags]", "starred expressions are not allowed"),
    ("{'a': 1}", "dict literals are not allowed"),
    ("{}", "dict literals are not allowed"),
    ("{1, 2}", "set literals are not allowed"),
    ("await x", "await is not allowed"),
    ("(yield)", "yield is not allowed"),
    ("(yield from x)", "yield is not allowed"),
    ("_x", "names beginning with '_' are not allowed"),
    ("__class__", "names beginning with '_' are not allowed"),
    ("x.__class__", "names beginning with '_' are not allowed"),
    ("event._x", "names beginning with '_' are not allowed"),
    ("profile._secret", "names beginning with '_' are not allowed"),
    ("first._x", "names beginning with '_' are not allowed"),
    ("_first.x", "names beginning with '_' are not allowed"),
    ("a.b.__dict__ == 1", "names beginning with '_' are not allowed"),
    ("().__class__", "names beginning with '_' are not allowed"),
    ("b'x'", "bytes literals are not allowed"),
    ("x == b'x'", "bytes literals are not allowed"),
    ("1j", "complex numbers are not allowed"),
    ("x == 2 + 1j", "complex numbers are not allowed"),
    ("...", "'...' is not allowed"),
    ("x in [...]", "'...' is not allowed"),
    ("(1).real", "attribute access is only allowed on names, e.g. profile.tier"),
    ("'a'.b", "attribute access is only allowed on names, e.g. profile.tier"),
    ("(a + b).c", "attribute access is only allowed on names, e.g. profile.tier"),
    ("f(x).y", "function calls are not allowed"),
    ("[x]", "list elements must be literals (numbers, strings, True, False, None)"),
    ("x in [1, y]", "list elements must be literals (numbers, strings, True, False, None)"),
    ("x in [[1]]", "list elements must be literals (numbers, strings, True, False, None)"),
    ("x in [1 + 1]", "list elements must be literals (numbers, strings, True, False, None)"),
    ("x in [-'a']", "list elements must be literals (numbers, strings, True, False, None)"),
    ("x in [f(1)]", "function calls are not allowed"),
    ("(x, 1)", "list elements must be literals (numbers, strings, True, False, None)"),
    ("event", "'event' must be followed by an attribute, e.g. event.category"),
    ("event == 1", "'event' must be followed by an attribute, e.g. event.category"),
    ("profile", "'profile' must be followed by an attribute, e.g. profile.tier"),
    ("not profile", "'profile' must be followed by an attribute, e.g. profile.tier"),
    ("first", "alias 'first' must be followed by an attribute, e.g. first.productId"),
    ("first == x", "alias 'first' must be followed by an attribute, e.g. first.productId"),
    ("second.x == 1", "alias 'second' refers to the same or a later step"),
    ("second == 1", "alias 'second' refers to the same or a later step"),
    ("x == second.a.b", "alias 'second' refers to the same or a later step"),
    ("x == 9223372036854775808", "integer literal is too large"),
    ("x == -9223372036854775808", "integer literal is too large"),
    ("x in [1, 99999999999999999999]", "integer literal is too large"),
    ("x == '" + "a" * 1025 + "'", "string literal is too long (max 1024 characters)"),
    ("x in ['" + "a" * 1025 + "']", "string literal is too long (max 1024 characters)"),
    ("x in [" + "1," * 1001 + "]", "list is too long (max 1000 items)"),
    ("x in (" + "1," * 1001 + ")", "list is too long (max 1000 items)"),
    ("", "empty expression"),
    ("   ", "empty expression"),
    (" \n\t ", "empty expression"),
    ("x" * 4097, "expression is too long (max 4096 characters)"),
    ("x ==", "syntax error: invalid syntax"),
    ("x = 1", "syntax error: invalid syntax; use '==' to compare (at column 3)"),
    ("import os", "syntax error: invalid syntax"),
    ("x; y", "syntax error: invalid syntax"),
    ("x == 1\ny == 2", "syntax error: invalid syntax"),
    ("if x: y", "syntax error: invalid syntax"),
    ("(x", "syntax error: '(' was never closed"),
    ("'abc", "syntax error: unterminated string literal"),
    ("x\x00", "syntax error: source code string cannot contain null bytes"),
]


@pytest.mark.parametrize(("source", "message"), REJECTIONS)
def test_rejection_message(source: str, message: str) -> None:
    error = rejected(source, aliases=["first"], later_aliases=["second"])
    assert error.startswith(message), error


def test_rejection_reports_column() -> None:
    assert rejected("x == 1 and f(y)") == "function calls are not allowed (at column 12)"
    assert rejected("  x.__class__") == "names beginning with '_' are not allowed (at column 5)"
    assert rejected("a.b.__dict__") == "names beginning with '_' are not allowed (at column 5)"


def test_limits_accept_at_the_boundary() -> None:
    compile_expression("x == 9223372036854775807")
    compile_expression("x == -9223372036854775807")
    compile_expression("x == '" + "a" * 1024 + "'")
    compile_expression("x in [" + "1," * 1000 + "]")
    long_source = "x == " + "1 + " * 5 + "'" + "a" * (4096 - 5 - 20 - 2) + "'"
    assert len(long_source) <= 4096
    with pytest.raises(ExpressionError, match="string literal is too long"):
        compile_expression(long_source)  # length OK, but the literal is too long
    compile_expression("x == 1" + " " * (4096 - 6))


def test_depth_limit_boundary() -> None:
    # ``1 + 1 + ... + 1`` with n ``+`` nests n BinOps plus the leaf: depth n + 1
    compile_expression("1+" * (MAX_DEPTH - 1) + "1")
    assert "too deeply nested" in rejected("1+" * MAX_DEPTH + "1")
    compile_expression("not " * (MAX_DEPTH - 1) + "x")
    assert "too deeply nested" in rejected("not " * MAX_DEPTH + "x")
    compile_expression("-" * (MAX_DEPTH - 1) + "x")
    assert "too deeply nested" in rejected("-" * MAX_DEPTH + "x")
    # depth is measured on nested forbidden constructs too (before any other check)
    assert "too deeply nested" in rejected("f(" * 100 + ")" * 100)


@pytest.mark.parametrize(
    "source",
    [
        "(" * 10000 + "1" + ")" * 10000,
        "not " * 10000 + "x",
        "1+" * 10000 + "1",
        "(" * 1300 + "1" + ")" * 1300,
        "not " * 1000 + "x",
        "-" * 4000 + "x",
        "1+" * 2000 + "1",
        "[" * 2000 + "]" * 2000,
        "a." * 2000 + "b",
        "f(" * 2000 + ")" * 2000,
        "(" * 195 + "x" + ")" * 195 + " and " + "-(" * 190 + "x" + ")" * 190,
    ],
    ids=lambda source: f"{source[:12]}...{len(source)}",
)
def test_deep_nesting_rejected_quickly(source: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ExpressionError):
        compile_expression(source)
    assert time.perf_counter() - start < 1.0


def test_wide_but_shallow_expression_is_fine() -> None:
    source = " and ".join(f"a{i} == {i}" for i in range(250))
    assert len(source) <= 4096
    expr = compile_expression(source)
    assert expr.test({f"a{i}": i for i in range(250)}) is True
    assert expr.test({f"a{i}": i for i in range(249)}) is False
    chain = compile_expression("x<" * 2000 + "x")  # a flat chain of 2000 comparisons
    assert chain.test({"x": 1}) is False
    assert chain.evaluate({}) is False


def test_non_string_source_rejected() -> None:
    with pytest.raises(ExpressionError):
        compile_expression(123)  # type: ignore[arg-type]
    with pytest.raises(ExpressionError):
        compile_expression(b"x == 1")  # type: ignore[arg-type]


def test_surrogates_rejected() -> None:
    with pytest.raises(ExpressionError):
        compile_expression("x == '\ud800'")


def test_later_alias_wins_over_alias_and_reserved_names_win() -> None:
    msg = rejected("a.x", aliases=["a"], later_aliases=["a"])
    assert msg.startswith("alias 'a' refers to the same or a later step")
    expr = compile_expression("profile.x == 1", aliases=["profile"], later_aliases=["event"])
    assert expr.uses_profile and not expr.aliases
    assert compile_expression("event.x == 1", later_aliases=["event"]).test({"x": 1})


# ---------------------------------------------------------------------------------------------
# Property-based tests
# ---------------------------------------------------------------------------------------------

FORBIDDEN_NODES = (
    ast.Call,
    ast.Subscript,
    ast.Slice,
    ast.Lambda,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.NamedExpr,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.IfExp,
    ast.Starred,
    ast.Dict,
    ast.Set,
    ast.Await,
    ast.Yield,
    ast.YieldFrom,
)

NAMES = ["a", "b", "c", "x", "age", "category", "d"]

scalar_values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 10**400, -(10**400), True, False, None, "", "a", "%s"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
data_values = st.recursive(
    scalar_values,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["e", "f", "a"]), inner, max_size=2),
    ),
    max_leaves=4,
)
events = st.dictionaries(st.sampled_from(NAMES), data_values, max_size=len(NAMES))
profiles = st.dictionaries(st.sampled_from(["p", "q", "n", "tier"]), data_values, max_size=3)
alias_maps = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"first": st.dictionaries(st.sampled_from(NAMES), data_values)}),
    st.fixed_dictionaries({"first": scalar_values}),
)
contexts = st.dictionaries(st.sampled_from(["now", "user_id"]), data_values, max_size=2)
Env = tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]


def _has_forbidden(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, FORBIDDEN_NODES):
            return True
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            return True
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            return True
        if isinstance(node, ast.BinOp) and isinstance(
            node.op,
            ast.FloorDiv | ast.Pow | ast.BitOr | ast.BitAnd | ast.BitXor | ast.LShift | ast.RShift,
        ):
            return True
    return False


def _compile_or_reject(source: str) -> Expression | None:
    """compile_expression may only raise ExpressionError; anything it accepts is whitelisted."""
    try:
        expr = compile_expression(
            source, aliases=["first"], later_aliases=["later"], context_names=["now"]
        )
    except ExpressionError as exc:
        assert str(exc)
        return None
    tree = ast.parse(source.strip(), mode="eval")
    assert not _has_forbidden(tree), source
    return expr


environments = st.tuples(events, profiles, alias_maps, contexts)


def _check_never_raises(expr: Expression, envs: list[Env]) -> None:
    for event, profile, aliases, context in envs:
        # the raw function must not raise on plain data either
        expr.fn(event, profile, aliases, context)
        expr.evaluate(event, profile, aliases, context)
        assert expr.test(event, profile, aliases, context) in (True, False)


PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@PROPERTY_SETTINGS
@given(source=st.text(max_size=60), data=st.data())
def test_random_text_is_rejected_or_safe(source: str, data: st.DataObject) -> None:
    expr = _compile_or_reject(source)
    if expr is not None:  # draw data only for accepted expressions (keeps the test fast)
        _check_never_raises(expr, [data.draw(environments), data.draw(environments)])


HOSTILE_VOCAB = [
    "__import__",
    "__class__",
    "().__class__",
    "__subclasses__",
    "__globals__",
    "__builtins__",
    "_MISSING",
    "_get",
    "open(",
    "eval(",
    "exec(",
    "[x for x in",
    "]",
    "lambda",
    "lambda:",
    ":=",
    "f'",
    "f'{",
    "}'",
    "**",
    "//",
    "[0]",
    "{}",
    "'a'*",
    "9**9**9",
    "(" * 300,
    ")" * 300,
    "(" * 40,
    ")" * 40,
    "not " * 80,
    "if",
    "else",
    "yield",
    "await",
    "import",
    "os",
    "x",
    "a",
    "age",
    "first",
    "later",
    "now",
    "event",
    "profile",
    ".",
    ".a",
    ".__dict__",
    "==",
    "!=",
    "<",
    "<=",
    "in",
    "not in",
    "is",
    "is not",
    "and",
    "or",
    "not",
    "+",
    "-",
    "*",
    "/",
    "%",
    "~",
    "@",
    "|",
    "&",
    "(",
    ")",
    "[",
    ",",
    "1",
    "-1",
    "1.5",
    "1e309",
    "1j",
    "10**100",
    "99999999999999999999",
    "'s'",
    "'%999999999d'",
    "b'x'",
    "...",
    "None",
    "True",
    ";",
    "=",
    "\n",
    "\\",
    "\x00",
    "#",
    "'''",
    "*x",
]


@PROPERTY_SETTINGS
@given(
    tokens=st.lists(st.sampled_from(HOSTILE_VOCAB), min_size=1, max_size=12),
    separator=st.sampled_from([" ", "", "  "]),
    data=st.data(),
)
def test_hostile_token_soup_is_rejected_or_safe(
    tokens: list[str], separator: str, data: st.DataObject
) -> None:
    expr = _compile_or_reject(separator.join(tokens))
    if expr is not None:
        _check_never_raises(expr, [data.draw(environments), data.draw(environments)])


# -- a grammar of valid expressions + a reference interpreter ---------------------------------

LEAF_NAMES = [
    *NAMES,
    "event.a",
    "event.x",
    "d.e",
    "d.e.f",
    "event.d.a",
    "profile.p",
    "profile.q",
    "profile.n.e",
    "first.a",
    "first.x",
    "first.d.e",
    "now",
    "now.e",
]

literal_sources = st.one_of(
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(alphabet=string.ascii_letters + "%' \"\\é", max_size=5).map(repr),
    st.sampled_from(["True", "False", "None", "0", "1", "-1", "0.0", "''", "'a'"]),
)
seq_literal_sources = st.lists(literal_sources, max_size=4).map(
    lambda xs: "[" + ", ".join(xs) + "]"
)
leaves = st.one_of(st.sampled_from(LEAF_NAMES), literal_sources)
CMP_OPS = ["==", "!=", "<", "<=", ">", ">="]


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(children, children)
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/", "%"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(children, st.sampled_from([*CMP_OPS, "in", "not in"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(
            children,
            st.sampled_from(CMP_OPS),
            children,
            st.sampled_from(CMP_OPS),
            children,
        ).map(lambda t: f"({t[0]} {t[1]} {t[2]} {t[3]} {t[4]})"),
        st.tuples(children, st.sampled_from(["in", "not in"]), seq_literal_sources).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(
            children, st.sampled_from(["is", "is not"]), st.sampled_from(["None", "True"])
        ).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(pair, st.sampled_from(["and", "or"])).map(
            lambda t: f"({t[0][0]} {t[1]} {t[0][1]})"
        ),
        children.map(lambda c: f"(not {c})"),
        children.map(lambda c: f"(-{c})"),
        children.map(lambda c: f"(+{c})"),
    )


valid_expressions = st.recursive(leaves, _extend, max_leaves=12)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float)


def _ref_get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, MISSING)
    return MISSING


def _ref_ne(a: Any, b: Any) -> bool:
    """Incompatible types (string vs number, list vs number...) are never unequal."""

    def kind(v: Any) -> str:
        if v is None:
            return "none"
        if _is_number(v):
            return "number"
        if isinstance(v, list | tuple):
            return "sequence"
        return type(v).__name__

    if kind(a) != kind(b) and "none" not in (kind(a), kind(b)):
        return False
    return bool(a != b)


REF_CMP: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: _ref_ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}


class Reference:
    """A straightforward tree-walking interpreter of the documented semantics."""

    def __init__(
        self,
        event: Mapping[str, Any],
        profile: Mapping[str, Any],
        aliases: Mapping[str, Any],
        context: Mapping[str, Any],
    ) -> None:
        self.event, self.profile, self.aliases, self.context = event, profile, aliases, context

    def root(self, name: str) -> Any:
        if name == "now":
            return self.context.get(name, MISSING)
        return self.event.get(name, MISSING)

    def eval(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List):
            return [self.eval(e) for e in node.elts]
        if isinstance(node, ast.Name):
            return self.root(node.id)
        if isinstance(node, ast.Attribute):
            keys: list[str] = []
            cur: ast.expr = node
            while isinstance(cur, ast.Attribute):
                keys.insert(0, cur.attr)
                cur = cur.value
            assert isinstance(cur, ast.Name)
            if cur.id == "event":
                value: Any = self.event
            elif cur.id == "profile":
                value = self.profile
            elif cur.id == "first":
                value = self.aliases.get("first", MISSING)
            else:
                value = self.root(cur.id)
            for key in keys:
                value = _ref_get(value, key)
            return value
        if isinstance(node, ast.BoolOp):
            result = self.eval(node.values[0])
            for sub in node.values[1:]:
                if isinstance(node.op, ast.And) and not result:
                    return result
                if isinstance(node.op, ast.Or) and result:
                    return result
                result = self.eval(sub)
            return result
        if isinstance(node, ast.UnaryOp):
            operand = self.eval(node.operand)
            if isinstance(node.op, ast.Not):
                return not operand
            if not _is_number(operand):
                return MISSING
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.BinOp):
            return self.binop(node.op, self.eval(node.left), self.eval(node.right))
        if isinstance(node, ast.Compare):
            values = [self.eval(node.left)] + [self.eval(c) for c in node.comparators]
            for op, a, b in zip(node.ops, values, values[1:], strict=False):
                if a is MISSING or b is MISSING:
                    return False
                try:
                    ok = REF_CMP[type(op)](a, b)
                except Exception:
                    return False
                if not ok:
                    return ok
            return ok
        raise AssertionError(f"unexpected node {ast.dump(node)}")

    @staticmethod
    def binop(op: ast.operator, a: Any, b: Any) -> Any:
        if a is MISSING or b is MISSING:
            return MISSING
        try:
            if isinstance(op, ast.Add):
                if _is_number(a) and _is_number(b):
                    return a + b
                if (isinstance(a, str) and isinstance(b, str)) or (
                    isinstance(a, list) and isinstance(b, list)
                ):
                    return a + b
                return MISSING
            if isinstance(op, ast.Mult | ast.Mod):
                if not (_is_number(a) and _is_number(b)):
                    return MISSING
                return a * b if isinstance(op, ast.Mult) else a % b
            if isinstance(op, ast.Sub):
                return a - b
            if isinstance(op, ast.Div):
                return a / b
        except Exception:
            return MISSING
        raise AssertionError(op)


def _same(x: Any, y: Any) -> bool:
    if x is MISSING or y is MISSING:
        return x is y
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return type(x) is type(y) and x == y


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(source=valid_expressions, envs=st.lists(environments, min_size=1, max_size=3))
def test_valid_grammar_compiles_and_agrees_with_reference(source: str, envs: list[Env]) -> None:
    expr = compile_expression(source, aliases=["first"], context_names=["now"])
    tree = ast.parse(source, mode="eval")
    for event, profile, aliases, context in envs:
        expected = Reference(event, profile, aliases, context).eval(tree.body)
        got = expr.fn(event, profile, aliases, context)  # raw function: must not raise
        assert _same(got, expected), (source, event, profile, aliases, context, got, expected)
        assert expr.test(event, profile, aliases, context) is bool(expected)


FORBIDDEN_TEMPLATES: list[tuple[str, str]] = [
    ("f({e})", "function calls are not allowed"),
    ("{e} and g({e})", "function calls are not allowed"),
    ("__import__('os') or {e}", "function calls are not allowed"),
    ("({e})[0]", "subscripts are not allowed"),
    ("{e} == a[1:2]", "subscripts are not allowed"),
    ("({e}).__class__", "names beginning with '_' are not allowed"),
    ("{e} or __dunder__", "names beginning with '_' are not allowed"),
    ("{e} != event.__dict__", "names beginning with '_' are not allowed"),
    ("(lambda: {e})", "lambda expressions are not allowed"),
    ("{e} and (lambda q: q)", "lambda expressions are not allowed"),
    ("[q for q in {e}]", "comprehensions are not allowed"),
    ("{e} in {{q: 1 for q in a}}", "comprehensions are not allowed"),
    ("{e} or (q for q in a)", "generator expressions are not allowed"),
    ("(q := {e})", "assignment expressions (:=) are not allowed"),
    ("{e} and (q := 1)", "assignment expressions (:=) are not allowed"),
    ("{e} == f'{{a}}'", "f-strings are not allowed"),
    ("({e}) ** 2", "'**' is not allowed"),
    ("({e}) // 2", "'//' is not allowed"),
    ("({e} if {e} else {e})", "conditional expressions (x if c else y) are not allowed"),
]


@PROPERTY_SETTINGS
@given(
    inner=st.recursive(leaves, _extend, max_leaves=5),
    template=st.sampled_from(FORBIDDEN_TEMPLATES),
    prefix=st.sampled_from(["", "a == 1 and ", "not ", "(b or c) or "]),
)
def test_forbidden_constructs_always_rejected(
    inner: str, template: tuple[str, str], prefix: str
) -> None:
    pattern, message = template
    source = prefix + pattern.format(e=inner)
    assume(len(source) <= 4096)
    error = rejected(source, aliases=["first"], context_names=["now"])
    if "too deeply nested" not in error:
        assert error.startswith(message), (source, error)
