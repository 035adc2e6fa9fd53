"""Batches of a Faust stream's events, for the events agent.

Faust's `Stream.take_events(max, within)` starts its wait when the agent is
done with the previous batch, and holds the stream while the agent works: a
record that arrived during a batch waits for that batch, then a whole `within`,
then its own batch; and every `within` it makes four tasks to wait (mode's
`wait_first`), idle or not. Here the wait opens when a batch's first event
arrives, so under load what queued while a batch was applied goes at once;
events go on being buffered meanwhile (up to `max_events`, then the stream
waits, as Faust's does); and an idle agent waits for an event without waking.
The consumer hands the buffer whole fetches where it can
(`faustpatches.receive_in_bulk`), the stream's events come one by one; both
as the records the processor takes (`faustpatches.FetchedRecord`). The
agent acknowledges a batch's records (`acknowledge`) once its writes are
durable, and never when they failed; it is told when the stream idles
(`report_idle`), to write what it holds back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from ..faustpatches import FetchedRecord, acknowledge_fetched, fetched_from_event, receive_in_bulk


class Buffer:
    """What a stream has delivered since the last batch was taken."""

    def __init__(self, stream: Any, max_events: int) -> None:
        self.stream = stream
        self.max_events = max_events
        self.events: list[FetchedRecord] = []
        self.opened_at = 0.0
        """Loop time at which the first of `events` arrived."""
        self.started = asyncio.Event()
        self.full = asyncio.Event()
        self._room: asyncio.Future[None] | None = None

    def add(self, value: Any) -> Any:
        """The stream's processor: buffer the event being delivered."""
        event = self.stream.current_event
        if event is None:
            raise RuntimeError("a batched stream found no current event")
        self._open_if_empty()
        self.events.append(fetched_from_event(event))
        if len(self.events) < self.max_events:
            return value
        self.full.set()
        return self._when_taken(value)

    async def receive(self, events: list[FetchedRecord]) -> None:
        """The consumer's bulk delivery (`faustpatches.receive_in_bulk`): a fetch's records.

        Returns once there is room for more, so a full buffer holds the next fetch.
        """
        if not events:
            return
        self._open_if_empty()
        self.events.extend(events)
        if len(self.events) >= self.max_events:
            self.full.set()
            await self._when_taken(None)

    def _open_if_empty(self) -> None:
        """A batch's window opens at its first event."""
        if not self.events:
            self.opened_at = asyncio.get_running_loop().time()
            self.started.set()

    async def _when_taken(self, value: Any) -> Any:
        """Hold the stream until the full batch is taken (Faust's back-pressure)."""
        if self._room is None or self._room.done():
            self._room = asyncio.get_running_loop().create_future()
        await self._room
        return value

    def take(self) -> list[FetchedRecord]:
        """The first `max_events` events; what a bulk delivery put past them stays."""
        events = self.events[: self.max_events]
        del self.events[: self.max_events]
        if len(self.events) >= self.max_events:
            return events  # still full: the window of the rest is over already
        self.full.clear()
        self.release()
        if not self.events:
            self.started.clear()
        return events

    def release(self) -> None:
        """Let the stream go on (it waits while a full batch is not taken)."""
        if self._room is not None and not self._room.done():
            self._room.set_result(None)


async def take_batches(
    stream: Any,
    max_events: int,
    within: float,
    report_idle: bool = False,
    idle_after: float | None = None,
) -> AsyncGenerator[list[FetchedRecord], None]:
    """Lists of at most `max_events` events, each at most `within` seconds after its first.

    With `report_idle`, an empty list once no event came for `idle_after`
    seconds (default `within`) after a batch: the caller's moment to finish what
    it held back for the next batch.
    """
    idle_wait = within if idle_after is None else idle_after
    buffer = Buffer(stream, max_events)
    loop = asyncio.get_running_loop()
    # The agent acknowledges them, once they are durable. Acks stay off when the
    # batches end: the stream's passive drainer goes on delivering what it still
    # holds, which nothing applied, and which must be fetched again, not committed.
    stream.enable_acks = False
    stream.add_processor(buffer.add)
    stream._enable_passive(aiter(stream.channel))
    stop_receiving = receive_in_bulk(
        stream.app, getattr(stream.channel, "topics", ()), buffer.receive
    )
    idle_reported = True
    try:
        while not stream.should_stop:
            if not buffer.events:
                if idle_reported:
                    await stream.wait_for_stopped(buffer.started)
                    continue
                await stream.wait_for_stopped(buffer.started, timeout=idle_wait)
                if not buffer.events:
                    idle_reported = True
                    yield []
                continue
            remaining = buffer.opened_at + within - loop.time()
            if remaining > 0 and not buffer.full.is_set():
                await stream.wait_for_stopped(buffer.full, timeout=remaining)
            batch = current(stream.app, buffer.take())
            if batch:
                idle_reported = not report_idle
                yield batch
    finally:
        stop_receiving()
        stream._processors.remove(buffer.add)
        buffer.release()


def current(app: Any, records: list[FetchedRecord]) -> list[FetchedRecord]:
    """The records fetched since the last rebalance, if flow is on.

    The rest would be applied by a worker that may no longer own their
    partitions; unacknowledged, they are fetched again (the stream skips them
    the same way).
    """
    if not app.flow_control.is_active():
        return []
    generation = app.consumer_generation_id
    if records and records[0].generation_id == generation:
        return records  # the oldest is current, so are the rest
    return [record for record in records if record.generation_id == generation]


def batches(
    stream: Any,
    max_events: int,
    within: float,
    report_idle: bool = False,
    idle_after: float | None = None,
) -> AsyncGenerator[list[FetchedRecord], None]:
    """`take_batches`, registered with the stream so that stopping it closes the batches."""
    generator = take_batches(stream, max_events, within, report_idle, idle_after)
    stream._active_agens.add(generator)
    return generator


def acknowledge(app: Any, records: list[FetchedRecord]) -> None:
    """Let the consumer commit past these records (taken by `take_batches`).

    What `Event.ack` does for each (`faustpatches.keep_stale_messages_unacked`
    included), with its checks made once for the batch: nothing while flow is
    held, nothing of an earlier generation; and `Consumer.ack`'s bookkeeping for
    the batch at once (`faustpatches.acknowledge_fetched`). Each record is
    acknowledged once: the agent holds it until then. ~8 % of a worker's CPU
    when made event by event.
    """
    if not records or not app.flow_control.is_active():
        return
    generation = app.consumer_generation_id
    acknowledge_fetched(
        app.consumer, [record for record in records if record.generation_id == generation]
    )
