"""The pattern file as written by marketers: pydantic v2 models (SPEC section 2).

These models only describe and validate structure. `definitions.py` turns a
validated file into the compiled objects the evaluator runs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .timeutil import parse_duration, parse_timestamp

PATTERN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

Duration = Annotated[int, BeforeValidator(parse_duration)]
"""Microseconds."""
Timestamp = Annotated[int, BeforeValidator(parse_timestamp)]
"""Microseconds since the epoch."""

PatternType = Literal["match_all", "counter", "weighted_counter", "sequence"]
AggregateFn = Literal["sum", "min", "max", "avg"]
AggregateOp = Literal[">=", ">", "<=", "<", "==", "!="]
TimestampUnit = Literal["s", "ms", "us", "ns", "iso"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FieldRef(_Strict):
    field: str = Field(min_length=1)


class TimestampRef(_Strict):
    field: str = Field(min_length=1)
    unit: TimestampUnit = "ms"
    """Unit of numeric timestamps; strings are always read as ISO-8601."""


class SourceSpec(_Strict):
    """Maps records of an existing topic onto events (SPEC section 1, input mapping)."""

    topic: str = Field(default="eventpatterns-events", min_length=1)
    user_id: str = Field(default="user_id", min_length=1)
    event: str | FieldRef = FieldRef(field="event")
    timestamp: TimestampRef | None = TimestampRef(field="timestamp", unit="ms")
    attributes: Literal["*"] | FieldRef = FieldRef(field="attributes")


DEFAULT_SOURCE = SourceSpec()
"""Events in the standard shape of SPEC section 1 (no `source:` block)."""


class OfferSpec(_Strict):
    code: str = Field(min_length=1)
    attributes: dict[str, Any] = {}


class AggregateSpec(_Strict):
    fn: AggregateFn
    attribute: str = Field(min_length=1)
    op: AggregateOp
    value: float = Field(allow_inf_nan=False)


class _ActionBase(_Strict):
    delay: Duration | None = None
    at: Timestamp | None = None

    @model_validator(mode="after")
    def _delay_or_at(self) -> _ActionBase:
        if self.delay is not None and self.at is not None:
            raise ValueError("give either 'delay' or 'at', not both")
        if self.delay is not None and self.delay < 0:
            raise ValueError("'delay' must not be negative")
        return self


class _Immediate(_Strict):
    """Actions that SPEC section 5 forbids to delay."""

    delay: Any = None
    at: Any = None

    @field_validator("delay", "at")
    @classmethod
    def _not_delayable(cls, value: Any) -> Any:
        if value is not None:
            name = cls.model_fields["action"].annotation
            kind = get_args(name)[0] if get_args(name) else "this action"
            raise ValueError(
                f"not allowed: {kind} always takes effect at once (no 'delay' or 'at')"
            )
        return value


class PublishAction(_ActionBase):
    action: Literal["publish"]
    topic: str = Field(min_length=1)
    key: Any = None
    value: Any
    offer: str | None = None


class LogContactAction(_ActionBase):
    action: Literal["log_contact"]
    offer: str = Field(min_length=1)


class LogAcceptAction(_ActionBase):
    action: Literal["log_accept"]
    offer: str = Field(min_length=1)


class LogRejectAction(_ActionBase):
    action: Literal["log_reject"]
    offer: str = Field(min_length=1)


def _expression_text(value: Any) -> Any:
    """A bare number or true/false is the expression of that literal."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return repr(value)
    return value


class SetAttributeAction(_ActionBase):
    action: Literal["set_attribute"]
    name: str = Field(min_length=1)
    value: Annotated[str, BeforeValidator(_expression_text)] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not IDENTIFIER.match(name):
            raise ValueError("must be a name of letters, digits and '_', starting with a letter")
        return name


class TriggerEventsAction(_ActionBase):
    action: Literal["trigger_events"]
    events: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    attributes: dict[str, Any] | None = None


class SuppressOffersAction(_Immediate):
    action: Literal["suppress_offers"]
    offers: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    where: str | None = None
    duration: Duration | None = None

    @model_validator(mode="after")
    def _offers_or_where(self) -> SuppressOffersAction:
        if self.offers is not None and self.where is not None:
            raise ValueError("give either 'offers' or 'where', not both")
        if self.offers is None and self.where is None:
            raise ValueError(
                "needs 'offers' (a list of offer codes) or 'where' (a test on the offers' "
                "attributes)"
            )
        return self


class QualifySegmentsAction(_Immediate):
    action: Literal["qualify_segments"]
    segments: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)


class ResegmentAction(_ActionBase):
    action: Literal["resegment"]


class ResetPatternAction(_ActionBase):
    action: Literal["reset_pattern"]
    target: str | None = None


ActionSpec = Annotated[
    PublishAction
    | LogContactAction
    | LogAcceptAction
    | LogRejectAction
    | SetAttributeAction
    | TriggerEventsAction
    | SuppressOffersAction
    | QualifySegmentsAction
    | ResegmentAction
    | ResetPatternAction,
    Field(discriminator="action"),
]
ACTION_TYPES = frozenset(
    {
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
)


class _EventRef(_Strict):
    """An event name or macro, with the macro's offer / attribute filter (SPEC section 6)."""

    event: str = Field(min_length=1)
    where: str | None = None
    offer: str | None = None
    attribute: str | None = None
    value: Any = None


class ComposingEventSpec(_EventRef):
    count: int | None = Field(default=None, ge=1)
    weight: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    alias: str | None = Field(default=None, alias="as")
    min_after: Duration | None = None
    max_after: Duration | None = None
    aggregate: list[AggregateSpec] = []


class SuspendSpec(_EventRef):
    duration: Duration | None = None


class CheckpointSpec(_Strict):
    after: Duration
    actions: list[ActionSpec] = Field(min_length=1)


class WindowSpec(_Strict):
    mode: Literal["rolling", "time_bound"]
    duration: Duration

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be longer than zero")
        return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


class PatternSpec(_Strict):
    id: str
    type: PatternType
    window: WindowSpec | None = None
    extend_true_state: Duration | None = None
    start: Timestamp | None = None
    end: Timestamp | None = None
    audience: str | None = None
    ignore_repeats: str | None = None
    events: list[ComposingEventSpec] = Field(min_length=1)
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    suspend: Annotated[list[SuspendSpec], BeforeValidator(_one_or_many)] = []
    on_met: list[ActionSpec] = []
    checkpoints: list[CheckpointSpec] = []

    @field_validator("id")
    @classmethod
    def _id_chars(cls, value: str) -> str:
        if not PATTERN_ID.match(value):
            raise ValueError(
                "may contain only letters, digits, '_', '.' and '-' (no spaces), e.g. cart_abandon"
            )
        return value


class PatternFileSpec(_Strict):
    """Top level; `patterns` is validated one by one so that every problem is reported."""

    version: Literal[1]
    source: SourceSpec | None = None
    offers: list[OfferSpec] = []
    segments: dict[str, str] = {}
    patterns: list[Any] = []
