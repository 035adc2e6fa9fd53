"""Changes to faust-streaming's consumer that a worker applies before it builds its app.

Each replaces one method, keeps the original as `__wrapped__` (so applying it
twice changes nothing) and says which behaviour of faust-streaming it changes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter
from typing import Any

from .processor import Incoming


def apply_all(fetch_wait_ms: int) -> None:
    tune_fetch_wait(fetch_wait_ms)
    keep_stale_messages_unacked()
    seek_before_fetching_streams()
    deliver_without_tasks()
    start_tables_without_delay()
    consume_on_the_app_loop()
    deliver_fetches_in_bulk()
    leave_the_group_from_generation_zero()


def tune_fetch_wait(milliseconds: int) -> None:
    """Set the worker consumer's `fetch_max_wait_ms`, which Faust hard-codes to 1500.

    A broker that does not answer a waiting fetch as soon as data arrives (Tansu
    among them) otherwise adds up to that long to every hop of an event.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = AIOKafkaConsumerThread._create_worker_consumer
    original = getattr(create, "__wrapped__", create)

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = milliseconds
        return consumer

    create_worker_consumer.__wrapped__ = original  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def leave_the_group_from_generation_zero() -> None:
    """Leave the consumer group on stop also from a generation numbered 0.

    aiokafka sends LeaveGroup only from a generation above 0: Kafka numbers a
    group's first generation 1, but Tansu (the embedded broker) numbers it 0. A
    worker stopped in its group's first generation left without a word, and the
    others took its partitions only once its session had timed out
    (`EVENTPATTERNS_SESSION_TIMEOUT`), not in the rebalance its leaving starts.
    """
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    leave = getattr(
        GroupCoordinator._maybe_leave_group, "__wrapped__", GroupCoordinator._maybe_leave_group
    )

    async def maybe_leave_group(self: Any) -> None:
        if self.generation == 0:
            # The request names the group and the member, not the generation; the
            # generation is reset right after it.
            self.generation = 1
        await leave(self)

    maybe_leave_group.__wrapped__ = leave  # type: ignore[attr-defined]
    GroupCoordinator._maybe_leave_group = maybe_leave_group  # type: ignore[method-assign]


def keep_stale_messages_unacked() -> None:
    """Never acknowledge a record fetched under an earlier consumer generation, or while
    flow is stopped for a rebalance or shutdown.

    faust-streaming skips such records and acknowledges them, so the commit can
    move past records that were never applied (faust issues #221, #223, #312).
    Unacknowledged, they hold the commit back: they are fetched again (after the
    rebalance's seek, or by the next owner) and applied, and the per-user
    offsets in the state skip whatever had been applied already.
    """
    from faust.events import Event

    ack = getattr(Event.ack, "__wrapped__", Event.ack)

    def ack_if_current(self: Any) -> bool:
        app = self.app
        if (
            self.message.generation_id != app.consumer_generation_id
            or not app.flow_control.is_active()
        ):
            return False
        return bool(ack(self))

    ack_if_current.__wrapped__ = ack  # type: ignore[attr-defined]
    Event.ack = ack_if_current  # type: ignore[method-assign]


def seek_before_fetching_streams() -> None:
    """Hold the stream partitions while the consumer seeks them to their committed offsets.

    At the end of a rebalance faust-streaming resumes the stream partitions, then
    seeks them (broker round trips), then resumes flow, which clears the agents'
    queues. What was fetched in between is queued and then dropped: a partition
    that is sought fetches it again, but one without a committed offset (its
    previous owner died before its first commit) is not sought, and those records
    were never applied. So the seek runs with the stream partitions held, and a
    partition without a committed offset is sought to offset 0 (the consumer
    resets an offset below the log start to the earliest, as configured): the
    order faust-streaming PR #217 meant. The seek faust-streaming makes while
    flow is stopped (mid-rebalance) holds nothing: recovery holds them then.
    """
    from faust.transport.consumer import Consumer

    seek = getattr(Consumer.perform_seek, "__wrapped__", Consumer.perform_seek)

    async def perform_seek(self: Any) -> None:
        held = set()
        if self.flow_active:
            held = {tp for tp in self._get_active_partitions() if not self._is_changelog_tp(tp)}
            self.pause_partitions(held)
        try:
            await seek(self)
            for tp in self.assignment():
                if not self._is_changelog_tp(tp) and not self._committed_offset.get(tp):
                    await self.seek(tp, 0)
        finally:
            self.resume_partitions(held)

    perform_seek.__wrapped__ = seek  # type: ignore[attr-defined]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


def deliver_without_tasks() -> None:
    """Hand each fetched record to the streams without four tasks per record.

    faust-streaming's consumer delivers every record through
    `wait_first(deliver(record), suspend_flow.wait())`, which makes a task of
    each (and two more for the consumer's stopped and crashed events), waits for
    the first and cancels the rest: several event-loop rounds per record, most
    of the time the delivery itself needs none (it only waits when a stream's
    queue is full or flow is held). Now the delivery runs at once; only when it
    has to wait is the rest of it handed to the original `wait_first`, so a
    rebalance that suspends flow still abandons it as before.
    """
    from faust.transport.consumer import Consumer
    from mode.services import WaitResults

    wait_first = getattr(Consumer.wait_first, "__wrapped__", Consumer.wait_first)

    async def wait_first_delivering_at_once(self: Any, *coros: Any, timeout: Any = None) -> Any:
        first = coros[0] if coros else None
        if not inspect.iscoroutine(first) or self._stopped.is_set() or self._crashed.is_set():
            return await wait_first(self, *coros, timeout=timeout)
        try:
            waiting_on = first.send(None)
        except StopIteration as done:
            _close_unstarted(coros[1:])
            return WaitResults([first], [done.value], False)
        except BaseException:
            _close_unstarted(coros[1:])
            raise
        return await wait_first(self, Resumed(first, waiting_on), *coros[1:], timeout=timeout)

    wait_first_delivering_at_once.__wrapped__ = wait_first  # type: ignore[attr-defined]
    Consumer.wait_first = wait_first_delivering_at_once  # type: ignore[method-assign]


def start_tables_without_delay() -> None:
    """Start the table manager without faust-streaming's one-second sleep.

    `TableManager.on_start` sleeps a second before it subscribes the changelogs,
    for tables declared while the app starts. A worker declares its one table
    before (`Runtime.__init__`), so every start, and every takeover by a new
    worker, waited that second for nothing.
    """
    from faust.tables.manager import TableManager

    on_start = getattr(TableManager.on_start, "__wrapped__", TableManager.on_start)

    async def on_start_at_once(self: Any) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()

    on_start_at_once.__wrapped__ = on_start  # type: ignore[attr-defined]
    TableManager.on_start = on_start_at_once  # type: ignore[method-assign]


def consume_on_the_app_loop() -> None:
    """Run the Kafka consumer on the app's event loop, not in a thread of its own.

    faust-streaming's aiokafka driver runs its consumer in a `ServiceThread`:
    a thread with its own loop, every fetch, commit and seek a call across
    threads. Under load that thread waits for the GIL twice as long as it works
    (py-spy, benchmarks/README.md), and each fetched batch waits for the agent
    to let go of the interpreter: p99 event -> offer at 70 % load 99-146 ms
    against 61-68 ms on one loop, at 9-11 % more capacity. The thread's service
    now serves as a task on the app's loop, and calls into it are awaited
    directly; the rebalance callbacks still go through the consumer's method
    queue, on the same loop. Heartbeats now wait while a batch is applied
    (milliseconds; the session timeout is seconds).
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from mode.services import Service
    from mode.utils.futures import maybe_async, notify

    thread = AIOKafkaConsumerThread
    if getattr(thread.start, "__wrapped__", None) is not None:
        return
    original_init = thread.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        loop = kwargs.get("loop") or asyncio.get_event_loop_policy().get_event_loop()
        original_init(self, *args, **{**kwargs, "thread_loop": loop})

    async def start(self: Any) -> None:
        self._thread_started.set()
        self._thread_running = asyncio.get_running_loop().create_future()
        self._serving = asyncio.ensure_future(serve(self))
        try:
            await self._thread_running
        finally:
            self._thread_running = None

    async def serve(self: Any) -> None:
        """`ServiceThread._serve`, without a thread and without cancelling the loop's tasks."""
        try:
            await self._default_start()
            await self.on_thread_started()
            notify(self._thread_running)
            await self.wait_until_stopped()
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            _maybe_set_exception(self._thread_running, error)
            await self.crash(error)
            raise
        finally:
            await self.on_thread_stop()
            await self._default_stop_children()
            self._shutdown.set()
            await self._default_stop_futures()
            await self._default_stop_exit_stacks()

    async def stop(self: Any) -> None:
        if self._started.is_set():
            await Service.stop(self)

    async def call_thread(self: Any, fun: Any, *args: Any, **kwargs: Any) -> Any:
        return await maybe_async(fun(*args, **kwargs))

    async def cast_thread(self: Any, fun: Any, *args: Any, **kwargs: Any) -> None:
        self.add_future(maybe_async(fun(*args, **kwargs)))

    def stopped_set(self: Any) -> None:
        self._stopped.set()

    start.__wrapped__ = thread.start  # type: ignore[attr-defined]
    thread.__init__ = __init__  # type: ignore[method-assign]
    thread.start = start  # type: ignore[method-assign]
    thread.stop = stop  # type: ignore[method-assign]
    thread.call_thread = call_thread  # type: ignore[method-assign]
    thread.cast_thread = cast_thread  # type: ignore[method-assign]
    thread._stopped_set = stopped_set  # type: ignore[method-assign]


BulkReceiver = Callable[[list["FetchedRecord"]], Awaitable[None]]
"""Takes the records of one fetched partition, in order; returns once it has room for more."""


class PendingFetch:
    """A fetched partition's records that the agent has not all acknowledged yet.

    Faust tracks each record's message in `Consumer.unacked`, and a rebalance or
    a shutdown waits for that set to empty (`stream_wait_empty`). Records
    delivered in bulk are tracked by their fetch instead: one entry per fetch,
    taken out once all of its records are acknowledged. The set holds weak
    references, as for Faust's messages: records dropped unacknowledged (of an
    earlier generation) take their fetch out of it with them. `message` is
    Faust's own, for a record that came the stream's way.
    """

    __slots__ = ("__weakref__", "acked", "message", "refcount", "tp")

    def __init__(self, tp: Any, refcount: int, message: Any = None) -> None:
        self.tp = tp
        self.refcount = refcount
        """Records not acknowledged yet (Faust's `wait_empty` logs a message's refcount)."""
        self.acked = False
        self.message = message


@dataclass(slots=True)
class FetchedRecord(Incoming):
    """A consumed record as the processor takes it, and what acknowledging it needs.

    Made straight from aiokafka's record: Faust's message and event for each
    record were ~10 % of a worker's CPU with the seed's patterns.
    """

    timestamp_ms: int | None = None
    generation_id: int = 0
    """The consumer generation it was fetched in; after a rebalance it is stale."""
    fetch: PendingFetch | None = None


def fetched_from_event(event: Any) -> FetchedRecord:
    """A record that took Faust's path (a Faust event), as the bulk path makes them."""
    message, key, value = event.message, event.key, event.value
    timestamp = message.timestamp
    return FetchedRecord(
        message.topic,
        message.partition,
        message.offset,
        key if key is None or isinstance(key, bytes) else str(key).encode(),
        value if isinstance(value, bytes) else bytes(value or b""),
        time.time_ns() // 1000,
        None if timestamp is None else round(timestamp * 1000),
        message.generation_id,
        PendingFetch(message.tp, 1, message),
    )


def receive_in_bulk(app: Any, topics: Iterable[str], receiver: BulkReceiver) -> Callable[[], None]:
    """Have the consumer hand `topics`' records to `receiver`, a fetch at a time.

    Needs `deliver_fetches_in_bulk`; without it the records take Faust's path
    (the channel, the stream). Returns what stops it.
    """
    receivers: dict[str, BulkReceiver] = app.consumer.__dict__.setdefault(_RECEIVERS, {})
    names = list(topics)
    for name in names:
        receivers[name] = receiver

    def stop_receiving() -> None:
        for name in names:
            if receivers.get(name) is receiver:
                del receivers[name]

    return stop_receiving


_RECEIVERS = "eventpatterns_bulk_receivers"


def deliver_fetches_in_bulk() -> None:
    """Hand each fetched partition's records to its topic's bulk receiver as one list.

    faust-streaming delivers record by record: an async generator step, the
    consumer's `wait_first`, the conductor's lock, flow-control and producer
    checks, the channel's decode and queue, then the stream's iterator and
    processors, for records the events agent only gathers into batches. Handed
    over a fetch at a time, a worker applies 2.4x the events per second with the
    seed's patterns (benchmarks/README.md). Records of a topic with a receiver
    (`receive_in_bulk`) now go to it a partition's fetch at a time, as records
    the processor takes (`FetchedRecord`), without Faust's message and event for
    each, tracked for acknowledgement by their fetch (`PendingFetch`); the receiver's
    wait for room holds the next fetch (back-pressure) unless flow is suspended
    for a rebalance. Records of other topics (the definitions topic, Faust's
    own) take Faust's path, record by record, unchanged.
    """
    from faust.transport.consumer import CONSUMER_FETCHING, Consumer

    drain = getattr(Consumer._drain_messages, "__wrapped__", Consumer._drain_messages)

    async def drain_messages(self: Any, fetcher: Any) -> None:
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active_partitions = await self._wait_next_records(1.0)
                await self.sleep(0)  # as Faust: a loop of ready fetches lets others run
                if records and not self.should_stop and self.flow_active:
                    await _deliver_fetch(self, records, active_partitions)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as error:
            self.log.exception("Drain messages raised: %r", error)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    drain_messages.__wrapped__ = drain  # type: ignore[attr-defined]
    Consumer._drain_messages = drain_messages  # type: ignore[method-assign]


async def _deliver_fetch(consumer: Any, records: Any, active_partitions: Any) -> None:
    """Faust's `getmany` and `_drain_messages` for one fetch, a partition at a time."""
    app = consumer.app
    generation_id = app.consumer_generation_id
    receivers: dict[str, BulkReceiver] = consumer.__dict__.get(_RECEIVERS, {})
    for tp, tp_records in records.items():
        if not consumer.flow_active or app.consumer_generation_id != generation_id:
            return  # a rebalance began: what is left is fetched again after it
        if not (
            active_partitions is None
            or tp in active_partitions
            or tp in consumer._buffered_partitions
        ):
            continue
        app.monitor.track_tp_end_offset(tp, consumer.highwater(tp))
        new = await _new_records(consumer, tp, tp_records)
        receiver = receivers.get(tp.topic)
        if receiver is None:
            to_message = consumer._to_message
            for record in new:
                await _deliver_one(consumer, to_message(tp, record))
        elif new:
            await consumer.wait_first(
                receiver(_fetched_records(consumer, tp, new)), consumer.suspend_flow.wait()
            )


async def _new_records(consumer: Any, tp: Any, tp_records: list[Any]) -> list[Any]:
    """The records not read before; gaps in offsets noted for commits (Faust's `getmany`)."""
    read_offsets = consumer._read_offset
    acks_enabled = consumer.app.topics.acks_enabled_for(tp.topic)
    new = []
    for record in tp_records:
        offset = record.offset
        read = read_offsets[tp]
        if read is not None and offset < read:
            continue  # Faust drops these too
        if acks_enabled and read and offset - read > 1:
            await consumer._add_gap(tp, read + 1, offset)
        read_offsets[tp] = offset
        new.append(record)
    commit_every = consumer._commit_every
    if commit_every is not None and consumer._n_acked >= commit_every:
        consumer._n_acked = 0
        await consumer.commit()
    return new


async def _deliver_one(consumer: Any, message: Any) -> None:
    await consumer.wait_first(consumer.callback(message), consumer.suspend_flow.wait())


def pending_fetch(consumer: Any, tp: Any, count: int) -> PendingFetch:
    """`count` records of partition `tp` delivered in bulk, tracked until acknowledged."""
    fetch = PendingFetch(tp, count)
    if tp.topic in consumer.app.topics.acking_topics:
        consumer.unacked.add(fetch)
    return fetch


def _fetched_records(consumer: Any, tp: Any, records: list[Any]) -> list[FetchedRecord]:
    """aiokafka's records of one partition, pending acknowledgement as one fetch."""
    app = consumer.app
    fetch = pending_fetch(consumer, tp, len(records))
    generation, received = app.consumer_generation_id, time.time_ns() // 1000
    return [
        FetchedRecord(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value or b"",
            received,
            record.timestamp,
            generation,
            fetch,
        )
        for record in records
    ]


def acknowledge_fetched(consumer: Any, records: list[FetchedRecord]) -> None:
    """`Consumer.ack`'s bookkeeping for a batch of fetched records, a fetch at a time.

    The offsets go where `Consumer.ack` puts a message's (what the next commit
    goes past), each fetch leaves `Consumer.unacked` once all of its records
    are acknowledged, and records that took Faust's path are acknowledged as
    their messages (`acknowledge_all`).
    """
    from faust.types.tuples import ack_lock
    from mode.utils.futures import notify

    acks_enabled_for = consumer.app.topics.acks_enabled_for
    committed_offsets = consumer._committed_offset
    acked_index, acked, unacked = consumer._acked_index, consumer._acked, consumer.unacked
    enabled: dict[str, bool] = {}
    messages = []
    count = 0
    with ack_lock:
        for fetch, group in groupby(records, _fetch_of):
            if fetch.message is not None:
                messages.append(fetch.message)
                continue
            offsets = list(map(_offset_of, group))
            if fetch.acked:
                continue
            fetch.refcount -= len(offsets)
            if fetch.refcount <= 0:
                fetch.acked = True
                unacked.discard(fetch)
            tp = fetch.tp
            if tp.topic not in enabled:
                enabled[tp.topic] = acks_enabled_for(tp.topic)
            if not enabled[tp.topic]:
                continue
            committed = committed_offsets[tp]
            index = acked_index.get(tp, ())
            new = [
                offset
                for offset in dict.fromkeys(offsets)  # once each, as Faust's index does
                if (committed is None or offset >= committed) and offset not in index
            ]
            if new:
                acked_index[tp].update(new)
                acked[tp].extend(new)
                count += len(new)
        consumer._n_acked += count
    if messages:
        acknowledge_all(consumer, messages)
    else:
        notify(consumer._waiting_for_ack)


_fetch_of = attrgetter("fetch")
_offset_of = attrgetter("offset")


def acknowledge_all(consumer: Any, messages: list[Any]) -> None:
    """`Consumer.ack` for many records: the same bookkeeping, Faust's ack lock taken once.

    Per record, `Consumer.ack` takes the lock, asks whether the topic is acked and
    wakes whoever waits for acks: ~4 % of a worker's CPU, for the agent's batches.
    """
    from faust.types.tuples import ack_lock
    from mode.utils.futures import notify

    acks_enabled_for = consumer.app.topics.acks_enabled_for
    committed_offsets = consumer._committed_offset
    acked_index, acked, unacked = consumer._acked_index, consumer._acked, consumer.unacked
    enabled: dict[str, bool] = {}
    count = 0
    with ack_lock:
        for message in messages:
            if message.acked:
                continue
            message.acked = True
            topic = message.topic
            if topic not in enabled:
                enabled[topic] = acks_enabled_for(topic)
            if not enabled[topic]:
                continue
            tp, offset = message.tp, message.offset
            committed = committed_offsets[tp]
            if committed is not None and offset < committed:
                continue
            index = acked_index[tp]
            if offset not in index:
                unacked.discard(message)
                index.add(offset)
                acked[tp].append(offset)
                count += 1
        consumer._n_acked += count
    notify(consumer._waiting_for_ack)


def _maybe_set_exception(future: Any, error: BaseException) -> None:
    if future is not None and not future.done():
        future.set_exception(error)


def _close_unstarted(coros: tuple[Any, ...]) -> None:
    """Close the coroutines that lost before they ran (no 'never awaited' warning)."""
    for coro in coros:
        if inspect.iscoroutine(coro):
            coro.close()


class Resumed(Awaitable[Any]):
    """The rest of a coroutine that was run up to its first wait, as an awaitable.

    A task awaiting it waits for what the coroutine was waiting on, then goes
    on with the coroutine, passing in results and exceptions (cancellation
    included) as if the task had run it from the start.
    """

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Any, waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting_on = self._coro, self._waiting_on
        while True:
            try:
                value = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as error:  # passed on, as a task would
                try:
                    waiting_on = coro.throw(error)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_on = coro.send(value)
                except StopIteration as done:
                    return done.value
