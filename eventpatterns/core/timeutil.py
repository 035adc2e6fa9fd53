"""Time in the core is an int of microseconds since the Unix epoch (UTC).

Ints keep arithmetic exact and state compact; conversion to and from text
happens only at the edges (pattern files, events, output records).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

US_PER_MS = 1_000
US_PER_S = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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


def parse_duration(value: object) -> int:
    """Read `250ms`, `30s`, `30m`, `2h`, `7d`, `1w` or ISO-8601 (`PT30M`) as microseconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise TimeFormatError(
            f"expected a duration such as '30m', '7d' or 'PT30M', got {value!r}"
        )
    match = _SIMPLE_DURATION.match(value)
    if match:
        return round(float(match.group(1)) * _UNIT_US[match.group(2)])
    iso = _ISO_DURATION.match(value.strip().upper())
    if iso and value.strip().upper() not in ("P", "PT") and any(iso.groupdict().values()):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v is not None}
        return round(
            parts.get("w", 0) * _UNIT_US["w"]
            + parts.get("d", 0) * _UNIT_US["d"]
            + parts.get("h", 0) * _UNIT_US["h"]
            + parts.get("m", 0) * _UNIT_US["m"]
            + parts.get("s", 0) * _UNIT_US["s"]
        )
    raise TimeFormatError(f"expected a duration such as '30m', '7d' or 'PT30M', got {value!r}")


def parse_timestamp(value: object) -> int:
    """Read an ISO-8601 timestamp that carries an offset, as microseconds since the epoch."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            raise TimeFormatError(
                f"expected an ISO-8601 timestamp with an offset, got {value!r}"
            ) from None
    else:
        raise TimeFormatError(f"expected an ISO-8601 timestamp with an offset, got {value!r}")
    if parsed.tzinfo is None:
        raise TimeFormatError(f"timestamp {value!r} has no UTC offset (add 'Z' or '+01:00')")
    return datetime_to_us(parsed)


def datetime_to_us(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * US_PER_S + delta.microseconds


def us_to_datetime(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def format_ms(value: int) -> str:
    """UTC, truncated to the millisecond, with a `Z` (SPEC section 7)."""
    dt = us_to_datetime(value - value % US_PER_MS)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def format_us(value: int) -> str:
    """UTC with full microsecond precision; for places that must not lose time."""
    return us_to_datetime(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
