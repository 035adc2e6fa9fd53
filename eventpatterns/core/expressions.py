"""Safe, pre-compiled condition expressions (SPEC section 3).

Marketers write small Python-like expressions in pattern files::

    category == 'clothing'
    gender == 'F' and 25 <= age <= 35
    category == 'clothing' and productId != first.productId
    profile.tier in ['gold', 'platinum']
    amount * 1.1 >= 100

:func:`compile_expression` parses the source with :mod:`ast` (``mode='eval'``), checks every
node against a whitelist, and translates the tree into a new one in which every name lookup,
comparison and arithmetic operation goes through a private helper defined in this module.
That tree is compiled **once** into ``lambda event, profile, aliases, context: ...`` and
evaluated with empty ``__builtins__``.  Because the input is whitelisted, the generated code
can only read the four mappings and call the helpers below; nothing else can ever run.

Names
-----
* a bare name ``category`` is ``event.get('category', MISSING)``; ``event.category`` is the same;
* ``profile.x`` is ``profile.get('x', MISSING)``;
* ``alias.x`` (an alias of an earlier sequence step) is the attribute ``x`` of the event that
  alias matched; an alias not bound at run time gives ``MISSING``;
* a name listed in ``context_names`` is looked up in ``context`` (it wins over an event
  attribute of the same name);
* further attributes index nested mappings (``event.address.city``); a non-mapping or an
  absent key gives ``MISSING``;
* ``event`` and ``profile`` are reserved: they take precedence over aliases and context names
  of the same spelling, and neither may appear without an attribute.

Run-time semantics (evaluation never raises for plain data values)
------------------------------------------------------------------
* A comparison (``== != < <= > >= in not in is is not``) with a ``MISSING`` operand is
  ``False`` -- including ``!=``, ``not in`` and ``is not``.  A comparison that raises
  (e.g. ``'a' < 1``, ``1 in 5``) is ``False``.  A chain ``a < b < c`` is
  ``a < b and b < c`` with ``b`` evaluated once.
* Arithmetic with a ``MISSING`` operand, or that raises (``TypeError``,
  ``ZeroDivisionError``, ``OverflowError``, ...), gives ``MISSING``.  ``*`` and ``%`` apply to
  numbers only (``int``/``float``, ``bool`` counting as ``int``); ``+`` adds two numbers or
  concatenates two ``str`` or two ``list``; any other mix gives ``MISSING``.  ``-`` and ``/``
  are attempted on any operands (no builtin type can build a large object with them).
  Unary ``-``/``+`` of a non-number gives ``MISSING``.
* ``and`` / ``or`` / ``not`` follow Python truthiness, ``MISSING`` being falsy.  Note that
  therefore ``not MISSING`` is ``True``: ``not vip`` holds for an event without ``vip``,
  whereas ``vip == False`` does not.
* :meth:`Expression.test` is the truthiness of the value (``MISSING`` -> ``False``).
  :meth:`Expression.evaluate` and :meth:`Expression.test` additionally guard against
  exceptions raised by exotic (non-data) objects; ``Expression.fn`` is the raw compiled
  function for the hot path.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, NoReturn

__all__ = [
    "EMPTY",
    "MAX_DEPTH",
    "MAX_INT",
    "MAX_SEQUENCE_ITEMS",
    "MAX_SOURCE_LENGTH",
    "MAX_STRING_LENGTH",
    "MISSING",
    "EvalFn",
    "Expression",
    "ExpressionError",
    "MissingType",
    "compile_expression",
]

MAX_SOURCE_LENGTH: Final = 4096
MAX_DEPTH: Final = 64
MAX_INT: Final = 2**63  # int literals must satisfy abs(value) < MAX_INT
MAX_STRING_LENGTH: Final = 1024
MAX_SEQUENCE_ITEMS: Final = 1000

_RESERVED_EVENT: Final = "event"
_RESERVED_PROFILE: Final = "profile"


class MissingType:
    """Type of :data:`MISSING`; there is exactly one instance."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __copy__(self) -> MissingType:
        return self

    def __deepcopy__(self, memo: object) -> MissingType:
        return self

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = MissingType()
"""Value of an absent attribute (falsy, equal only to itself)."""

EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})

EvalFn = Callable[
    [Mapping[str, Any], Mapping[str, Any], Mapping[str, Mapping[str, Any]], Mapping[str, Any]],
    Any,
]


class ExpressionError(ValueError):
    """An expression was rejected at compile time; ``str(e)`` is a short human message."""


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression.  Equality and hash ignore ``fn``."""

    source: str
    aliases: frozenset[str]
    uses_profile: bool
    fn: EvalFn = field(repr=False, compare=False)

    def evaluate(
        self,
        event: Mapping[str, Any],
        profile: Mapping[str, Any] = EMPTY,
        aliases: Mapping[str, Mapping[str, Any]] = EMPTY,
        context: Mapping[str, Any] = EMPTY,
    ) -> Any:
        """The expression's value (``MISSING`` if absent or undefined).  Never raises."""
        try:
            return self.fn(event, profile, aliases, context)
        except Exception:
            return MISSING

    def test(
        self,
        event: Mapping[str, Any],
        profile: Mapping[str, Any] = EMPTY,
        aliases: Mapping[str, Mapping[str, Any]] = EMPTY,
        context: Mapping[str, Any] = EMPTY,
    ) -> bool:
        """Truthiness of the value; ``MISSING`` is ``False``.  Never raises."""
        try:
            return bool(self.fn(event, profile, aliases, context))
        except Exception:
            return False


# --------------------------------------------------------------------------------------------
# Run-time helpers (the only callables visible to generated code)
# --------------------------------------------------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` for a mapping ``obj``, else ``MISSING``."""
    if type(obj) is dict:
        return obj.get(key, MISSING)
    if isinstance(obj, Mapping):
        try:
            return obj.get(key, MISSING)
        except Exception:
            return MISSING
    return MISSING


def _eq(a: Any, b: Any) -> Any:
    if a is MISSING or b is MISSING:
        return False
    try:
        return a == b
    except Exception:
        return False


def _kind(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "sequence"
    return type(value).__name__


def _ne(a: Any, b: Any) -> Any:
    """`!=` between incompatible types (a string and a number) is false, as SPEC section 3 says.

    `None` compares with anything, so `x != None` still means "x is set".
    """
    if a is MISSING or b is MISSING:
        return False
    kind_a, kind_b = _kind(a), _kind(b)
    if kind_a != kind_b and "none" not in (kind_a, kind_b):
        return False
    try:
        return a != b
    except Exception:
        return False


def _lt(a: Any, b: Any) -> Any:
    if a is MISSING or b is MISSING:
        return False
    try:
        return a < b
    except Exception:
        return False


def _le(a: Any, b: Any) -> Any:
    if a is MISSING or b is MISSING:
        return False
    try:
        return a <= b
    except Exception:
        return False


def _gt(a: Any, b: Any) -> Any:
    if a is MISSING or b is MISSING:
        return False
    try:
        return a > b
    except Exception:
        return False


def _ge(a: Any, b: Any) -> Any:
    if a is MISSING or b is MISSING:
        return False
    try:
        return a >= b
    except Exception:
        return False


def _in(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return False
    try:
        return a in b
    except Exception:
        return False


def _nin(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return False
    try:
        return a not in b
    except Exception:
        return False


def _is(a: Any, b: Any) -> bool:
    return a is b and a is not MISSING


def _isnot(a: Any, b: Any) -> bool:
    return a is not b and a is not MISSING and b is not MISSING


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, int | float) and isinstance(b, int | float):
        try:
            return a + b
        except Exception:  # OverflowError: huge int + float
            return MISSING
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    return MISSING


def _sub(a: Any, b: Any) -> Any:
    if a is MISSING or b is MISSING:
        return MISSING
    try:
        return a - b
    except Exception:
        return MISSING


def _div(a: Any, b: Any) -> Any:
    if a is MISSING or b is MISSING:
        return MISSING
    try:
        return a / b
    except Exception:
        return MISSING


def _mul(a: Any, b: Any) -> Any:
    if isinstance(a, int | float) and isinstance(b, int | float):
        try:
            return a * b
        except Exception:
            return MISSING
    return MISSING


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, int | float) and isinstance(b, int | float):
        try:
            return a % b
        except Exception:
            return MISSING
    return MISSING


def _neg(a: Any) -> Any:
    if isinstance(a, int | float):
        return -a
    return MISSING


def _pos(a: Any) -> Any:
    if isinstance(a, int | float):
        return +a
    return MISSING


_HELPERS: Final[dict[str, Any]] = {
    "_MISSING": MISSING,
    "_get": _get,
    "_eq": _eq,
    "_ne": _ne,
    "_lt": _lt,
    "_le": _le,
    "_gt": _gt,
    "_ge": _ge,
    "_in": _in,
    "_nin": _nin,
    "_is": _is,
    "_isnot": _isnot,
    "_add": _add,
    "_sub": _sub,
    "_div": _div,
    "_mul": _mul,
    "_mod": _mod,
    "_neg": _neg,
    "_pos": _pos,
}

_BINOP_HELPERS: Final[dict[type[ast.operator], str]] = {
    ast.Add: "_add",
    ast.Sub: "_sub",
    ast.Mult: "_mul",
    ast.Div: "_div",
    ast.Mod: "_mod",
}

_CMP_HELPERS: Final[dict[type[ast.cmpop], str]] = {
    ast.Eq: "_eq",
    ast.NotEq: "_ne",
    ast.Lt: "_lt",
    ast.LtE: "_le",
    ast.Gt: "_gt",
    ast.GtE: "_ge",
    ast.In: "_in",
    ast.NotIn: "_nin",
    ast.Is: "_is",
    ast.IsNot: "_isnot",
}

_BINOP_REJECTIONS: Final[dict[type[ast.operator], str]] = {
    ast.FloorDiv: "'//' is not allowed",
    ast.Pow: "'**' is not allowed",
    ast.MatMult: "'@' is not allowed",
    ast.LShift: "bitwise operators are not allowed",
    ast.RShift: "bitwise operators are not allowed",
    ast.BitOr: "bitwise operators are not allowed",
    ast.BitXor: "bitwise operators are not allowed",
    ast.BitAnd: "bitwise operators are not allowed",
}

_NODE_REJECTIONS: Final[dict[type[ast.AST], str]] = {
    ast.Call: "function calls are not allowed",
    ast.Subscript: "subscripts are not allowed",
    ast.Slice: "subscripts are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.Lambda: "lambda expressions are not allowed",
    ast.IfExp: "conditional expressions (x if c else y) are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Starred: "starred expressions are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Set: "set literals are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
}

# Leaf node kinds that carry no nesting of their own (skipped by the depth count).
_LEAF_KINDS: Final = (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)


# --------------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------------


def _name(ident: str) -> ast.Name:
    return ast.Name(id=ident, ctx=ast.Load())


def _const(value: Any) -> ast.Constant:
    return ast.Constant(value)


def _call(helper: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(helper), args=list(args), keywords=[])


class _Compiler:
    """Translates a whitelisted source tree into the generated tree (recursive; run only
    after the iterative depth check has bounded the recursion)."""

    def __init__(
        self,
        text: str,
        line_offset: int,
        aliases: frozenset[str],
        later_aliases: frozenset[str],
        context_names: frozenset[str],
    ) -> None:
        self.lines = text.split("\n")
        self.line_offset = line_offset
        self.aliases = aliases
        self.later_aliases = later_aliases
        self.context_names = context_names
        self.used_aliases: set[str] = set()
        self.uses_profile = False
        self._temps = 0

    # -- errors ------------------------------------------------------------------------------

    def fail(self, message: str, node: ast.AST | None = None) -> NoReturn:
        lineno = getattr(node, "lineno", None)
        col = getattr(node, "col_offset", None)
        if isinstance(lineno, int) and isinstance(col, int) and 1 <= lineno <= len(self.lines):
            line = self.lines[lineno - 1]
            column = len(line.encode("utf-8")[:col].decode("utf-8", "replace")) + 1
            if lineno == 1:
                column += self.line_offset
            message = f"{message} (at column {column})"
        raise ExpressionError(message)

    # -- literals ----------------------------------------------------------------------------

    def check_constant(self, node: ast.Constant) -> object:
        value = node.value
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            if abs(value) >= MAX_INT:
                self.fail("integer literal is too large", node)
            return value
        if isinstance(value, float):
            return value
        if isinstance(value, str):
            if len(value) > MAX_STRING_LENGTH:
                self.fail(f"string literal is too long (max {MAX_STRING_LENGTH} characters)", node)
            return value
        if isinstance(value, bytes):
            self.fail("bytes literals are not allowed", node)
        if isinstance(value, complex):
            self.fail("complex numbers are not allowed", node)
        if value is Ellipsis:
            self.fail("'...' is not allowed", node)
        self.fail(f"unsupported literal {type(value).__name__}", node)

    def scalar_literal(self, node: ast.expr) -> tuple[bool, object]:
        """``(True, value)`` if ``node`` is a scalar literal, folding unary ``-``/``+`` on
        numbers (``-5``); ``(False, None)`` otherwise."""
        if isinstance(node, ast.Constant):
            return True, self.check_constant(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            ok, value = self.scalar_literal(node.operand)
            if ok and isinstance(value, int | float):
                return True, (-value if isinstance(node.op, ast.USub) else +value)
        return False, None

    def sequence_literal(self, node: ast.List | ast.Tuple) -> list[object]:
        if len(node.elts) > MAX_SEQUENCE_ITEMS:
            self.fail(f"list is too long (max {MAX_SEQUENCE_ITEMS} items)", node)
        values: list[object] = []
        for elt in node.elts:
            ok, value = self.scalar_literal(elt)
            if not ok:
                kind = type(elt)
                if kind in _NODE_REJECTIONS:
                    self.fail(_NODE_REJECTIONS[kind], elt)
                self.fail(
                    "list elements must be literals (numbers, strings, True, False, None)", elt
                )
            values.append(value)
        return values

    def is_literal(self, node: ast.expr) -> bool:
        return isinstance(node, ast.List | ast.Tuple) or self.scalar_literal(node)[0]

    # -- names -------------------------------------------------------------------------------

    def check_ident(self, ident: str, node: ast.AST) -> None:
        if ident.startswith("_"):
            if isinstance(node, ast.Attribute) and node.end_col_offset is not None:
                # Point at the attribute itself rather than at the start of ``x.y.z``.
                spot = ast.Name(id=ident)
                spot.lineno = node.end_lineno or node.lineno
                spot.col_offset = node.end_col_offset - len(ident.encode("utf-8"))
                node = spot
            self.fail("names beginning with '_' are not allowed", node)

    def bare_name(self, node: ast.Name) -> ast.expr:
        ident = node.id
        self.check_ident(ident, node)
        if ident == _RESERVED_EVENT:
            self.fail("'event' must be followed by an attribute, e.g. event.category", node)
        if ident == _RESERVED_PROFILE:
            self.fail("'profile' must be followed by an attribute, e.g. profile.tier", node)
        if ident in self.later_aliases:
            self.fail(f"alias '{ident}' refers to the same or a later step", node)
        if ident in self.aliases:
            self.fail(
                f"alias '{ident}' must be followed by an attribute, e.g. {ident}.productId", node
            )
        source = _RESERVED_EVENT
        if ident in self.context_names:
            source = "context"
        return self.mapping_get(source, ident)

    @staticmethod
    def mapping_get(mapping: str, key: str) -> ast.expr:
        # <mapping>.get(key, _MISSING): the four arguments are always mappings.
        return ast.Call(
            func=ast.Attribute(value=_name(mapping), attr="get", ctx=ast.Load()),
            args=[ast.Constant(key), _name("_MISSING")],
            keywords=[],
        )

    def attribute(self, node: ast.Attribute) -> ast.expr:
        path: list[ast.Attribute] = []
        cur: ast.expr = node
        while isinstance(cur, ast.Attribute):
            path.append(cur)
            cur = cur.value
        path.reverse()
        for part in path:
            self.check_ident(part.attr, part)
        if not isinstance(cur, ast.Name):
            kind = type(cur)
            if kind in _NODE_REJECTIONS:
                self.fail(_NODE_REJECTIONS[kind], cur)
            self.fail("attribute access is only allowed on names, e.g. profile.tier", node)
        root = cur.id
        self.check_ident(root, cur)
        keys = [part.attr for part in path]
        result: ast.expr
        if root == _RESERVED_EVENT:
            result = self.mapping_get("event", keys[0])
            keys = keys[1:]
        elif root == _RESERVED_PROFILE:
            self.uses_profile = True
            result = self.mapping_get("profile", keys[0])
            keys = keys[1:]
        elif root in self.later_aliases:
            self.fail(f"alias '{root}' refers to the same or a later step", cur)
        elif root in self.aliases:
            self.used_aliases.add(root)
            bound = _call("_get", _name("aliases"), ast.Constant(root))
            result = _call("_get", bound, ast.Constant(keys[0]))
            keys = keys[1:]
        elif root in self.context_names:
            result = self.mapping_get("context", root)
        else:
            result = self.mapping_get("event", root)
        for key in keys:
            result = _call("_get", result, ast.Constant(key))
        return result

    # -- expressions -------------------------------------------------------------------------

    def expr(self, node: ast.expr) -> ast.expr:
        ok, value = self.scalar_literal(node)
        if ok:
            return _const(value)
        if isinstance(node, ast.List):
            return ast.List(elts=[_const(v) for v in self.sequence_literal(node)], ctx=ast.Load())
        if isinstance(node, ast.Tuple):
            return _const(tuple(self.sequence_literal(node)))
        if isinstance(node, ast.Name):
            return self.bare_name(node)
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        if isinstance(node, ast.BoolOp):
            return ast.BoolOp(op=type(node.op)(), values=[self.expr(v) for v in node.values])
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        kind = type(node)
        if kind in _NODE_REJECTIONS:
            self.fail(_NODE_REJECTIONS[kind], node)
        self.fail(f"unsupported syntax: {kind.__name__}", node)

    def unary(self, node: ast.UnaryOp) -> ast.expr:
        if isinstance(node.op, ast.Not):
            return ast.UnaryOp(op=ast.Not(), operand=self.expr(node.operand))
        if isinstance(node.op, ast.USub):
            return _call("_neg", self.expr(node.operand))
        if isinstance(node.op, ast.UAdd):
            return _call("_pos", self.expr(node.operand))
        self.fail("bitwise operators are not allowed", node)

    def binop(self, node: ast.BinOp) -> ast.expr:
        kind = type(node.op)
        if kind in _BINOP_REJECTIONS:
            self.fail(_BINOP_REJECTIONS[kind], node)
        helper = _BINOP_HELPERS.get(kind)
        if helper is None:  # pragma: no cover - every operator is in one of the two tables
            self.fail(f"unsupported operator: {kind.__name__}", node)
        return _call(helper, self.expr(node.left), self.expr(node.right))

    def temp(self) -> str:
        self._temps += 1
        return f"_t{self._temps}"

    def compare(self, node: ast.Compare) -> ast.expr:
        operands = [node.left, *node.comparators]
        literal = [self.is_literal(o) for o in operands]
        compiled = [self.expr(o) for o in operands]
        # A middle operand of a chain is used twice: bind non-literals to a temporary with
        # a walrus (in the generated code only) so that it is evaluated once and the tree
        # does not grow exponentially with nested chains.
        lefts: list[ast.expr] = [compiled[0]]
        rights: list[ast.expr] = []
        for i in range(1, len(operands)):
            if i < len(operands) - 1 and not literal[i]:
                tmp = self.temp()
                rights.append(
                    ast.NamedExpr(target=ast.Name(id=tmp, ctx=ast.Store()), value=compiled[i])
                )
                lefts.append(_name(tmp))
            else:
                rights.append(compiled[i])
                lefts.append(self.expr(operands[i]))  # a fresh node for the second use
        pairs: list[ast.expr] = []
        for i, op in enumerate(node.ops):
            pairs.append(
                self.compare_pair(
                    op,
                    lefts[i],
                    rights[i],
                    operands[i],
                    operands[i + 1],
                    literal[i],
                    literal[i + 1],
                )
            )
        if len(pairs) == 1:
            return pairs[0]
        return ast.BoolOp(op=ast.And(), values=pairs)

    def compare_pair(
        self,
        op: ast.cmpop,
        left: ast.expr,
        right: ast.expr,
        left_src: ast.expr,
        right_src: ast.expr,
        left_lit: bool,
        right_lit: bool,
    ) -> ast.expr:
        # Fast paths: a literal is never MISSING, and MISSING compares unequal / non-identical
        # to every literal, so plain ``==`` / ``is`` / ``in <literal list>`` give exactly the
        # documented result (they cannot raise on data values).
        if isinstance(op, ast.Eq | ast.Is) and (left_lit or right_lit):
            return ast.Compare(left=left, ops=[type(op)()], comparators=[right])
        if isinstance(op, ast.In | ast.NotIn) and isinstance(right_src, ast.List | ast.Tuple):
            container = _const(tuple(self.sequence_literal(right_src)))
            if isinstance(op, ast.In):
                return ast.Compare(left=left, ops=[ast.In()], comparators=[container])
            return _call("_nin", left, container)
        return _call(_CMP_HELPERS[type(op)], left, right)


def _check_depth(tree: ast.Expression) -> None:
    """Iteratively bound the nesting depth before anything recursive touches the tree."""
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression is too deeply nested (max depth {MAX_DEPTH})")
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, _LEAF_KINDS):
                stack.append((child, depth + 1))


def _parse(source: object) -> tuple[str, int, ast.Expression]:
    if not isinstance(source, str):
        raise ExpressionError("expression must be a string")
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(f"expression is too long (max {MAX_SOURCE_LENGTH} characters)")
    text = source.strip()
    if not text:
        raise ExpressionError("empty expression")
    lead = source.index(text[0])
    line_offset = lead if "\n" not in source[:lead] else 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        message = f"syntax error: {exc.msg}"
        offset = exc.offset
        if exc.lineno == 1 and offset is not None and 1 <= offset <= len(text) and "\n" not in text:
            if text[offset - 1] == "=" and text[offset : offset + 1] != "=":
                message += "; use '==' to compare"
            message += f" (at column {offset + line_offset})"
        raise ExpressionError(message) from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"expression is too deeply nested (max depth {MAX_DEPTH})") from None
    except ValueError as exc:
        raise ExpressionError(f"invalid expression text: {exc}") from None
    except Exception as exc:  # anything else the parser may throw on hostile input
        raise ExpressionError(f"invalid expression text: {type(exc).__name__}") from None
    return text, line_offset, tree


def compile_expression(
    source: object,  # checked in _parse: compiled with mypyc, a `str` would be a TypeError
    *,
    aliases: Collection[str] = (),
    later_aliases: Collection[str] = (),
    context_names: Collection[str] = (),
) -> Expression:
    """Parse, check and compile ``source``; raise :class:`ExpressionError` if it is rejected.

    ``aliases`` are the aliases of earlier sequence steps (usable as ``alias.attr``);
    using one of ``later_aliases`` (same or later step) is an error.  ``context_names`` are
    bare names looked up in the ``context`` mapping instead of the event.
    """
    text, line_offset, tree = _parse(source)
    assert isinstance(source, str)  # _parse refused anything else
    _check_depth(tree)
    compiler = _Compiler(
        text,
        line_offset,
        frozenset(aliases),
        frozenset(later_aliases) - {_RESERVED_EVENT, _RESERVED_PROFILE},
        frozenset(context_names),
    )
    body = compiler.expr(tree.body)
    params = [ast.arg(arg=name) for name in ("event", "profile", "aliases", "context")]
    lam = ast.Lambda(
        args=ast.arguments(posonlyargs=[], args=params, kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=body,
    )
    module = ast.fix_missing_locations(ast.Expression(body=lam))
    namespace: dict[str, Any] = {"__builtins__": {}, **_HELPERS}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for ``x is 1``
            code = compile(module, "<expression>", "eval")
        fn: EvalFn = eval(code, namespace)
    except (RecursionError, MemoryError):  # pragma: no cover - bounded by MAX_DEPTH
        raise ExpressionError(f"expression is too deeply nested (max depth {MAX_DEPTH})") from None
    return Expression(
        source=source,
        aliases=frozenset(compiler.used_aliases),
        uses_profile=compiler.uses_profile,
        fn=fn,
    )
