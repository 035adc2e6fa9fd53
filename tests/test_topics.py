"""The input channel's schema and the worker's Faust monitor (topics.py, app.py): what
they keep of Faust's per-record work."""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TP, Message

from eventpatterns.app import LeanMonitor
from eventpatterns.processor import Topics
from eventpatterns.topics import input_channel

NAMES = Topics("clicks", "ev-events", "ev-timers", "ev-actions", "ev-dlq", "ev-history")


def app() -> faust.App:
    return faust.App("test-topics", broker="kafka://127.0.0.1:1", autodiscover=False)


def message(key: bytes | None, value: bytes | None) -> Message:
    return Message("clicks", 3, 17, 1.0, 0, [("h", b"1")], key, value, None, len(key or b""), 0)


async def test_the_input_channel_hands_over_keys_and_values_as_the_broker_gave_them() -> None:
    channel = input_channel(app(), NAMES)
    assert set(channel.topics) == {"clicks", "ev-events", "ev-timers"}
    for key, value in [(b"user-1", b'{"a": 1}'), (None, b"\x00\xff raw"), (b"u", None)]:
        original = message(key, value)
        event = await channel.decode(original, propagate=True)
        assert (event.key, event.value, event.message) == (key, value, original)
        assert dict(event.headers) == {"h": b"1"}


def test_the_monitor_skips_per_record_bookkeeping_and_keeps_sends() -> None:
    monitor = LeanMonitor()
    tp = TP("clicks", 3)
    stream: Any = object()
    monitor.on_message_in(tp, 17, message(b"u", b"v"))
    state = monitor.on_stream_event_in(tp, 17, stream, object())
    monitor.on_stream_event_out(tp, 17, stream, object(), state)
    monitor.on_message_out(tp, 17, message(b"u", b"v"))
    assert (monitor.messages_received_total, monitor.events_total) == (0, 0)
    monitor.on_send_initiated(object(), "ev-actions", object(), 1, 2)  # type: ignore[arg-type]
    assert monitor.messages_sent == 1
