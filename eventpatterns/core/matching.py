"""The test an event meets on arrival to count for a pattern's event (`Matcher`).

A module of its own so that it is compiled with the evaluator that calls it for
every event and pattern (`eventpatterns.compiled`); the pattern file's model
(`definitions.py`, pydantic) stays interpreted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .expressions import Expression


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
