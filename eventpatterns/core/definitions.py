"""Load, validate and compile a pattern file (SPEC sections 2, 3, 5, 6).

A file is accepted whole or refused whole: every problem is collected, each
named by file, line, pattern id and field path, before anything is refused.
The compiled `Definitions` are immutable and shared by every user's state.
"""

from __future__ import annotations

import ast
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml
from pydantic import TypeAdapter, ValidationError

from .expressions import Expression, ExpressionError, compile_expression
from .spec import (
    ACTION_TYPES,
    AggregateSpec,
    ComposingEventSpec,
    FieldRef,
    LogAcceptAction,
    LogContactAction,
    LogRejectAction,
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
)
from .templates import CONTEXT_NAMES, Template, compile_template

MAX_CHAIN_DEPTH = 8
MACRO_EVENTS = ("offerContacted", "offerAccepted", "offerRejected")
CATEGORY_MACROS = {f"{name}InCategory": name for name in MACRO_EVENTS}


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
class Matcher:
    """Name, macro filters and the alias-free part of `where`: the test made on arrival."""

    name: str
    filters: tuple[tuple[str, Any], ...]
    where: Expression | None

    def matches(self, attributes: Mapping[str, Any], profile: Mapping[str, Any]) -> bool:
        for key, expected in self.filters:
            if attributes.get(key) != expected:
                return False
        return self.where is None or self.where.test(attributes, profile)


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

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for pattern in self.patterns:
            key = f"{pattern.type}/{pattern.mode}"
            kinds[key] = kinds.get(key, 0) + 1
        described = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        return (
            f"{len(self.patterns)} patterns ({described or 'none'}), {len(self.offers)} offers, "
            f"{len(self.segments)} segments, source topic {self.source.topic}, "
            f"version {self.version}"
        )


# --------------------------------------------------------------------------- loading


def load_definitions_file(path: str) -> Definitions:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise PatternFileError([Problem("", f"cannot read the file: {error.strerror}")], path)
    return load_definitions(text, filename=path)


def load_definitions(text: str, filename: str | None = None) -> Definitions:
    try:
        document = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise PatternFileError([Problem("", f"not valid YAML: {error}", line)], filename) from None
    lines = _LineFinder(root)
    builder = _Builder(lines)
    definitions = builder.build(document)
    if builder.problems:
        raise PatternFileError(builder.problems, filename)
    assert definitions is not None
    return definitions


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
                    if key.value == part:
                        found = value
                        best = key.start_mark.line + 1
                        break
                node = found
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                node = node.value[part] if 0 <= part < len(node.value) else None
                if node is not None:
                    best = node.start_mark.line + 1
            else:
                node = None
            if node is None:
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
            text += f".{part}" if text else part
    return text


def _friendly(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    message = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def _clean_loc(loc: Sequence[Any]) -> list[str | int]:
    """Drop pydantic's union-branch tags (`publish`, `str`, `FieldRef`...) from a location."""
    cleaned: list[str | int] = []
    for position, part in enumerate(loc):
        previous = loc[position - 1] if position else None
        if isinstance(part, str) and isinstance(previous, int) and part in ACTION_TYPES:
            continue
        if isinstance(part, str) and (
            part in ("str", "FieldRef", "TimestampRef", "list[str]", "function-before[...]")
            or part.startswith(("function-", "literal[", "list[", "dict["))
        ):
            continue
        cleaned.append(part)
    return cleaned


_PATTERN_ADAPTER: TypeAdapter[PatternSpec] = TypeAdapter(PatternSpec)


class _Builder:
    def __init__(self, lines: _LineFinder) -> None:
        self.lines = lines
        self.problems: list[Problem] = []
        self.offers: dict[str, Mapping[str, Any]] = {}
        self.pattern_ids: set[str] = set()

    def problem(
        self, path: Sequence[str | int], message: str, pattern_id: str | None = None
    ) -> None:
        self.problems.append(
            Problem(_format_path(path, pattern_id), message, self.lines.line(path))
        )

    def pydantic_problems(
        self, error: ValidationError, prefix: Sequence[str | int], pattern_id: str | None = None
    ) -> None:
        seen: set[tuple[str, str]] = set()
        for item in error.errors():
            path = [*prefix, *_clean_loc(item["loc"])]
            key = (_format_path(path, pattern_id), _friendly(item))
            if key not in seen:
                seen.add(key)
                self.problem(path, key[1], pattern_id)

    # -- whole file

    def build(self, document: Any) -> Definitions | None:
        if not isinstance(document, dict):
            self.problem([], "a pattern file is a mapping with 'version: 1' and 'patterns'")
            return None
        try:
            top = PatternFileSpec.model_validate(document)
        except ValidationError as error:
            self.pydantic_problems(error, [])
            return None
        self.offers = {offer.code: offer.attributes for offer in top.offers}
        if len(self.offers) != len(top.offers):
            self.problem(["offers"], "offer codes must be unique")
        raw_patterns = top.patterns
        specs: list[PatternSpec | None] = []
        for index, raw in enumerate(raw_patterns):
            pattern_id = raw.get("id") if isinstance(raw, dict) else None
            try:
                specs.append(_PATTERN_ADAPTER.validate_python(raw))
            except ValidationError as error:
                self.pydantic_problems(
                    error, ["patterns", index], pattern_id if isinstance(pattern_id, str) else None
                )
                specs.append(None)
        for index, spec in enumerate(specs):
            if spec is None:
                continue
            if spec.id in self.pattern_ids:
                self.problem(["patterns", index, "id"], f"duplicate pattern id '{spec.id}'", spec.id)
            self.pattern_ids.add(spec.id)
        segments = self.compile_segments(top.segments)
        patterns = []
        for index, spec in enumerate(specs):
            if spec is not None:
                compiled = self.compile_pattern(index, spec, raw_patterns[index])
                if compiled is not None:
                    patterns.append(compiled)
        if self.problems:
            return None
        ordered = tuple(
            _reindex(pattern, position) for position, pattern in enumerate(patterns)
        )
        return Definitions(
            version=_hash(document),
            source=top.source or SourceSpec(),
            offers=self.offers,
            segments=segments,
            patterns=ordered,
            by_id={pattern.id: pattern for pattern in ordered},
            routes=_routes(ordered),
            raw=document,
        )

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

    def compile_pattern(self, index: int, spec: PatternSpec, raw: Any) -> Pattern | None:
        before = len(self.problems)
        path: list[str | int] = ["patterns", index]
        pid = spec.id
        mode = spec.window.mode if spec.window else "unbounded"
        if spec.extend_true_state is not None and mode != "time_bound":
            self.problem([*path, "extend_true_state"], "only allowed with window mode time_bound", pid)
        if spec.start is not None and spec.end is not None and spec.start >= spec.end:
            self.problem([*path, "end"], "must be later than 'start'", pid)
        if spec.type == "weighted_counter":
            if spec.threshold is None:
                self.problem([*path, "threshold"], "required for weighted_counter", pid)
            elif spec.threshold <= 0 or not math.isfinite(spec.threshold):
                self.problem([*path, "threshold"], "must be a positive number", pid)
        elif spec.threshold is not None:
            self.problem([*path, "threshold"], "only allowed for weighted_counter", pid)
        audience = (
            self.expression([*path, "audience"], spec.audience, pid) if spec.audience else None
        )
        all_aliases = [step.alias for step in spec.events if step.alias]
        composing = []
        for position, step in enumerate(spec.events):
            compiled = self.compile_composing(spec, path, position, step, all_aliases)
            if compiled is not None:
                composing.append(compiled)
        suspenders = []
        for position, suspend in enumerate(spec.suspend):
            matcher = self.matcher([*path, "suspend", position], suspend, pid, (), ())
            if matcher is not None:
                suspenders.append(Suspender(matcher, suspend.duration))
        alias_names = tuple(all_aliases) if spec.type == "sequence" else ()
        on_met = self.compile_actions([*path, "on_met"], spec.on_met, pid, alias_names)
        checkpoints = []
        for position, checkpoint in enumerate(spec.checkpoints):
            if checkpoint.after <= 0:
                self.problem([*path, "checkpoints", position, "after"], "must be longer than zero", pid)
            actions = self.compile_actions(
                [*path, "checkpoints", position, "actions"], checkpoint.actions, pid, ()
            )
            checkpoints.append(Checkpoint(checkpoint.after, actions))
        if len(self.problems) > before:
            return None
        return Pattern(
            index=index,
            id=pid,
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
        all_aliases: list[str],
    ) -> Composing | None:
        pid = spec.id
        here = [*path, "events", position]
        before = len(self.problems)
        is_sequence = spec.type == "sequence"
        if step.count is not None and spec.type != "counter":
            self.problem([*here, "count"], "only allowed in counter patterns", pid)
        if step.weight is not None and spec.type != "weighted_counter":
            self.problem([*here, "weight"], "only allowed in weighted_counter patterns", pid)
        for key, value in (("as", step.alias), ("min_after", step.min_after), ("max_after", step.max_after)):
            if value is not None and not is_sequence:
                self.problem([*here, key], "only allowed in sequence patterns", pid)
        if is_sequence and position == 0 and (step.min_after is not None or step.max_after is not None):
            self.problem([*here], "the first step has no previous step to measure a gap from", pid)
        if (
            step.min_after is not None
            and step.max_after is not None
            and step.min_after > step.max_after
        ):
            self.problem([*here, "max_after"], "must not be shorter than min_after", pid)
        for key, value in (("min_after", step.min_after), ("max_after", step.max_after)):
            if value is not None and value < 0:
                self.problem([*here, key], "must not be negative", pid)
        earlier: list[str] = []
        later: list[str] = []
        if is_sequence:
            earlier = [s.alias for s in spec.events[:position] if s.alias]
            later = [s.alias for s in spec.events[position:] if s.alias]
            if step.alias is not None:
                if step.alias in earlier:
                    self.problem([*here, "as"], f"alias '{step.alias}' is used by an earlier step", pid)
                elif step.alias in ("event", "profile") or not step.alias.isidentifier() or step.alias.startswith("_"):
                    self.problem([*here, "as"], "must be an identifier other than 'event' or 'profile'", pid)
        matcher = self.matcher(here, step, pid, earlier, later)
        alias_where = None
        if matcher is not None and step.where and is_sequence and earlier:
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
            alias=step.alias,
            alias_where=alias_where,
            min_after=step.min_after,
            max_after=step.max_after,
            aggregates=aggregates,
            value_attributes=value_attributes,
            keep_last=_keep_last(spec, count, weight) if not aggregates else None,
        )

    def compile_aggregates(
        self, here: list[str | int], aggregates: list[AggregateSpec], pid: str
    ) -> tuple[tuple[Aggregate, ...], tuple[str, ...]]:
        attributes: list[str] = []
        compiled = []
        for aggregate in aggregates:
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
        pid: str,
        earlier: Sequence[str],
        later: Sequence[str],
    ) -> Matcher | None:
        filters: list[tuple[str, Any]] = []
        name = ref.event
        if ref.event in CATEGORY_MACROS:
            name = CATEGORY_MACROS[ref.event]
            if ref.attribute is None:
                self.problem([*here, "attribute"], f"required with {ref.event}", pid)
            elif ref.value is None:
                self.problem([*here, "value"], f"required with {ref.event}", pid)
            else:
                filters.append((ref.attribute, ref.value))
            if ref.offer is not None:
                self.problem([*here, "offer"], f"not allowed with {ref.event}; use attribute/value", pid)
        else:
            if ref.attribute is not None or ref.value is not None:
                self.problem(
                    [*here, "attribute"],
                    "attribute/value are only for offer*InCategory macros",
                    pid,
                )
            if ref.offer is not None:
                if ref.event not in MACRO_EVENTS:
                    self.problem([*here, "offer"], f"only allowed with {', '.join(MACRO_EVENTS)}", pid)
                elif ref.offer not in self.offers:
                    self.problem([*here, "offer"], f"unknown offer '{ref.offer}'", pid)
                filters.append(("offer", ref.offer))
        where = None
        if ref.where:
            plain, _ = _split_where(ref.where, set(earlier))
            full = self.expression([*here, "where"], ref.where, pid, earlier, later)
            if full is not None and plain is not None:
                where = self.expression([*here, "where"], plain, pid, earlier, later)
        return Matcher(name, tuple(filters), where)

    def compile_actions(
        self, path: list[str | int], specs: Sequence[Any], pid: str, aliases: tuple[str, ...]
    ) -> tuple[Action, ...]:
        actions = []
        for position, spec in enumerate(specs):
            action = self.compile_action([*path, position], spec, pid, aliases)
            if action is not None:
                actions.append(action)
        return tuple(actions)

    def compile_action(
        self, here: list[str | int], spec: Any, pid: str, aliases: tuple[str, ...]
    ) -> Action | None:
        fields: dict[str, Any] = {}

        def template(key: str, value: Any) -> Template:
            try:
                return compile_template(value, aliases)
            except ExpressionError as error:
                self.problem([*here, key], str(error), pid)
                return None

        def known_offer(key: str, code: str | None) -> None:
            if code is not None and code not in self.offers:
                self.problem([*here, key], f"unknown offer '{code}' (not in the offer catalogue)", pid)

        if isinstance(spec, PublishAction):
            known_offer("offer", spec.offer)
            fields = {
                "topic": spec.topic,
                "key": template("key", spec.key),
                "value": template("value", spec.value),
                "offer": spec.offer,
            }
        elif isinstance(spec, LogContactAction | LogAcceptAction | LogRejectAction):
            known_offer("offer", spec.offer)
            fields = {"offer": spec.offer}
        elif isinstance(spec, SetAttributeAction):
            fields = {
                "name": spec.name,
                "value": self.expression(
                    [*here, "value"], spec.value, pid, aliases, (), CONTEXT_NAMES
                ),
            }
        elif isinstance(spec, TriggerEventsAction):
            fields = {"events": tuple(spec.events), "attributes": template("attributes", spec.attributes or {})}
        elif isinstance(spec, SuppressOffersAction):
            for code in spec.offers or ():
                known_offer("offers", code)
            fields = {
                "offers": tuple(spec.offers) if spec.offers is not None else None,
                "where": self.expression([*here, "where"], spec.where, pid) if spec.where else None,
                "duration": spec.duration,
            }
        elif isinstance(spec, QualifySegmentsAction):
            fields = {"segments": tuple(spec.segments)}
        elif isinstance(spec, ResegmentAction):
            fields = {}
        elif isinstance(spec, ResetPatternAction):
            if spec.target is not None and spec.target not in self.pattern_ids:
                self.problem([*here, "target"], f"unknown pattern '{spec.target}'", pid)
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
    if spec.type == "weighted_counter" and spec.threshold:
        return max(1, math.ceil(spec.threshold / weight))
    return 1


def _split_where(source: str, aliases: set[str]) -> tuple[str | None, str | None]:
    """Split top-level `and` conjuncts into (alias-free part, alias-naming part)."""
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return source, None
    conjuncts = tree.values if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And) else [tree]
    plain, aliased = [], []
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
    everything = set()
    for source in sources:
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id in wanted:
                    wanted[node.value.id].add(node.attr)
    del everything
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
