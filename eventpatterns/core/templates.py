"""JSON templates for action fields (SPEC section 5).

A string that is exactly `${expr}` takes the value and type of the expression;
`${...}` inside a longer string is formatted as text. Templates are compiled at
load time so that rendering in the hot path is a tree walk of prepared parts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .expressions import MISSING, Expression, ExpressionError, compile_expression

CONTEXT_NAMES = ("user_id", "pattern", "now_ns", "now_ms", "now")
_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
_WHOLE = re.compile(r"^\$\{([^{}]*)\}$")


@dataclass(frozen=True, slots=True)
class Env:
    """What names in expressions and templates can see when an action takes effect."""

    event: Mapping[str, Any]
    profile: Mapping[str, Any]
    aliases: Mapping[str, Mapping[str, Any]]
    context: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Text:
    parts: tuple[str | Expression, ...]


Template = Any
"""A literal, an Expression, a _Text, or a list/dict of templates."""


class TemplateError(ExpressionError):
    """A template that cannot be compiled; `path` leads to the offending string inside it."""

    def __init__(self, path: tuple[str | int, ...], reason: str) -> None:
        self.path = path
        self.reason = reason
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
        super().__init__(f"{where.lstrip('.')}: {reason}" if where else reason)


def compile_template(value: Any, aliases: tuple[str, ...] = ()) -> Template:
    """Raises TemplateError naming the offending placeholder and where it is."""
    return _compile(value, aliases, ())


def _compile(value: Any, aliases: tuple[str, ...], path: tuple[str | int, ...]) -> Template:
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole:
            return _compile_placeholder(whole.group(1), aliases, path)
        if "${" not in value:
            return value
        parts: list[str | Expression] = []
        position = 0
        for match in _PLACEHOLDER.finditer(value):
            if match.start() > position:
                parts.append(value[position : match.start()])
            parts.append(_compile_placeholder(match.group(1), aliases, path))
            position = match.end()
        if position < len(value):
            parts.append(value[position:])
        for part in parts:
            if isinstance(part, str) and "${" in part:
                raise TemplateError(
                    path, f"'${{' without a matching '}}' in {value!r}; write ${{name}}"
                )
        return _Text(tuple(parts))
    if isinstance(value, list):
        return [_compile(item, aliases, (*path, index)) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {str(key): _compile(item, aliases, (*path, str(key))) for key, item in value.items()}
    return value


def _compile_placeholder(
    source: str, aliases: tuple[str, ...], path: tuple[str | int, ...]
) -> Expression:
    try:
        return compile_expression(source, aliases=aliases, context_names=CONTEXT_NAMES)
    except ExpressionError as error:
        raise TemplateError(path, f"in '${{{source}}}': {error}") from None


def render(template: Template, env: Env) -> Any:
    if isinstance(template, Expression):
        return _json_safe(template.evaluate(env.event, env.profile, env.aliases, env.context))
    if isinstance(template, _Text):
        return "".join(
            part
            if isinstance(part, str)
            else _as_text(part.evaluate(env.event, env.profile, env.aliases, env.context))
            for part in template.parts
        )
    if isinstance(template, list):
        return [render(item, env) for item in template]
    if isinstance(template, dict):
        return {key: render(item, env) for key, item in template.items()}
    return template


def _json_safe(value: Any) -> Any:
    return None if value is MISSING else value


def _as_text(value: Any) -> str:
    if value is MISSING or value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)
