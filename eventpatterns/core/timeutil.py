"""Time in the core is an int of microseconds since the Unix epoch (UTC).

Ints keep arithmetic exact and state compact; conversion to and from text
happens only at the edges (pattern files, events, output records).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

US_PER_MS = 1_000
US_PER_S = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)

_SIMPLE_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_US = {
    "ms": US_PER_MS,
    "s": US_PER_S,
    "m": 60 * US_PER_S,
    "h": 3600 * US_PER_S,
    "d": 86400 * US_PER_S,
    "w": 7 * 86400 * US_PER_S,
}
_ISO_DURATION = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class TimeFormatError(ValueError):
    """A duration or timestamp that cannot be read."""


_DURATION_EXAMPLES = "250ms, 30s, 30m, 2h, 7d, 1w or ISO-8601 PT30M"
MIN_US = -62135596800 * US_PER_S
"""0001-01-01T00:00:00Z."""
MAX_US = 253402300799 * US_PER_S + 999_999
"""9999-12-31T23:59:59.999999Z."""


def parse_duration(value: object) -> int:
    """Read `250ms`, `30s`, `30m`, `2h`, `7d`, `1w` or ISO-8601 (`PT30M`) as microseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise TimeFormatError(
            f"{value!r} has no unit; write a duration such as {_DURATION_EXAMPLES}"
        )
    if not isinstance(value, str):
        raise TimeFormatError(f"{value!r} is not a duration; write e.g. {_DURATION_EXAMPLES}")
    match = _SIMPLE_DURATION.match(value)
    if match:
        return round(float(match.group(1)) * _UNIT_US[match.group(2)])
    text = value.strip().upper()
    iso = _ISO_DURATION.match(text)
    if iso and text not in ("P", "PT") and not text.endswith("T") and any(iso.groupdict().values()):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v is not None}
        return round(
            parts.get("w", 0) * _UNIT_US["w"]
            + parts.get("d", 0) * _UNIT_US["d"]
            + parts.get("h", 0) * _UNIT_US["h"]
            + parts.get("m", 0) * _UNIT_US["m"]
            + parts.get("s", 0) * _UNIT_US["s"]
        )
    raise TimeFormatError(f"{value!r} is not a duration; write e.g. {_DURATION_EXAMPLES}")


def parse_timestamp(value: object) -> int:
    """Read an ISO-8601 timestamp that carries an offset, as microseconds since the epoch."""
    example = "2026-11-17T11:54:29Z"
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            raise TimeFormatError(
                f"{value!r} is not a timestamp; write ISO-8601 with an offset, e.g. {example}"
            ) from None
    else:
        raise TimeFormatError(
            f"{value!r} is not a timestamp; write ISO-8601 with an offset, e.g. {example}"
        )
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        naive = parsed.isoformat()
        raise TimeFormatError(
            f"timestamp {value!r} has no offset; add one, e.g. {naive}Z (UTC) or {naive}+01:00"
        )
    micros = datetime_to_us(parsed)
    if not MIN_US <= micros <= MAX_US:
        raise TimeFormatError(f"timestamp {value!r} is out of range (years 1 to 9999 UTC)")
    return micros


def datetime_to_us(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * US_PER_S + delta.microseconds


def us_to_datetime(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def format_ms(value: int) -> str:
    """UTC, truncated to the millisecond, with a `Z` (SPEC section 7)."""
    seconds, micros = divmod(value, US_PER_S)
    return _date_time(seconds) + _MILLIS[micros // US_PER_MS]


def format_us(value: int) -> str:
    """UTC with full microsecond precision; for places that must not lose time."""
    seconds, micros = divmod(value, US_PER_S)
    return f"{_date_time(seconds)}.{micros:06d}Z"


# Every transition and action record carries a time (format_ms): made through datetime
# and an f-string of six fields, that was ~20 % of evaluating ten patterns (9 us a call
# on the slower benchmark machine). Now a day's text is cached, the time of day is
# arithmetic, and the texts of its parts are made once.
_DATES: dict[int, str] = {}
_DATES_KEPT = 4096
_TWO_DIGITS = [f"{number:02d}" for number in range(60)]
_CLOCK = [f"T{hour:02d}:" for hour in range(24)]
_MILLIS = [f".{millis:03d}Z" for millis in range(1000)]


def _date_time(seconds: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS` of seconds since the epoch (OverflowError outside years 1-9999)."""
    day, second = divmod(seconds, 86400)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return _date(day) + _CLOCK[hour] + _TWO_DIGITS[minute] + ":" + _TWO_DIGITS[second]


def _date(day: int) -> str:
    text = _DATES.get(day)
    if text is None:
        # not strftime: its %Y does not pad years before 1000 to four digits everywhere
        moment = _EPOCH_DATE + timedelta(days=day)
        text = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        if len(_DATES) >= _DATES_KEPT:
            _DATES.clear()
        _DATES[day] = text
    return text


def format_duration(value: int) -> str:
    """Short human form of a duration, e.g. `2d 3h`, for explanations."""
    if value <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", _UNIT_US["d"]), ("h", _UNIT_US["h"]), ("m", _UNIT_US["m"])):
        if value >= size:
            parts.append(f"{value // size}{unit}")
            value %= size
    if value or not parts:
        seconds = value / US_PER_S
        parts.append(f"{seconds:g}s")
    return " ".join(parts)
