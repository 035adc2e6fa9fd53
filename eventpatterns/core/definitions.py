"""Load, validate and compile a pattern file (SPEC sections 2, 3, 5, 6).

A file is accepted whole or refused whole: every problem is collected, each
named by file, line, pattern id and field path, before anything is refused.
The compiled `Definitions` are immutable and shared by every user's state.
"""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args

import orjson
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from .dispatch import Dispatch, build_dispatch
from .expressions import Expression, ExpressionError, compile_expression
from .matching import Matcher as Matcher
from .spec import (
    DEFAULT_SOURCE,
    AggregateSpec,
    CheckpointSpec,
    ComposingEventSpec,
    FieldRef,
    LogAcceptAction,
    LogContactAction,
    LogRejectAction,
    OfferSpec,
    PatternFileSpec,
    PatternSpec,
    PublishAction,
    QualifySegmentsAction,
    ResegmentAction,
    ResetPatternAction,
    SetAttributeAction,
    SourceSpec,
    SuppressOffersAction,
    SuspendSpec,
    TimestampRef,
    TriggerEventsAction,
    WindowSpec,
    _Immediate,
)
from .templates import CONTEXT_NAMES, Template, TemplateError, compile_template

_M = TypeVar("_M")

MAX_CHAIN_DEPTH = 8
MACRO_EVENTS = ("offerContacted", "offerAccepted", "offerRejected")
CATEGORY_MACROS = {f"{name}InCategory": name for name in MACRO_EVENTS}
_RESERVED_ALIASES = ("event", "profile", *CONTEXT_NAMES)


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str
    line: int | None = None

    def render(self, filename: str | None) -> str:
        where = filename or "<patterns>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PatternFileError(ValueError):
    """The whole file is refused; `problems` lists every reason."""

    def __init__(self, problems: Sequence[Problem], filename: str | None = None) -> None:
        self.problems = list(problems)
        self.filename = filename
        super().__init__("\n".join(problem.render(filename) for problem in self.problems))


# --------------------------------------------------------------------------- compiled model


@dataclass(frozen=True, slots=True)
class Aggregate:
    fn: str
    attribute: str
    op: str
    value: float
    column: int
    """Index of the attribute's value in a stored occurrence (after the time)."""

    def holds(self, result: float) -> bool:
        op = self.op
        if op == ">=":
            return result >= self.value
        if op == ">":
            return result > self.value
        if op == "<=":
            return result <= self.value
        if op == "<":
            return result < self.value
        if op == "==":
            return result == self.value
        return result != self.value

    def describe(self) -> str:
        return f"{self.fn}({self.attribute}) {self.op} {self.value:g}"


@dataclass(frozen=True, slots=True)
class Composing:
    index: int
    label: str
    matcher: Matcher
    count: int
    weight: float
    alias: str | None
    alias_where: Expression | None
    """Conjuncts of `where` naming earlier aliases; checked when the sequence is searched."""
    min_after: int | None
    max_after: int | None
    aggregates: tuple[Aggregate, ...]
    value_attributes: tuple[str, ...]
    keep_last: int | None
    """In a window, only this many most recent occurrences can matter (None: all)."""


@dataclass(frozen=True, slots=True)
class Suspender:
    matcher: Matcher
    duration: int | None


@dataclass(frozen=True, slots=True)
class Action:
    kind: str
    delay: int | None
    at: int | None
    fields: Mapping[str, Any]
    """Compiled per kind: templates, expressions, codes."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    after: int
    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class Pattern:
    index: int
    id: str
    type: str
    mode: str
    """`unbounded`, `rolling` or `time_bound`."""
    duration: int | None
    extend: int
    start: int | None
    end: int | None
    audience: Expression | None
    ignore_repeats: str | None
    events: tuple[Composing, ...]
    threshold: float
    suspenders: tuple[Suspender, ...]
    on_met: tuple[Action, ...]
    checkpoints: tuple[Checkpoint, ...]
    bound_attributes: Mapping[str, tuple[str, ...]]
    """Per alias, the attributes later steps or templates read; what a partial match keeps."""
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Route:
    """The patterns an event name concerns, in file order."""

    pattern: Pattern
    composing: tuple[Composing, ...]
    suspenders: tuple[Suspender, ...]


@dataclass(frozen=True, slots=True)
class Definitions:
    version: str
    source: SourceSpec
    offers: Mapping[str, Mapping[str, Any]]
    segments: Mapping[str, Expression]
    patterns: tuple[Pattern, ...]
    by_id: Mapping[str, Pattern]
    routes: Mapping[str, tuple[Route, ...]] = field(repr=False)
    raw: Mapping[str, Any] = field(repr=False)
    dispatch: Mapping[str, Dispatch] = field(repr=False)
    """Per event name, its routes picked by one attribute (`dispatch.py`)."""

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for pattern in self.patterns:
            key = f"{pattern.type}/{pattern.mode}"
            kinds[key] = kinds.get(key, 0) + 1
        described = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        return (
            f"{_plural(len(self.patterns), 'pattern')} ({described or 'none'}), "
            f"{_plural(len(self.offers), 'offer')}, {_plural(len(self.segments), 'segment')}, "
            f"source topic {self.source.topic}, version {self.version}"
        )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# --------------------------------------------------------------------------- loading


def load_definitions_file(path: str) -> Definitions:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise PatternFileError(
            [Problem("", f"cannot read the file: {error.strerror or error}")], path
        ) from None
    except UnicodeDecodeError:
        raise PatternFileError([Problem("", "the file is not UTF-8 text")], path) from None
    return load_definitions(text, filename=path)


def load_definitions(text: str, filename: str | None = None) -> Definitions:
    """Compile a pattern file, or raise PatternFileError listing every problem in it."""
    try:
        document, root, duplicates = _parse_yaml(text)
    except yaml.YAMLError as error:
        raise PatternFileError([_yaml_problem(error)], filename) from None
    lines = _LineFinder(root)
    builder = _Builder(lines)
    for path, line in duplicates:
        builder.problems.append(
            Problem(
                _format_path(path),
                "this key is written twice in the same place; only the last one would count, "
                "so remove or rename one",
                line,
            )
        )
    definitions = builder.build(document)
    if builder.problems:
        raise PatternFileError(_ordered(builder.problems), filename)
    assert definitions is not None
    return definitions


def _ordered(problems: Sequence[Problem]) -> list[Problem]:
    """Distinct problems, top of the file first (a stable sort keeps same-line order)."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda problem: problem.line or 0)


# YAML as a marketer means it: timestamps stay text (the engine reads them itself and
# insists on an offset) and only true/false are booleans, so that `yes`, `no`, `on` and
# `off` are plain words, as in YAML 1.2 and JSON.
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BOOL_TAG = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_TIMESTAMP_TAG, _BOOL_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _parse_yaml(text: str) -> tuple[Any, yaml.Node | None, list[tuple[list[str | int], int]]]:
    try:
        return _load_yaml(text)
    except yaml.YAMLError:
        # JSON is valid YAML, except that YAML refuses tabs where JSON allows them as
        # whitespace. In valid JSON every tab is whitespace, so spaces change nothing.
        if "\t" in text:
            try:
                json.loads(text)
            except ValueError:
                pass
            else:
                return _load_yaml(text.replace("\t", " "))
        raise


def _load_yaml(text: str) -> tuple[Any, yaml.Node | None, list[tuple[list[str | int], int]]]:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        duplicates = _duplicate_keys(root)
        document = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return document, root, duplicates


def _yaml_problem(error: yaml.YAMLError) -> Problem:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    if "'\\t'" in problem:
        problem, context = "a tab character; YAML indents with spaces only", None
    elif context == "expected a single document in the stream":
        problem, context = "a second document ('---'); a pattern file is one document", None
    elif "block" in problem or (context and "block" in context):
        context = "check the indentation"
    message = "not valid YAML"
    if mark is not None:
        message += f" (column {mark.column + 1})"
    message += f": {problem}"
    if context:
        message += f"; {context}"
        context_mark = getattr(error, "context_mark", None)
        if context_mark is not None and mark is not None and context_mark.line != mark.line:
            message += f" that starts on line {context_mark.line + 1}"
    return Problem("", message, mark.line + 1 if mark is not None else None)


def _duplicate_keys(root: yaml.Node | None) -> list[tuple[list[str | int], int]]:
    found: list[tuple[list[str | int], int]] = []
    stack: list[tuple[yaml.Node, list[str | int]]] = [(root, [])] if root is not None else []
    seen_nodes: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:  # an alias (*anchor) shares its node
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in keys:
                        found.append(([*path, key.value], key.start_mark.line + 1))
                    keys.add(key.value)
                    stack.append((value, [*path, key.value]))
        elif isinstance(node, yaml.SequenceNode):
            for position, item in enumerate(node.value):
                stack.append((item, [*path, position]))
    return sorted(found, key=lambda item: item[1])


class _LineFinder:
    """Maps a field path to the line where it is written, from the YAML node tree."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def line(self, path: Sequence[str | int]) -> int | None:
        node = self.root
        best = node.start_mark.line + 1 if node is not None else None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                found = None
                for key, value in node.value:
                    if key.value == str(part):
                        found = value
                        best = key.start_mark.line + 1
                if found is None:
                    break
                node = found
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
                best = node.start_mark.line + 1
            else:
                break
        return best


def _format_path(path: Sequence[str | int], pattern_id: str | None = None) -> str:
    text = ""
    for position, part in enumerate(path):
        if isinstance(part, int):
            text += f"[{part}]"
            if position == 1 and path[0] == "patterns" and pattern_id:
                text += f" (id={pattern_id})"
        else:
            text += f".{part}" if text else str(part)
    return text


# --------------------------------------------------------------------------- pydantic errors
#
# Pydantic reports in its own words and with its own location tags (union branches such
# as `str` / `FieldRef`, the action type of a discriminated union). These helpers turn its
# errors into one message per problem, in words a marketer can act on.

_MODELS: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        FieldRef,
        TimestampRef,
        SourceSpec,
        OfferSpec,
        AggregateSpec,
        ComposingEventSpec,
        SuspendSpec,
        CheckpointSpec,
        WindowSpec,
        PatternSpec,
        PatternFileSpec,
    )
}
_ACTION_MODELS: dict[str, type[BaseModel]] = {
    "publish": PublishAction,
    "log_contact": LogContactAction,
    "log_accept": LogAcceptAction,
    "log_reject": LogRejectAction,
    "set_attribute": SetAttributeAction,
    "trigger_events": TriggerEventsAction,
    "suppress_offers": SuppressOffersAction,
    "qualify_segments": QualifySegmentsAction,
    "resegment": ResegmentAction,
    "reset_pattern": ResetPatternAction,
}
_ACTION_LIST = ", ".join(_ACTION_MODELS)
_UNION_MESSAGES = {
    "event": "must be an event name (text), or {field: <name of the field holding the event name>}",
    "attributes": 'must be "*" (every other field of the record) or '
    "{field: <name of the field holding the attributes>}",
}
_TYPE_WORDS = {
    "string_type": "must be text",
    "string_too_short": "must not be empty",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "finite_number": "must be a finite number",
    "list_type": "must be a list (items on lines starting with '- ', or [a, b])",
    "dict_type": "must be a mapping of keys to values (key: value)",
    "model_type": "must be a mapping of keys to values (key: value)",
    "model_attributes_type": "must be a mapping of keys to values (key: value)",
}


def _is_branch_tag(part: Any) -> bool:
    """A union-branch tag that pydantic puts in a location (not a discriminator tag)."""
    return isinstance(part, str) and (
        part in _MODELS
        or part in ("str", "int", "float", "bool", "none")
        or part.startswith(("function-", "literal[", "list[", "dict[", "nullable["))
    )


def _clean_loc(loc: Sequence[Any]) -> list[str | int]:
    """Drop pydantic's tags (union branches, the action type) from a location."""
    cleaned: list[str | int] = []
    for position, part in enumerate(loc):
        previous = loc[position - 1] if position else None
        if isinstance(part, str) and isinstance(previous, int) and part in _ACTION_MODELS:
            continue
        if _is_branch_tag(part):
            continue
        cleaned.append(part)
    return cleaned


def _value_at(data: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        if isinstance(data, dict):
            if part not in data:
                return _ABSENT
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return _ABSENT
    return data


_ABSENT: Any = object()


def _model_at(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model that validates the mapping at `loc` (a raw pydantic location)."""
    current: type[BaseModel] | None = model
    for position, part in enumerate(loc):
        if current is None:
            return None
        if isinstance(part, int):
            continue
        previous = loc[position - 1] if position else None
        if isinstance(previous, int) and part in _ACTION_MODELS:
            current = _ACTION_MODELS[part]
            continue
        if part in _MODELS and _is_branch_tag(part):
            current = _MODELS[part]
            continue
        if _is_branch_tag(part):
            continue
        field_info = _fields_by_key(current).get(str(part))
        current = _inner_model(field_info.annotation) if field_info is not None else None
    return current


def _fields_by_key(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _inner_model(argument)
        if found is not None:
            return found
    return None


def _allowed_keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    keys = list(_fields_by_key(model))
    if "action" in keys:  # the action type first, then its fields, delay/at last
        keys.remove("action")
        last = [key for key in ("delay", "at") if key in keys]
        keys = ["action", *[key for key in keys if key not in last], *last]
    if issubclass(model, _Immediate):
        keys = [key for key in keys if key not in ("delay", "at")]
    return keys


def _friendly(error: Mapping[str, Any], root_model: type[BaseModel]) -> str:
    kind = str(error.get("type", ""))
    loc = list(error.get("loc", ()))
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _allowed_keys(_model_at(root_model, loc[:-1]))
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6) if loc else []
        if close:
            return f"unknown key; did you mean '{close[0]}'?"
        return (
            f"unknown key; the keys allowed here are {', '.join(allowed)}"
            if allowed
            else ("unknown key")
        )
    if kind == "missing":
        return "required but missing"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        message = f"must be {expected}"
        cleaned = _clean_loc(loc)
        if cleaned[-2:] == ["window", "mode"]:
            message += " (leave 'window' out for an unbounded pattern)"
        if cleaned == ["version"]:
            message += " (the only version of the pattern file format)"
        return message
    if kind == "union_tag_invalid":
        return f"unknown action '{ctx.get('tag')}'; the actions are {_ACTION_LIST}"
    if kind == "union_tag_not_found":
        return f"'action' is missing; it names the action: one of {_ACTION_LIST}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": "at least",
            "greater_than": "greater than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        bound = next(iter(ctx.values()), "")
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"must be {words} {bound}"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return "must list at least one item" if least == 1 else f"must list at least {least} items"
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    message = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if message.startswith("Input should be "):
        message = "must be " + message[len("Input should be ") :]
    return message


def _pydantic_messages(
    error: ValidationError, data: Any, root_model: type[BaseModel]
) -> list[tuple[list[str | int], str]]:
    """(path, message) per problem; the errors of a union's branches are merged into one."""
    errors = error.errors()
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for item in errors:
        loc = list(item["loc"])
        branch = next((i for i, part in enumerate(loc) if _is_branch_tag(part)), None)
        if branch is not None:
            groups.setdefault(tuple(loc[:branch]), []).append(item)
    out: list[tuple[list[str | int], str]] = []
    done: set[tuple[Any, ...]] = set()
    for item in errors:
        loc = list(item["loc"])
        branch = next((i for i, part in enumerate(loc) if _is_branch_tag(part)), None)
        if branch is None:
            out.append((_clean_loc(loc), _friendly(item, root_model)))
            continue
        key = tuple(loc[:branch])
        if key in done:
            continue
        done.add(key)
        group = groups[key]
        if len({entry["loc"][branch] for entry in group}) == 1:
            out.extend((_clean_loc(e["loc"]), _friendly(e, root_model)) for e in group)
            continue
        prefix = _clean_loc(key)
        value = _value_at(data, prefix)
        models = [e for e in group if e["loc"][branch] in _MODELS]
        if isinstance(value, dict) and models:
            out.extend((_clean_loc(e["loc"]), _friendly(e, root_model)) for e in models)
        else:
            name = str(prefix[-1]) if prefix else ""
            message = _UNION_MESSAGES.get(name, "does not have one of the allowed forms")
            out.append((prefix, message))
    unique: dict[tuple[tuple[str | int, ...], str], None] = {}
    for path, message in out:
        unique[(tuple(path), message)] = None
    return [(list(path), message) for path, message in unique]


# --------------------------------------------------------------------------- salvage
#
# To report every problem at once, the parts of a pattern that pydantic refuses are
# dropped or replaced by harmless stand-ins and the rest is checked further. What is
# built from a salvaged file is never used: any problem refuses the whole file.

_STAND_IN = "\x00"
_FILL: dict[str, Any] = {
    "version": 1,
    "id": "stand-in",
    "type": "match_all",
    "events": [{"event": _STAND_IN}],
    "event": _STAND_IN,
    "code": _STAND_IN,
    "topic": _STAND_IN,
}
_ITEM_STAND_INS: dict[str, Any] = {
    "events": {"event": _STAND_IN},
    "suspend": {"event": _STAND_IN},
    "on_met": {"action": "resegment"},
    "actions": {"action": "resegment"},
    "checkpoints": {"after": "1d", "actions": [{"action": "resegment"}]},
    "aggregate": {"fn": "sum", "attribute": _STAND_IN, "op": ">=", "value": 0},
    "offers": {"code": _STAND_IN},
}
_MAX_REPAIRS = 8


def _salvage(validate: Callable[[Any], _M], data: Any, first: ValidationError) -> _M | None:
    """Validate a repaired copy of `data`; None if it cannot be repaired."""
    data = copy.deepcopy(data)
    error = first
    for _ in range(_MAX_REPAIRS):
        changed = [_repair(data, _clean_loc(item["loc"]), item["type"]) for item in error.errors()]
        if not any(changed):
            return None
        try:
            return validate(data)
        except ValidationError as again:
            error = again
    return None


def _repair(root: Any, loc: list[str | int], kind: str) -> bool:
    """Drop or replace what is wrong at `loc`; False when nothing could be changed."""
    while loc:
        parent = _value_at(root, loc[:-1])
        if parent is _ABSENT:
            return False  # already dropped with its container
        key = loc[-1]
        if isinstance(parent, dict):
            if kind == "missing" and isinstance(key, str) and key in _FILL:
                parent[key] = copy.deepcopy(_FILL[key])
                return True
            if kind != "missing":
                if key not in parent:
                    return False
                del parent[key]  # if it is required, the next round finds it missing
                return True
        elif isinstance(parent, list) and isinstance(key, int) and 0 <= key < len(parent):
            owner = _value_at(root, loc[:-2]) if len(loc) >= 2 else None
            name = str(loc[-2]) if len(loc) >= 2 else ""
            if isinstance(owner, dict) and "action" in owner:
                parent[key] = _STAND_IN  # a list of names in an action
            elif name in _ITEM_STAND_INS:
                parent[key] = copy.deepcopy(_ITEM_STAND_INS[name])
            else:
                return False
            return True
        loc = loc[:-1]
        kind = "item"
    return False


_PATTERN_ADAPTER: TypeAdapter[PatternSpec] = TypeAdapter(PatternSpec)


class _Builder:
    def __init__(self, lines: _LineFinder) -> None:
        self.lines = lines
        self.problems: list[Problem] = []
        self.offers: dict[str, Mapping[str, Any]] = {}
        self.pattern_ids: set[str] = set()
        self.type_known = True

    def problem(
        self, path: Sequence[str | int], message: str, pattern_id: str | None = None
    ) -> None:
        self.problems.append(
            Problem(_format_path(path, pattern_id), message, self.lines.line(path))
        )

    def pydantic_problems(
        self,
        error: ValidationError,
        data: Any,
        root_model: type[BaseModel],
        prefix: Sequence[str | int],
        pattern_id: str | None = None,
    ) -> None:
        for path, message in _pydantic_messages(error, data, root_model):
            self.problem([*prefix, *path], message, pattern_id)

    # -- whole file

    def build(self, document: Any) -> Definitions | None:
        if document is None:
            self.problem(
                [],
                "the file is empty; a pattern file starts with 'version: 1' "
                "and lists its 'patterns'",
            )
            return None
        if not isinstance(document, dict):
            kind = "a list" if isinstance(document, list) else f"just {document!r}"
            self.problem(
                [],
                f"the file holds {kind}; a pattern file is a mapping with 'version: 1' and "
                "'patterns' (and optionally 'source', 'offers', 'segments')",
            )
            return None
        try:
            top: PatternFileSpec | None = PatternFileSpec.model_validate(document)
        except ValidationError as error:
            self.pydantic_problems(error, document, PatternFileSpec, [])
            top = _salvage(PatternFileSpec.model_validate, document, error)
            if top is None:
                return None
        assert top is not None
        self.check_offers(top)
        raw_patterns = top.patterns
        specs: list[tuple[PatternSpec, str | None, bool] | None] = []
        raw_ids: list[Any] = []
        for index, raw in enumerate(raw_patterns):
            raw_id = raw.get("id") if isinstance(raw, dict) else None
            pattern_id = raw_id if isinstance(raw_id, str) and raw_id else None
            if pattern_id is not None:
                self.pattern_ids.add(pattern_id)
            specs.append(self.validate_pattern(index, raw, pattern_id))
            raw_ids.append(raw_id)
        seen_ids: dict[str, int] = {}
        for index, entry in enumerate(specs):
            if entry is None or entry[0].id != raw_ids[index]:
                continue
            spec = entry[0]
            if spec.id in seen_ids:
                self.problem(
                    ["patterns", index, "id"],
                    f"duplicate pattern id '{spec.id}' (also patterns[{seen_ids[spec.id]}])",
                    spec.id,
                )
            else:
                seen_ids[spec.id] = index
        segments = self.compile_segments(top.segments)
        patterns = []
        for index, entry in enumerate(specs):
            if entry is not None:
                spec, pattern_id, type_known = entry
                self.type_known = type_known
                compiled = self.compile_pattern(index, spec, raw_patterns[index], pattern_id)
                if compiled is not None:
                    patterns.append(compiled)
        if self.problems:
            return None
        ordered = tuple(_reindex(pattern, position) for position, pattern in enumerate(patterns))
        routes = _routes(ordered)
        return Definitions(
            version=_hash(document),
            source=top.source or DEFAULT_SOURCE,
            offers=self.offers,
            segments=segments,
            patterns=ordered,
            by_id={pattern.id: pattern for pattern in ordered},
            routes=routes,
            raw=document,
            dispatch=build_dispatch(routes),
        )

    def check_offers(self, top: PatternFileSpec) -> None:
        for index, offer in enumerate(top.offers):
            if offer.code.startswith(_STAND_IN):
                continue
            if offer.code in self.offers:
                self.problem(["offers", index, "code"], f"duplicate offer code '{offer.code}'")
            else:
                self.offers[offer.code] = offer.attributes

    def validate_pattern(
        self, index: int, raw: Any, pattern_id: str | None
    ) -> tuple[PatternSpec, str | None, bool] | None:
        """The pattern's spec (salvaged if need be), its id for messages, whether its type is
        known; None when nothing can be checked further."""
        if not isinstance(raw, dict):
            self.problem(
                ["patterns", index],
                "a pattern must be a mapping with at least 'id', 'type' and 'events'",
            )
            return None
        try:
            return _PATTERN_ADAPTER.validate_python(raw), pattern_id, True
        except ValidationError as error:
            self.pydantic_problems(error, raw, PatternSpec, ["patterns", index], pattern_id)
            spec = _salvage(_PATTERN_ADAPTER.validate_python, raw, error)
            if spec is None:
                return None
            return spec, pattern_id, spec.type == raw.get("type")

    def compile_segments(self, segments: Mapping[str, str]) -> dict[str, Expression]:
        compiled = {}
        for name, source in segments.items():
            expression = self.expression(["segments", name], source)
            if expression is not None:
                compiled[name] = expression
        return compiled

    def expression(
        self,
        path: Sequence[str | int],
        source: str,
        pattern_id: str | None = None,
        aliases: Sequence[str] = (),
        later_aliases: Sequence[str] = (),
        context: Sequence[str] = (),
    ) -> Expression | None:
        try:
            return compile_expression(
                source, aliases=aliases, later_aliases=later_aliases, context_names=context
            )
        except ExpressionError as error:
            self.problem(path, str(error), pattern_id)
            return None

    # -- one pattern

    def compile_pattern(
        self, index: int, spec: PatternSpec, raw: Any, pid: str | None
    ) -> Pattern | None:
        before = len(self.problems)
        path: list[str | int] = ["patterns", index]
        mode = spec.window.mode if spec.window else "unbounded"
        if spec.extend_true_state is not None and mode != "time_bound":
            self.problem(
                [*path, "extend_true_state"],
                "only allowed with window mode time_bound (window: {mode: time_bound, "
                "duration: ...})",
                pid,
            )
        if spec.start is not None and spec.end is not None and spec.start >= spec.end:
            self.problem([*path, "end"], "must be later than 'start'", pid)
        if self.type_known:
            if spec.type == "weighted_counter":
                if spec.threshold is None and "threshold" not in raw:
                    self.problem(
                        [*path, "threshold"],
                        "required for weighted_counter: the score to reach",
                        pid,
                    )
                elif spec.threshold is not None and (
                    spec.threshold <= 0 or not math.isfinite(spec.threshold)
                ):
                    self.problem([*path, "threshold"], "must be a number greater than 0", pid)
            elif spec.threshold is not None:
                self.problem(
                    [*path, "threshold"],
                    f"only allowed in weighted_counter patterns (this one is {spec.type})",
                    pid,
                )
        audience = (
            self.expression([*path, "audience"], spec.audience, pid)
            if spec.audience is not None
            else None
        )
        is_sequence = self.type_known and spec.type == "sequence"
        all_aliases = [step.alias for step in spec.events if step.alias] if is_sequence else []
        composing = []
        for position, step in enumerate(spec.events):
            compiled = self.compile_composing(spec, path, position, step, pid)
            if compiled is not None:
                composing.append(compiled)
        suspenders = []
        for position, suspend in enumerate(spec.suspend):
            here: list[str | int] = [*path, "suspend", position]
            if suspend.duration is not None and suspend.duration <= 0:
                self.problem(
                    [*here, "duration"],
                    "must be longer than zero (leave it out to suspend until a reset)",
                    pid,
                )
            matcher = self.matcher(here, suspend, pid, (), ())
            if matcher is not None:
                suspenders.append(Suspender(matcher, suspend.duration))
        alias_names = tuple(dict.fromkeys(all_aliases))
        on_met = self.compile_actions([*path, "on_met"], spec.on_met, pid, alias_names)
        checkpoints = []
        for position, checkpoint in enumerate(spec.checkpoints):
            if checkpoint.after <= 0:
                self.problem(
                    [*path, "checkpoints", position, "after"], "must be longer than zero", pid
                )
            actions = self.compile_actions(
                [*path, "checkpoints", position, "actions"], checkpoint.actions, pid, ()
            )
            checkpoints.append(Checkpoint(checkpoint.after, actions))
        if len(self.problems) > before:
            return None
        return Pattern(
            index=index,
            id=spec.id,
            type=spec.type,
            mode=mode,
            duration=spec.window.duration if spec.window else None,
            extend=spec.extend_true_state or 0,
            start=spec.start,
            end=spec.end,
            audience=audience,
            ignore_repeats=spec.ignore_repeats,
            events=tuple(composing),
            threshold=spec.threshold or 0.0,
            suspenders=tuple(suspenders),
            on_met=on_met,
            checkpoints=tuple(checkpoints),
            bound_attributes=_bound_attributes(spec, alias_names),
            fingerprint=_hash(raw),
        )

    def compile_composing(
        self,
        spec: PatternSpec,
        path: list[str | int],
        position: int,
        step: ComposingEventSpec,
        pid: str | None,
    ) -> Composing | None:
        here = [*path, "events", position]
        before = len(self.problems)
        is_sequence = spec.type == "sequence"
        if self.type_known:
            kind = spec.type
            if step.count is not None and kind != "counter":
                self.problem(
                    [*here, "count"], f"only allowed in counter patterns (this one is {kind})", pid
                )
            if step.weight is not None and kind != "weighted_counter":
                self.problem(
                    [*here, "weight"],
                    f"only allowed in weighted_counter patterns (this one is {kind})",
                    pid,
                )
            for key, value in (
                ("as", step.alias),
                ("min_after", step.min_after),
                ("max_after", step.max_after),
            ):
                if value is not None and not is_sequence:
                    self.problem(
                        [*here, key], f"only allowed in sequence patterns (this one is {kind})", pid
                    )
        else:
            is_sequence = False
        if is_sequence and position == 0:
            for key, value in (("min_after", step.min_after), ("max_after", step.max_after)):
                if value is not None:
                    self.problem(
                        [*here, key],
                        "not allowed on the first step: it has no previous step to measure "
                        "the gap from",
                        pid,
                    )
        if (
            step.min_after is not None
            and step.max_after is not None
            and step.min_after > step.max_after
        ):
            self.problem([*here, "max_after"], "must not be shorter than min_after", pid)
        earlier: list[str] = []
        later: list[str] = []
        if is_sequence:
            earlier = [s.alias for s in spec.events[:position] if s.alias]
            later = [s.alias for s in spec.events[position:] if s.alias and s.alias not in earlier]
            if step.alias is not None:
                if step.alias in earlier:
                    first = next(i for i, s in enumerate(spec.events) if s.alias == step.alias)
                    self.problem(
                        [*here, "as"],
                        f"alias '{step.alias}' is already used by events[{first}]; "
                        "each step needs its own alias",
                        pid,
                    )
                elif (
                    step.alias in _RESERVED_ALIASES
                    or not step.alias.isidentifier()
                    or step.alias.startswith("_")
                ):
                    self.problem(
                        [*here, "as"],
                        "must be a name of letters, digits and '_' (not starting with '_' or a "
                        f"digit), other than {', '.join(_RESERVED_ALIASES)}",
                        pid,
                    )
        matcher = self.matcher(here, step, pid, earlier, later)
        alias_where = None
        where_ok = len(self.problems) == before
        if matcher is not None and where_ok and step.where and is_sequence and earlier:
            _, aliased = _split_where(step.where, set(earlier))
            if aliased:
                alias_where = self.expression([*here, "where"], aliased, pid, earlier, later)
        aggregates, value_attributes = self.compile_aggregates(here, step.aggregate, pid)
        if len(self.problems) > before or matcher is None:
            return None
        count = step.count or 1
        weight = step.weight if step.weight is not None else 1.0
        return Composing(
            index=position,
            label=_label(step),
            matcher=matcher,
            count=count,
            weight=weight,
            alias=step.alias if is_sequence else None,
            alias_where=alias_where,
            min_after=step.min_after,
            max_after=step.max_after,
            aggregates=aggregates,
            value_attributes=value_attributes,
            keep_last=_keep_last(spec, count, weight) if not aggregates else None,
        )

    def compile_aggregates(
        self, here: list[str | int], aggregates: list[AggregateSpec], pid: str | None
    ) -> tuple[tuple[Aggregate, ...], tuple[str, ...]]:
        attributes: list[str] = []
        compiled = []
        for position, aggregate in enumerate(aggregates):
            if not math.isfinite(aggregate.value):
                self.problem(
                    [*here, "aggregate", position, "value"], "must be a finite number", pid
                )
            if aggregate.attribute not in attributes:
                attributes.append(aggregate.attribute)
            compiled.append(
                Aggregate(
                    aggregate.fn,
                    aggregate.attribute,
                    aggregate.op,
                    aggregate.value,
                    attributes.index(aggregate.attribute) + 1,
                )
            )
        return tuple(compiled), tuple(attributes)

    def matcher(
        self,
        here: list[str | int],
        ref: ComposingEventSpec | SuspendSpec,
        pid: str | None,
        earlier: Sequence[str],
        later: Sequence[str],
    ) -> Matcher | None:
        filters: list[tuple[str, Any]] = []
        name = ref.event
        if ref.event in CATEGORY_MACROS:
            name = CATEGORY_MACROS[ref.event]
            if ref.attribute is None:
                self.problem(
                    [*here, "attribute"],
                    f"required with {ref.event}: the offer attribute to look at "
                    "(e.g. attribute: category)",
                    pid,
                )
            elif ref.value is None:
                self.problem(
                    [*here, "value"],
                    f"required with {ref.event}: the value the offer attribute must have",
                    pid,
                )
            else:
                filters.append((ref.attribute, ref.value))
            if ref.offer is not None:
                self.problem(
                    [*here, "offer"],
                    f"not allowed with {ref.event}, which matches offers by attribute/value; "
                    f"use {CATEGORY_MACROS[ref.event]} for one offer",
                    pid,
                )
        else:
            for key in ("attribute", "value"):
                if getattr(ref, key) is not None:
                    self.problem(
                        [*here, key],
                        "only allowed with the macros offerContactedInCategory, "
                        "offerAcceptedInCategory and offerRejectedInCategory",
                        pid,
                    )
            if ref.offer is not None:
                if ref.event not in MACRO_EVENTS:
                    self.problem(
                        [*here, "offer"],
                        f"only allowed with the macros {', '.join(MACRO_EVENTS)}",
                        pid,
                    )
                elif ref.offer not in self.offers:
                    self.problem(
                        [*here, "offer"],
                        f"unknown offer '{ref.offer}' (not in the file's 'offers' catalogue)",
                        pid,
                    )
                filters.append(("offer", ref.offer))
        where = None
        if ref.where is not None:
            plain, _ = _split_where(ref.where, set(earlier))
            full = self.expression([*here, "where"], ref.where, pid, earlier, later)
            if full is not None and plain is not None:
                where = self.expression([*here, "where"], plain, pid, earlier, later)
        return Matcher(name, tuple(filters), where)

    def compile_actions(
        self,
        path: list[str | int],
        specs: Sequence[Any],
        pid: str | None,
        aliases: tuple[str, ...],
    ) -> tuple[Action, ...]:
        actions = []
        for position, spec in enumerate(specs):
            action = self.compile_action([*path, position], spec, pid, aliases)
            if action is not None:
                actions.append(action)
        return tuple(actions)

    def compile_action(
        self, here: list[str | int], spec: Any, pid: str | None, aliases: tuple[str, ...]
    ) -> Action | None:
        fields: dict[str, Any] = {}

        def template(key: str, value: Any) -> Template:
            try:
                return compile_template(value, aliases)
            except TemplateError as error:
                self.problem([*here, key, *error.path], error.reason, pid)
                return None

        def known_offer(path: list[str | int], code: str | None) -> None:
            if code is not None and not code.startswith(_STAND_IN) and code not in self.offers:
                self.problem(
                    [*here, *path],
                    f"unknown offer '{code}' (not in the file's 'offers' catalogue)",
                    pid,
                )

        if isinstance(spec, PublishAction):
            known_offer(["offer"], spec.offer)
            fields = {
                "topic": spec.topic,
                "key": template("key", spec.key),
                "value": template("value", spec.value),
                "offer": spec.offer,
            }
        elif isinstance(spec, LogContactAction | LogAcceptAction | LogRejectAction):
            known_offer(["offer"], spec.offer)
            fields = {"offer": spec.offer}
        elif isinstance(spec, SetAttributeAction):
            fields = {
                "name": spec.name,
                "value": self.expression(
                    [*here, "value"], spec.value, pid, aliases, (), CONTEXT_NAMES
                ),
            }
        elif isinstance(spec, TriggerEventsAction):
            fields = {
                "events": tuple(spec.events),
                "attributes": template("attributes", spec.attributes or {}),
            }
        elif isinstance(spec, SuppressOffersAction):
            for position, code in enumerate(spec.offers or ()):
                known_offer(["offers", position], code)
            if spec.duration is not None and spec.duration <= 0:
                self.problem(
                    [*here, "duration"],
                    "must be longer than zero (leave it out to suppress for good)",
                    pid,
                )
            fields = {
                "offers": tuple(spec.offers) if spec.offers is not None else None,
                "where": (
                    self.expression([*here, "where"], spec.where, pid)
                    if spec.where is not None
                    else None
                ),
                "duration": spec.duration,
            }
        elif isinstance(spec, QualifySegmentsAction):
            fields = {"segments": tuple(spec.segments)}
        elif isinstance(spec, ResegmentAction):
            fields = {}
        elif isinstance(spec, ResetPatternAction):
            if spec.target is not None and spec.target not in self.pattern_ids:
                self.problem(
                    [*here, "target"],
                    f"unknown pattern '{spec.target}' (no pattern in this file has that id)",
                    pid,
                )
            fields = {"target": spec.target}
        delay = getattr(spec, "delay", None)
        at = getattr(spec, "at", None)
        return Action(spec.action, delay, at, fields)


# --------------------------------------------------------------------------- helpers


def _hash(value: Any) -> str:
    canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(canonical).hexdigest()[:16]


def _label(step: ComposingEventSpec) -> str:
    label = step.event
    if step.offer:
        label += f"[{step.offer}]"
    if step.attribute is not None:
        label += f"[{step.attribute}={step.value}]"
    if step.where:
        label += f" where {step.where}"
    return label


def _keep_last(spec: PatternSpec, count: int, weight: float) -> int | None:
    """Without aggregates, older occurrences beyond this many cannot change the condition."""
    if spec.type == "match_all":
        return 1
    if spec.type == "counter":
        return count
    if spec.type == "weighted_counter" and spec.threshold and math.isfinite(spec.threshold):
        return max(1, math.ceil(spec.threshold / weight))
    return 1


def _split_where(source: str, aliases: set[str]) -> tuple[str | None, str | None]:
    """Split top-level `and` conjuncts into (alias-free part, alias-naming part)."""
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return source, None
    is_and = isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And)
    conjuncts = tree.values if isinstance(tree, ast.BoolOp) and is_and else [tree]
    plain: list[str] = []
    aliased: list[str] = []
    for conjunct in conjuncts:
        names = {node.id for node in ast.walk(conjunct) if isinstance(node, ast.Name)}
        (aliased if names & aliases else plain).append(f"({ast.unparse(conjunct)})")
    return (" and ".join(plain) or None, " and ".join(aliased) or None)


def _bound_attributes(spec: PatternSpec, aliases: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Which attributes of each alias later `where`s and `on_met` templates read."""
    if not aliases:
        return {}
    wanted: dict[str, set[str]] = {alias: set() for alias in aliases}
    sources = [step.where for step in spec.events if step.where]
    sources.extend(_template_sources([action.model_dump(by_alias=True) for action in spec.on_met]))
    # set_attribute's value is an expression, not a template, and may read aliases too
    sources.extend(action.value for action in spec.on_met if isinstance(action, SetAttributeAction))
    for source in sources:
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in wanted
            ):
                wanted[node.value.id].add(node.attr)
    return {alias: tuple(sorted(attrs)) for alias, attrs in wanted.items() if attrs}


def _template_sources(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, str):
        start = value.find("${")
        while start != -1:
            end = value.find("}", start)
            if end == -1:
                break
            found.append(value[start + 2 : end])
            start = value.find("${", end)
    elif isinstance(value, list):
        for item in value:
            found.extend(_template_sources(item))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(_template_sources(item))
    return found


def _reindex(pattern: Pattern, position: int) -> Pattern:
    if pattern.index == position:
        return pattern
    from dataclasses import replace

    return replace(pattern, index=position)


def _routes(patterns: tuple[Pattern, ...]) -> dict[str, tuple[Route, ...]]:
    names: dict[str, list[Route]] = {}
    for pattern in patterns:
        for name in dict.fromkeys(
            [step.matcher.name for step in pattern.events]
            + [suspender.matcher.name for suspender in pattern.suspenders]
        ):
            names.setdefault(name, []).append(
                Route(
                    pattern,
                    tuple(step for step in pattern.events if step.matcher.name == name),
                    tuple(s for s in pattern.suspenders if s.matcher.name == name),
                )
            )
    return {name: tuple(routes) for name, routes in names.items()}


__all__ = [
    "MAX_CHAIN_DEPTH",
    "Action",
    "Aggregate",
    "Checkpoint",
    "Composing",
    "Definitions",
    "FieldRef",
    "Matcher",
    "Pattern",
    "PatternFileError",
    "Problem",
    "Route",
    "Suspender",
    "TimestampRef",
    "load_definitions",
    "load_definitions_file",
]
