"""Events and their decoding from raw records (SPEC section 1).

Decoding is pure and shared by `replay`, the HTTP API and the stream agent, so
that a record is judged bad (and why) the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from .spec import DEFAULT_SOURCE, FieldRef, SourceSpec, TimestampRef
from .timeutil import MAX_US, MIN_US, TimeFormatError, parse_timestamp

MAX_EVENT_BYTES = 1 << 20
_UNIT_TO_US = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}


class BadEvent(ValueError):
    """A record that is not an event; the message is the reason given to the user."""


@dataclass(slots=True)
class Event:
    user_id: str
    name: str
    time: int
    """Microseconds since the epoch."""
    attributes: dict[str, Any] = field(default_factory=dict)
    depth: int = 0
    """How many actions posted this event in a chain (0: from outside)."""

    def to_json(self) -> dict[str, Any]:
        from .timeutil import format_us

        return {
            "user_id": self.user_id,
            "event": self.name,
            "timestamp": format_us(self.time),
            "attributes": self.attributes,
        }


def decode_event(
    raw: bytes | str,
    source: SourceSpec = DEFAULT_SOURCE,
    received_at: int | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
) -> Event:
    """Decode one JSON record; `received_at` stands in for an absent timestamp."""
    if len(raw) > max_bytes:
        raise BadEvent(f"event too large ({len(raw)} bytes; the limit is {max_bytes})")
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadEvent(f"not JSON: {error}") from None
    return event_from_record(record, source, received_at)


def event_from_record(
    record: Any, source: SourceSpec = DEFAULT_SOURCE, received_at: int | None = None
) -> Event:
    if not isinstance(record, dict):
        raise BadEvent(f"an event is a JSON object, got {type(record).__name__}")
    user_id = record.get(source.user_id)
    if source is not DEFAULT_SOURCE and _is_integer(user_id):
        user_id = str(user_id)  # existing topics often carry numeric ids; mapped, they are read
    if not isinstance(user_id, str) or not user_id:
        raise BadEvent(_field_problem(source.user_id, user_id, "a non-empty string"))
    name = _event_name(record, source)
    time = _event_time(record, source.timestamp, received_at)
    attributes = _attributes(record, source)
    return Event(user_id, name, time, attributes)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_problem(name: str, value: Any, wanted: str) -> str:
    if value is None:
        return f"'{name}' is missing (must be {wanted})"
    return f"'{name}' must be {wanted}, got {type(value).__name__} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _event_name(record: dict[str, Any], source: SourceSpec) -> str:
    if isinstance(source.event, str):
        return source.event
    assert isinstance(source.event, FieldRef)
    name = record.get(source.event.field)
    if not isinstance(name, str) or not name:
        raise BadEvent(_field_problem(source.event.field, name, "a non-empty string"))
    return name


def _event_time(record: dict[str, Any], spec: TimestampRef | None, received_at: int | None) -> int:
    value = record.get(spec.field) if spec is not None else None
    if type(value) is int and spec is not None and spec.unit != "iso":
        # The common case first, once per event: an integer in range.
        micros = value // 1000 if spec.unit == "ns" else value * int(_UNIT_TO_US[spec.unit])
        if MIN_US <= micros <= MAX_US:
            return micros
    if value is None:
        if received_at is None:
            field_name = spec.field if spec is not None else "timestamp"
            raise BadEvent(f"'{field_name}' is missing and there is no earlier time to use")
        return received_at
    assert spec is not None
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except TimeFormatError as error:
            raise BadEvent(f"'{spec.field}': {error}") from None
    if spec.unit == "iso":
        raise BadEvent(_field_problem(spec.field, value, "an ISO-8601 timestamp with an offset"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadEvent(
            _field_problem(
                spec.field, value, f"an ISO-8601 timestamp or a number of {_UNIT_NAMES[spec.unit]}"
            )
        )
    if value != value or value in (float("inf"), float("-inf")):
        raise BadEvent(f"'{spec.field}' must be a finite number")
    if isinstance(value, int):
        factor = _UNIT_TO_US[spec.unit]
        micros = value // 1000 if spec.unit == "ns" else value * int(factor)
    else:
        micros = int(value * _UNIT_TO_US[spec.unit])
    if not MIN_US <= micros <= MAX_US:
        raise BadEvent(f"'{spec.field}' is out of range (years 1 to 9999): {_short(value)}")
    return micros


_UNIT_NAMES = {
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "iso": "",
}


def _attributes(record: dict[str, Any], source: SourceSpec) -> dict[str, Any]:
    if source.attributes == "*":
        # A copy less the mapped fields: twice as fast as filtering each key.
        attributes = dict(record)
        attributes.pop(source.user_id, None)
        if isinstance(source.event, FieldRef):
            attributes.pop(source.event.field, None)
        if source.timestamp is not None:
            attributes.pop(source.timestamp.field, None)
        return attributes
    assert isinstance(source.attributes, FieldRef)
    nested = record.get(source.attributes.field)
    if nested is None:
        return {}
    if not isinstance(nested, dict):
        raise BadEvent(_field_problem(source.attributes.field, nested, "an object"))
    return nested
