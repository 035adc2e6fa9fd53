"""Decoding raw records into events (SPEC section 1, input mapping)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eventpatterns.core.definitions import load_definitions
from eventpatterns.core.events import (
    DEFAULT_SOURCE,
    MAX_EVENT_BYTES,
    BadEvent,
    Event,
    decode_event,
    event_from_record,
)
from eventpatterns.core.spec import FieldRef, SourceSpec, TimestampRef
from eventpatterns.core.timeutil import parse_timestamp

T0 = parse_timestamp("2026-11-17T11:54:29Z")
T0_S = T0 // 1_000_000  # 1794916469
RECEIVED = parse_timestamp("2030-01-01T00:00:00Z")


def raw(record: Any) -> bytes:
    return json.dumps(record).encode()


def decode(record: Any, source: SourceSpec = DEFAULT_SOURCE, **kwargs: Any) -> Event:
    return decode_event(raw(record), source, **kwargs)


def bad(record: Any, source: SourceSpec = DEFAULT_SOURCE, **kwargs: Any) -> str:
    with pytest.raises(BadEvent) as caught:
        decode_event(record if isinstance(record, bytes | str) else raw(record), source, **kwargs)
    return str(caught.value)


def source(text: str) -> SourceSpec:
    """The source block of a pattern file, as the loader reads it."""
    return load_definitions(f"version: 1\nsource:\n{text}").source


# ---------------------------------------------------------------------- the default shape


def test_the_spec_example_decodes() -> None:
    event = decode(
        {
            "user_id": "u-17",
            "event": "click",
            "timestamp": "2026-11-17T11:54:29Z",
            "attributes": {
                "category": "clothing",
                "productId": "VD55129406",
                "gender": "F",
                "age": 31,
            },
        }
    )
    assert event == Event(
        "u-17",
        "click",
        T0,
        {"category": "clothing", "productId": "VD55129406", "gender": "F", "age": 31},
    )
    assert event.depth == 0


def test_iso_timestamps_with_any_offset() -> None:
    event = decode({"user_id": "u", "event": "e", "timestamp": "2026-11-17T12:54:29+01:00"})
    assert event.time == T0


def test_epoch_millisecond_integers() -> None:
    event = decode({"user_id": "u", "event": "e", "timestamp": T0_S * 1000 + 123})
    assert event.time == T0 + 123_000


def test_microseconds_are_kept() -> None:
    event = decode({"user_id": "u", "event": "e", "timestamp": "2026-11-17T11:54:29.123456Z"})
    assert event.time == T0 + 123_456
    assert event.to_json()["timestamp"] == "2026-11-17T11:54:29.123456Z"


def test_absent_timestamp_takes_the_received_time() -> None:
    assert decode({"user_id": "u", "event": "e"}, received_at=RECEIVED).time == RECEIVED
    # null counts as absent
    assert decode({"user_id": "u", "event": "e", "timestamp": None}, received_at=RECEIVED).time == (
        RECEIVED
    )


def test_absent_timestamp_without_received_time_is_bad() -> None:
    assert "'timestamp' is missing" in bad({"user_id": "u", "event": "e"})


def test_a_given_timestamp_wins_over_the_received_time() -> None:
    event = decode(
        {"user_id": "u", "event": "e", "timestamp": "2026-11-17T11:54:29Z"}, received_at=RECEIVED
    )
    assert event.time == T0


def test_attributes_are_optional_and_other_fields_are_ignored() -> None:
    event = decode({"user_id": "u", "event": "e", "timestamp": 0, "ip": "10.0.0.1", "x": [1]})
    assert event.attributes == {}
    assert (
        decode({"user_id": "u", "event": "e", "timestamp": 0, "attributes": None}).attributes == {}
    )


def test_str_input_is_accepted_like_bytes() -> None:
    event = decode_event('{"user_id": "u", "event": "e", "timestamp": 0}')
    assert (event.user_id, event.name, event.time) == ("u", "e", 0)


def test_to_json_is_the_default_shape() -> None:
    event = Event("u", "e", T0, {"a": 1})
    assert decode_event(json.dumps(event.to_json())) == event


# ---------------------------------------------------------------------- bad events


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"user_id": "u", "event": "e"', "not JSON"),
        (b"[1, 2]", "an event is a JSON object, got list"),
        (b'"click"', "an event is a JSON object, got str"),
        (b"42", "an event is a JSON object, got int"),
        (b"null", "an event is a JSON object, got NoneType"),
    ],
)
def test_not_json_or_not_an_object(record: bytes, reason: str) -> None:
    assert reason in bad(record)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"event": "e", "timestamp": 0}, "'user_id' is missing (must be a non-empty string)"),
        ({"user_id": "", "event": "e", "timestamp": 0}, "'user_id' must be a non-empty string"),
        (
            {"user_id": 17, "event": "e", "timestamp": 0},
            "'user_id' must be a non-empty string, got int",
        ),
        ({"user_id": True, "event": "e", "timestamp": 0}, "'user_id' must be a non-empty string"),
        ({"user_id": ["u"], "event": "e", "timestamp": 0}, "'user_id' must be a non-empty string"),
        ({"user_id": "u", "timestamp": 0}, "'event' is missing (must be a non-empty string)"),
        ({"user_id": "u", "event": "", "timestamp": 0}, "'event' must be a non-empty string"),
        (
            {"user_id": "u", "event": 3, "timestamp": 0},
            "'event' must be a non-empty string, got int",
        ),
        ({"user_id": "u", "event": {"n": 1}, "timestamp": 0}, "'event' must be a non-empty string"),
        (
            {"user_id": "u", "event": "e", "timestamp": "yesterday"},
            "'timestamp': 'yesterday' is not a timestamp",
        ),
        ({"user_id": "u", "event": "e", "timestamp": "2026-11-17T11:54:29"}, "has no offset"),
        (
            {"user_id": "u", "event": "e", "timestamp": True},
            "'timestamp' must be an ISO-8601 timestamp",
        ),
        (
            {"user_id": "u", "event": "e", "timestamp": [1]},
            "'timestamp' must be an ISO-8601 timestamp",
        ),
        ({"user_id": "u", "event": "e", "timestamp": 10**18}, "'timestamp' is out of range"),
        ({"user_id": "u", "event": "e", "timestamp": -(10**17)}, "'timestamp' is out of range"),
        (
            {"user_id": "u", "event": "e", "timestamp": 0, "attributes": [1]},
            "'attributes' must be an object, got list",
        ),
        (
            {"user_id": "u", "event": "e", "timestamp": 0, "attributes": "a=1"},
            "'attributes' must be an object, got str",
        ),
    ],
)
def test_missing_or_wrongly_typed_fields(record: dict[str, Any], reason: str) -> None:
    assert reason in bad(record)


def test_oversized_records_are_bad_before_being_parsed() -> None:
    big = raw(
        {"user_id": "u", "event": "e", "timestamp": 0, "attributes": {"x": "a" * MAX_EVENT_BYTES}}
    )
    assert "event too large" in bad(big)
    assert "limit is 100" in bad(
        raw({"user_id": "u", "event": "e", "timestamp": 0}) + b" " * 100, max_bytes=100
    )
    # at the limit exactly is fine
    exact = raw({"user_id": "u", "event": "e", "timestamp": 0})
    assert decode_event(exact, max_bytes=len(exact)).name == "e"


def test_bad_event_is_a_value_error_whose_message_is_the_reason() -> None:
    assert issubclass(BadEvent, ValueError)
    assert bad(b"[]") == "an event is a JSON object, got list"


# ---------------------------------------------------------------------- input mapping


CLICK = {
    "timestamp": 1700221907989992000,
    "userId": "calm-river-delta",
    "category": "shoes",
    "productId": "VD55147564",
    "gender": "M",
    "age": 41,
    "ip": "10.0.0.9",
}

SEED_SOURCE = """\
  topic: enriched-click-data
  user_id: userId
  event: click
  timestamp: {field: timestamp, unit: ns}
  attributes: "*"
"""


def test_the_seed_clickstream_mapping() -> None:
    event = decode(CLICK, source(SEED_SOURCE))
    assert event.user_id == "calm-river-delta"
    assert event.name == "click"
    # nanoseconds: the microsecond is kept, the nanoseconds below it are dropped
    assert event.time == 1700221907989992
    assert event.attributes == {
        "category": "shoes",
        "productId": "VD55147564",
        "gender": "M",
        "age": 41,
        "ip": "10.0.0.9",
    }


def test_a_mapped_source_reads_numeric_user_ids_as_text() -> None:
    """Existing topics often key users by number; the standard shape wants a string."""
    event = decode({**CLICK, "userId": 4711}, source(SEED_SOURCE))
    assert event.user_id == "4711"
    with pytest.raises(BadEvent, match="must be a non-empty string, got bool"):
        decode({**CLICK, "userId": True}, source(SEED_SOURCE))


def test_the_seed_example_file_maps_its_records() -> None:
    with open("examples/clickstream.yaml", encoding="utf-8") as handle:
        definitions = load_definitions(handle.read())
    with open("examples/clickstream.jsonl", "rb") as handle:
        events = [decode_event(line, definitions.source) for line in handle if line.strip()]
    assert events and all(event.name == "click" for event in events)
    assert all("userId" not in event.attributes for event in events)


@pytest.mark.parametrize(
    ("unit", "value", "micros"),
    [
        ("s", T0_S, T0),
        ("s", T0_S + 0.5, T0 + 500_000),
        ("ms", T0_S * 1000, T0),
        ("ms", T0_S * 1000 + 0.25, T0 + 250),
        ("us", T0 + 1, T0 + 1),
        ("ns", (T0 + 1) * 1000 + 999, T0 + 1),
        ("iso", "2026-11-17T11:54:29.000001Z", T0 + 1),
        # strings are ISO-8601 whatever the unit
        ("ns", "2026-11-17T11:54:29Z", T0),
        ("s", "2026-11-17T11:54:29Z", T0),
    ],
)
def test_timestamp_units(unit: str, value: Any, micros: int) -> None:
    spec = source(f"  timestamp: {{field: ts, unit: {unit}}}\n")
    assert spec.timestamp == TimestampRef(field="ts", unit=unit)  # type: ignore[arg-type]
    assert decode({"user_id": "u", "event": "e", "ts": value}, spec).time == micros


def test_unit_iso_wants_text() -> None:
    spec = source("  timestamp: {field: ts, unit: iso}\n")
    assert "'ts' must be an ISO-8601 timestamp with an offset, got int" in bad(
        {"user_id": "u", "event": "e", "ts": T0_S * 1000}, spec
    )


def test_number_of_the_wrong_kind_names_the_unit() -> None:
    spec = source("  timestamp: {field: ts, unit: s}\n")
    assert "a number of seconds" in bad({"user_id": "u", "event": "e", "ts": []}, spec)


def test_event_name_from_a_field() -> None:
    spec = source("  user_id: uid\n  event: {field: type}\n  attributes: {field: data}\n")
    event = decode({"uid": "u", "type": "purchase", "timestamp": 0, "data": {"amount": 5}}, spec)
    assert (event.user_id, event.name, event.attributes) == ("u", "purchase", {"amount": 5})
    assert "'type' is missing" in bad({"uid": "u", "timestamp": 0}, spec)
    assert "'uid' is missing" in bad({"user_id": "u", "type": "x", "timestamp": 0}, spec)
    assert "'data' must be an object" in bad(
        {"uid": "u", "type": "x", "timestamp": 0, "data": 1}, spec
    )


def test_literal_event_name_ignores_any_event_field() -> None:
    spec = source("  event: click\n")
    event = decode({"user_id": "u", "event": "purchase", "timestamp": 0}, spec)
    assert event.name == "click"


def test_star_attributes_take_every_field_but_the_mapped_ones() -> None:
    spec = source(
        '  user_id: uid\n  event: {field: kind}\n  timestamp: {field: at}\n  attributes: "*"\n'
    )
    event = decode({"uid": "u", "kind": "k", "at": 0, "a": 1, "b": {"c": 2}}, spec)
    assert event.attributes == {"a": 1, "b": {"c": 2}}
    # with a literal event name, a field called 'event' is just another attribute
    spec = source('  event: click\n  attributes: "*"\n')
    event = decode({"user_id": "u", "event": "x", "timestamp": 0, "a": 1}, spec)
    assert event.attributes == {"event": "x", "a": 1}


def test_mapping_with_no_timestamp_field_uses_the_received_time() -> None:
    spec = source("  timestamp: null\n")
    assert spec.timestamp is None
    assert (
        decode({"user_id": "u", "event": "e", "timestamp": 5}, spec, received_at=RECEIVED).time
        == RECEIVED
    )
    assert "'timestamp' is missing" in bad({"user_id": "u", "event": "e"}, spec)


def test_default_source() -> None:
    expected = SourceSpec(
        topic="eventpatterns-events",
        user_id="user_id",
        event=FieldRef(field="event"),
        timestamp=TimestampRef(field="timestamp", unit="ms"),
        attributes=FieldRef(field="attributes"),
    )
    assert expected == DEFAULT_SOURCE
    assert load_definitions("version: 1\n").source == DEFAULT_SOURCE


def test_event_from_record_is_decode_without_the_bytes() -> None:
    record = {"user_id": "u", "event": "e", "timestamp": 0}
    assert event_from_record(record) == decode(record)
    with pytest.raises(BadEvent, match="JSON object"):
        event_from_record([record])
