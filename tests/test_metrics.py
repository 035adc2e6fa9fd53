"""Worker metrics that are computed, not just counted."""

from __future__ import annotations

from eventpatterns.metrics import Metrics
from eventpatterns.processor import BatchResult


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


def test_records_are_counted_by_action_and_target_with_their_batch() -> None:
    metrics = Metrics()
    records = [
        {"kind": "action", "action": "publish"},
        {"kind": "action", "action": "publish"},
        {"kind": "action", "action": "log_contact"},
        {"kind": "transition", "to": "met"},
        {"kind": "error", "error": "chain cut"},
    ]
    for record in records:
        metrics.observe_record(record)
    metrics.observe_batch(BatchResult(events=2), 0.001, 2)
    metrics.observe_record({"kind": "transition", "to": "met"})
    text = metrics.render().decode()
    sample = metrics.registry.get_sample_value
    assert sample("eventpatterns_actions_total", {"action": "publish"}) == 2
    assert sample("eventpatterns_actions_total", {"action": "log_contact"}) == 1
    assert sample("eventpatterns_transitions_total", {"to": "met"}) == 2
    assert sample("eventpatterns_errors_total") == 1
    assert sample("eventpatterns_events_total") == 2
    assert 'eventpatterns_transitions_total{to="met"} 2.0' in text
