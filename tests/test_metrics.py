"""Worker metrics that are computed, not just counted."""

from __future__ import annotations

from eventpatterns.metrics import Metrics


def lag(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("eventpatterns_processing_lag_seconds")
    assert value is not None
    return value


def test_lag_is_seconds_since_the_oldest_record_of_the_batch() -> None:
    metrics = Metrics()
    metrics.observe_lag([1_700_000_010_500, 1_700_000_008_250, None], now=1_700_000_011.0)
    assert lag(metrics) == 2.75


def test_records_without_a_timestamp_leave_the_lag_as_it_was() -> None:
    metrics = Metrics()
    metrics.observe_lag([1_700_000_010_000], now=1_700_000_012.0)
    metrics.observe_lag([None, -1], now=1_700_000_099.0)
    assert lag(metrics) == 2.0


def test_a_clock_behind_the_producers_gives_no_negative_lag() -> None:
    metrics = Metrics()
    metrics.observe_lag([1_700_000_010_000], now=1_700_000_009.0)
    assert lag(metrics) == 0.0
