"""Durations, timestamps and time formatting (SPEC sections 1, 2 and 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventpatterns.core.timeutil import (
    MAX_US,
    MIN_US,
    TimeFormatError,
    datetime_to_us,
    format_duration,
    format_ms,
    format_us,
    parse_duration,
    parse_timestamp,
    us_to_datetime,
)

S = 1_000_000
M = 60 * S
H = 60 * M
D = 24 * H


# ---------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("250ms", 250_000),
        ("1ms", 1_000),
        ("30s", 30 * S),
        ("30m", 30 * M),
        ("2h", 2 * H),
        ("7d", 7 * D),
        ("1w", 7 * D),
        ("0s", 0),
        ("1.5h", 90 * M),
        ("0.5s", 500_000),
        (" 30m ", 30 * M),
        ("30 m", 30 * M),
        # ISO-8601
        ("PT30M", 30 * M),
        ("PT0.25S", 250_000),
        ("PT1H30M", 90 * M),
        ("P1D", D),
        ("P1DT2H", D + 2 * H),
        ("P2W", 14 * D),
        ("P1DT2H3M4S", D + 2 * H + 3 * M + 4 * S),
        ("PT36H", 36 * H),
        ("pt30m", 30 * M),
        ("PT1.5H", 90 * M),
    ],
)
def test_durations_in_every_form(text: str, micros: int) -> None:
    assert parse_duration(text) == micros


@pytest.mark.parametrize(
    "text",
    [
        "",
        "30",
        "m",
        "30x",
        "30 minutes",
        "-5m",
        "5 m s",
        "1h30m",
        "P",
        "PT",
        "P1DT",
        "P1M",  # months are not a fixed length
        "P1Y",
        "PT30",
        "T30M",
        "30mm",
        "1e3s",
    ],
)
def test_bad_duration_text_is_rejected_with_examples(text: str) -> None:
    with pytest.raises(TimeFormatError) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert repr(text) in message
    assert "30m" in message and "PT30M" in message


@pytest.mark.parametrize("value", [30, 1.5, 0])
def test_a_number_without_unit_is_rejected_and_the_message_asks_for_one(value: object) -> None:
    with pytest.raises(TimeFormatError, match="has no unit"):
        parse_duration(value)


@pytest.mark.parametrize("value", [None, True, ["30m"], {"m": 30}])
def test_non_text_durations_are_rejected(value: object) -> None:
    with pytest.raises(TimeFormatError, match="not a duration"):
        parse_duration(value)


def test_duration_errors_are_value_errors() -> None:
    # pydantic turns ValueErrors raised by validators into field errors
    assert issubclass(TimeFormatError, ValueError)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m", "h", "d", "w"]))
def test_simple_durations_are_exact(amount: int, unit: str) -> None:
    per = {"ms": 1000, "s": S, "m": M, "h": H, "d": D, "w": 7 * D}[unit]
    assert parse_duration(f"{amount}{unit}") == amount * per


# ---------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-17T11:54:29Z", datetime(2026, 11, 17, 11, 54, 29, tzinfo=UTC)),
        ("2026-11-17T11:54:29z", datetime(2026, 11, 17, 11, 54, 29, tzinfo=UTC)),
        ("2026-11-17T11:54:29+00:00", datetime(2026, 11, 17, 11, 54, 29, tzinfo=UTC)),
        ("2026-11-17T12:54:29+01:00", datetime(2026, 11, 17, 11, 54, 29, tzinfo=UTC)),
        ("2026-11-17T06:54:29-05:00", datetime(2026, 11, 17, 11, 54, 29, tzinfo=UTC)),
        ("2026-11-17 11:54:29Z", datetime(2026, 11, 17, 11, 54, 29, tzinfo=UTC)),
        ("2026-11-17T11:54:29.123456Z", datetime(2026, 11, 17, 11, 54, 29, 123456, tzinfo=UTC)),
        ("2026-11-17T11:54:29.5Z", datetime(2026, 11, 17, 11, 54, 29, 500000, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
        ("1969-12-31T23:59:59.999999Z", datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_timestamps_with_an_offset(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == datetime_to_us(expected)


def test_timestamps_keep_the_microsecond() -> None:
    assert parse_timestamp("2026-11-17T11:54:29.000001Z") % S == 1
    assert parse_timestamp("2026-11-17T11:54:29.999999Z") % S == 999_999


@pytest.mark.parametrize("text", ["2026-11-17T11:54:29", "2026-11-17", "2026-11-17 11:54"])
def test_timestamps_without_an_offset_are_rejected_with_a_suggestion(text: str) -> None:
    with pytest.raises(TimeFormatError) as caught:
        parse_timestamp(text)
    message = str(caught.value)
    assert "no offset" in message
    assert "Z (UTC)" in message and "+01:00" in message


@pytest.mark.parametrize("value", ["", "yesterday", "17/11/2026", "2026-13-01T00:00:00Z", 12, None])
def test_unreadable_timestamps_are_rejected(value: object) -> None:
    with pytest.raises(TimeFormatError, match="not a timestamp"):
        parse_timestamp(value)


def test_aware_datetimes_are_accepted_and_naive_ones_are_not() -> None:
    aware = datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert parse_timestamp(aware) == parse_timestamp("2026-01-01T00:00:00Z")
    with pytest.raises(TimeFormatError, match="no offset"):
        parse_timestamp(datetime(2026, 1, 1))


def test_timestamps_outside_years_1_to_9999_utc_are_rejected() -> None:
    with pytest.raises(TimeFormatError, match="out of range"):
        parse_timestamp("0001-01-01T00:00:00+05:00")
    with pytest.raises(TimeFormatError, match="out of range"):
        parse_timestamp("9999-12-31T23:59:59-05:00")
    assert parse_timestamp("0001-01-01T00:00:00Z") == MIN_US
    assert parse_timestamp("9999-12-31T23:59:59.999999Z") == MAX_US


# ---------------------------------------------------------------------- formatting


def test_format_ms_is_utc_truncated_to_the_millisecond_with_z() -> None:
    assert format_ms(parse_timestamp("2026-11-17T12:54:29.123999+01:00")) == (
        "2026-11-17T11:54:29.123Z"
    )
    assert format_ms(0) == "1970-01-01T00:00:00.000Z"
    # truncated, never rounded up
    assert format_ms(999) == "1970-01-01T00:00:00.000Z"
    # before the epoch too (towards the earlier millisecond)
    assert format_ms(-1) == "1969-12-31T23:59:59.999Z"


def test_format_us_keeps_every_microsecond() -> None:
    assert format_us(parse_timestamp("2026-11-17T11:54:29.000001Z")) == (
        "2026-11-17T11:54:29.000001Z"
    )


@given(st.integers(min_value=MIN_US, max_value=MAX_US))
def test_format_us_round_trips(micros: int) -> None:
    assert parse_timestamp(format_us(micros)) == micros
    assert datetime_to_us(us_to_datetime(micros)) == micros


@given(st.integers(min_value=MIN_US, max_value=MAX_US))
def test_format_ms_round_trips_to_the_millisecond(micros: int) -> None:
    assert parse_timestamp(format_ms(micros)) == micros - micros % 1000


@given(st.integers(min_value=MIN_US, max_value=MAX_US))
def test_formats_agree_with_datetime(micros: int) -> None:
    moment = us_to_datetime(micros)
    assert format_ms(micros) == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert format_us(micros) == moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def test_formats_stay_right_beyond_the_days_cached() -> None:
    start = parse_timestamp("2020-01-01T23:59:59.999Z")
    for day in range(10_000):  # more days than the cache keeps
        micros = start + day * D
        expected = us_to_datetime(micros).isoformat(timespec="milliseconds")
        assert format_ms(micros) == expected.replace("+00:00", "Z")


def test_formats_refuse_years_past_9999() -> None:
    with pytest.raises(OverflowError):
        format_ms(MAX_US + 1)
    with pytest.raises(OverflowError):
        format_us(MIN_US - 1)


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0s"),
        (-5, "0s"),
        (1500, "0.0015s"),
        (90 * S, "1m 30s"),
        (D + 2 * H, "1d 2h"),
        (7 * D, "7d"),
    ],
)
def test_format_duration(micros: int, text: str) -> None:
    assert format_duration(micros) == text
