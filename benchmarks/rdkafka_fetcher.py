"""The events agent's partitions fetched by librdkafka (`confluent-kafka`), in a thread.

A benchmark-only proposal (`--experiment rdkafka`, `tuned_worker.py`), measured
on 2026-12-06 and not landed (README, "Changes made"). Why it was worth
measuring: Faust's consumer is aiokafka's, so every fetch request and answer,
and every record of it, is Python on the event loop the agent applies its
batches on (~4 ms of the worker's CPU per batch whatever its size); librdkafka
fetches in C threads of its own, which can use the other CPU.

Faust's consumer keeps everything else: the group membership, the assignment,
the seeks to the committed offsets and the commits. It no longer fetches the
agent's partitions (paused in aiokafka, and its fetches of them not
delivered); each time flow resumes after a rebalance, this fetcher is given
them at the positions Faust sought them to. Its records go to the agent's bulk
receiver the way aiokafka's fetches do (`faustpatches._deliver_fetch`), with
the same bookkeeping (read offsets, gaps, `PendingFetch`), so Faust's
acknowledgements, `stream_wait_empty` and commits apply to them unchanged.
When flow stops (a rebalance, a shutdown), what was fetched and not yet
delivered is dropped: it is fetched again from the committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from faust.types import TP

from eventpatterns import faustpatches
from eventpatterns.faustpatches import FetchedRecord

log = logging.getLogger(__name__)

QUEUED_FETCHES = 4
"""Consumed lists waiting for the loop before the thread waits (back-pressure)."""
POLL_SECONDS = 0.1
"""How long the thread blocks in librdkafka at most, so that it sees changes and stops."""


def consumer_config(bootstrap: str, group: str, fetch_wait_ms: int) -> dict[str, Any]:
    """librdkafka's settings: assignment by hand, no commits (Faust's consumer makes them)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,  # never joined: the partitions are assigned by hand
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": fetch_wait_ms,
        "fetch.min.bytes": int(os.environ.get("BENCH_RDKAFKA_MIN_BYTES", "1")),
        "max.partition.fetch.bytes": 4 * 1024 * 1024,
        "queued.max.messages.kbytes": 16 * 1024,
        "client.id": f"{group}-fetcher",
    }


class RdkafkaFetcher:
    """Fetches `topics`' partitions that Faust's consumer has active, for their bulk receivers."""

    def __init__(
        self, app: Any, topics: Iterable[str], config: dict[str, Any], max_records: int
    ) -> None:
        self.app = app
        self.topics = frozenset(topics)
        self.config = config
        self.max_records = max_records
        self._epoch = 0
        """Counts assignments; records consumed under an older one are dropped."""
        self._wanted: tuple[int, list[Any]] | None = None
        """The next assignment for the thread to make, with its epoch."""
        self._wanted_lock = threading.Lock()
        self._changed = threading.Event()
        self._room = threading.Event()
        self._room.set()
        self._stopping = threading.Event()
        self._arrivals: deque[tuple[int, list[Any]]] = deque()
        self._arrived = asyncio.Event()
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._syncing: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start fetching (what Faust's consumer has active of `topics`, once flow resumes)."""
        from confluent_kafka import Consumer

        loop = asyncio.get_running_loop()
        consumer = Consumer(self.config, logger=log)
        consumer_state = self.app.consumer.__dict__
        consumer_state.setdefault(_ELSEWHERE, set()).update(self.topics)
        consumer_state.setdefault(_FLOW_LISTENERS, []).append(self._on_flow_changed)
        self._thread = threading.Thread(
            target=self._fetch, args=(consumer, loop), name="rdkafka-fetcher", daemon=True
        )
        self._thread.start()
        self._spawn(self._deliver())
        if self.app.consumer.flow_active:
            self._on_flow_changed(True)

    async def stop(self) -> None:
        self._stopping.set()
        self._room.set()
        self._changed.set()
        for task in list(self._tasks):
            task.cancel()
        thread = self._thread
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._thread = None

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ assignment (loop)

    def _on_flow_changed(self, active: bool) -> None:
        """Faust's consumer stopped or resumed flow: drop what was fetched, assign anew."""
        self._epoch += 1
        self._arrivals.clear()
        self._room.set()
        self._assign(self._epoch, [])
        if active:
            if self._syncing is not None:
                self._syncing.cancel()
            self._syncing = self._spawn(self._assign_active(self._epoch))

    async def _assign_active(self, epoch: int) -> None:
        """Faust's active partitions of `topics`, at the positions Faust sought them to."""
        from aiokafka import TopicPartition as AioPartition
        from confluent_kafka import TopicPartition

        consumer = self.app.consumer
        aio = consumer._thread._ensure_consumer()
        ours = [AioPartition(tp.topic, tp.partition) for tp in consumer.assignment()]
        ours = [tp for tp in ours if tp.topic in self.topics]
        if ours:
            aio.pause(*ours)  # aiokafka fetches them no more
        active = consumer._get_active_partitions()
        positions = {tp: await aio.position(tp) for tp in ours if tp in active}
        if epoch != self._epoch:
            return  # flow changed meanwhile
        self._assign(
            epoch,
            [TopicPartition(tp.topic, tp.partition, offset) for tp, offset in positions.items()],
        )
        log.info("fetching %d partitions with librdkafka from %s", len(positions), positions)

    def _assign(self, epoch: int, partitions: list[Any]) -> None:
        with self._wanted_lock:
            self._wanted = (epoch, partitions)
        self._changed.set()

    def _take_wanted(self) -> tuple[int, list[Any]] | None:
        with self._wanted_lock:
            wanted, self._wanted = self._wanted, None
            self._changed.clear()
        return wanted

    # ------------------------------------------------------------------ the thread

    def _fetch(self, consumer: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Consume and hand each list to the loop; librdkafka's waits release the GIL."""
        epoch, assigned = 0, False
        try:
            while not self._stopping.is_set():
                wanted = self._take_wanted()
                if wanted is not None:
                    epoch, partitions = wanted
                    consumer.assign(partitions)
                    assigned = bool(partitions)
                if not assigned:
                    self._changed.wait(POLL_SECONDS)
                    continue
                if not self._room.wait(POLL_SECONDS):
                    continue
                messages = consumer.consume(1, POLL_SECONDS)
                if not messages:
                    continue
                if self.max_records > 1:
                    messages.extend(consumer.consume(self.max_records - 1, 0))
                loop.call_soon_threadsafe(self._arrive, epoch, messages)
        except Exception:
            log.exception("the librdkafka fetcher failed")
            loop.call_soon_threadsafe(self._crash)
        finally:
            consumer.close()

    def _crash(self) -> None:
        self.app.consumer.crash(RuntimeError("the librdkafka fetcher failed"))

    # ------------------------------------------------------------------ delivery (loop)

    def _arrive(self, epoch: int, messages: list[Any]) -> None:
        if epoch != self._epoch:
            return
        self._arrivals.append((epoch, messages))
        if len(self._arrivals) >= QUEUED_FETCHES:
            self._room.clear()
        self._arrived.set()

    async def _deliver(self) -> None:
        arrivals = self._arrivals
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while arrivals:
                epoch, messages = arrivals.popleft()
                self._room.set()
                if epoch == self._epoch:
                    await self._deliver_messages(epoch, messages)

    async def _deliver_messages(self, epoch: int, messages: list[Any]) -> None:
        """A consumed list, a partition at a time, as `faustpatches._deliver_fetch` does."""
        consumer = self.app.consumer
        app = consumer.app
        generation = app.consumer_generation_id
        for tp, records in self._by_partition(messages, generation).items():
            if (
                epoch != self._epoch
                or not consumer.flow_active
                or app.consumer_generation_id != generation
            ):
                return  # flow stopped: fetched again from the committed offsets
            receiver = consumer.__dict__.get(faustpatches._RECEIVERS, {}).get(tp.topic)
            new = await faustpatches._new_records(consumer, tp, records)
            if receiver is None or not new:
                continue
            fetch = faustpatches.pending_fetch(consumer, tp, len(new))
            for record in new:
                record.fetch = fetch
            await consumer.wait_first(receiver(new), consumer.suspend_flow.wait())

    def _by_partition(self, messages: list[Any], generation: int) -> dict[Any, list[FetchedRecord]]:
        """librdkafka's messages as the processor's records, by partition, in order."""
        received = time.time_ns() // 1000
        grouped: dict[Any, list[FetchedRecord]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                log.warning("librdkafka: %s", error)
                continue
            topic, partition = message.topic(), message.partition()
            key = (topic, partition)
            records = grouped.get(key)
            if records is None:
                records = grouped[key] = []
            records.append(
                FetchedRecord(
                    topic,
                    partition,
                    message.offset(),
                    message.key(),
                    message.value() or b"",
                    received,
                    _timestamp_ms(message),
                    generation,
                )
            )
        return {TP(topic, partition): records for (topic, partition), records in grouped.items()}


def _timestamp_ms(message: Any) -> int | None:
    kind, value = message.timestamp()
    return None if kind == 0 else value  # 0: TIMESTAMP_NOT_AVAILABLE


_ELSEWHERE = "bench_fetched_by_rdkafka"
_FLOW_LISTENERS = "bench_flow_listeners"


def install() -> None:
    """Have every worker's events agent fetch its topics with `RdkafkaFetcher`."""
    from eventpatterns.app import Runtime

    register = Runtime._register

    def register_with_fetcher(self: Runtime) -> None:
        register(self)
        config = consumer_config(self.bootstrap, self.settings.app_id, self.settings.fetch_wait_ms)
        fetcher = RdkafkaFetcher(self.app, self.channel.topics, config, self.settings.batch_size)

        @self.app.task
        async def _start_fetcher() -> None:
            fetcher.start()

        @self.app.on_before_shutdown.connect
        async def _stop_fetcher(app: Any, **_: Any) -> None:
            await fetcher.stop()

    Runtime._register = register_with_fetcher  # type: ignore[method-assign]
    _skip_fetched_elsewhere()
    _report_flow_changes()


def _skip_fetched_elsewhere() -> None:
    """aiokafka's fetches of the fetcher's topics (made before they were paused) go nowhere."""
    deliver = faustpatches._deliver_fetch

    async def deliver_fetch(consumer: Any, records: Any, active_partitions: Any) -> None:
        elsewhere = consumer.__dict__.get(_ELSEWHERE, ())
        if elsewhere:
            records = {tp: rs for tp, rs in records.items() if tp.topic not in elsewhere}
        if records:
            await deliver(consumer, records, active_partitions)

    faustpatches._deliver_fetch = deliver_fetch


def _report_flow_changes() -> None:
    """Tell the fetcher when Faust's consumer stops flow (a rebalance begins, shutdown) and
    resumes it (the stream partitions sought to their committed offsets)."""
    from faust.transport.consumer import Consumer

    def notifying(change: Callable[[Any], None], active: bool) -> Callable[[Any], None]:
        def changed(self: Any) -> None:
            change(self)
            for listener in self.__dict__.get(_FLOW_LISTENERS, ()):
                listener(active)

        return changed

    Consumer.stop_flow = notifying(Consumer.stop_flow, False)  # type: ignore[method-assign]
    Consumer.resume_flow = notifying(Consumer.resume_flow, True)  # type: ignore[method-assign]
