"""The Faust application of a worker, built from `Settings`.

`Runtime` wires the thin adapters around the pure core: the events agent
(`agents/`), the tables (`tables/`), the topics (`topics.py`), the timer
service (`scheduler.py`), the Redis transition log (`redislog.py`), metrics
and the HTTP API (`web.py`).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.sensors.monitor import Monitor
from faust.types import TP

from . import faustpatches, tables
from .broker import to_bootstrap
from .core.definitions import Definitions
from .core.events import Event
from .faustpatches import FetchedRecord
from .gctuning import freeze_survivors
from .metrics import Metrics
from .processor import BatchProcessor, BatchResult, Held
from .redislog import TransitionLog
from .scheduler import TimerService
from .sending import RecordBatches
from .settings import Settings
from .topics import input_channel, raw_topic, topic_names

log = logging.getLogger(__name__)


def faust_app(settings: Settings, broker_url: str) -> faust.App:
    """A Faust app tuned so that start-up and group joins take seconds."""
    from .web import advertised_host

    faustpatches.apply_all(settings.fetch_wait_ms)
    return faust.App(
        settings.app_id,
        broker=broker_url,
        store=settings.store,
        datadir=settings.data_dir,
        autodiscover=False,
        web_enabled=True,
        web_host=advertised_host(settings.web_host),  # in the URL other workers route to
        web_port=settings.web_port,
        web_bind=settings.web_host,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.session_timeout / 8,
        broker_rebalance_timeout=max(10.0, settings.session_timeout),
        broker_commit_interval=1.0,
        broker_commit_every=10_000,
        # Rebalances and shutdown wait for the batch in flight to commit its state.
        stream_wait_empty=True,
        producer_linger_ms=1,
        producer_max_batch_size=262_144,
        consumer_max_fetch_size=4 * 1024 * 1024,
        stream_buffer_maxsize=16_384,
        table_cleanup_interval=3600.0,
        key_serializer="raw",
        value_serializer="raw",
        monitor=LeanMonitor(),
    )


class LeanMonitor(Monitor):
    """Faust's monitor without its bookkeeping of each record and event.

    That bookkeeping (counters by topic, stream and task, timestamps, a dict per
    event) cost ~3 % of a worker's CPU (benchmarks/README.md) for figures only
    Faust's own statistics page shows; the worker counts what it applies in
    its metrics (`metrics.py`). Commits, sends and tables are still recorded.
    """

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        pass

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        pass


CHANGELOG_MARKER = b"\x00eventpatterns-end-of-batch"
"""A key no user id can be (user ids are text).

Tansu (the embedded broker) answers a request for a partition's end offset
with the base offset of its last record batch + 1, and Faust's recovery stops
there: it would miss the rest of that batch, the latest states. So on Tansu,
with a store that Faust restores (RocksDB), each written changelog partition
ends with a batch of one record: a tombstone of this key, which deletes
nothing when recovery applies it. The memory store needs none: its bulk read
applies whole fetched batches (`tables/restore.py`), and the marker would
cost each agent batch a produce round trip.
"""


class Runtime:
    """One worker: the core plus its adapters."""

    def __init__(
        self,
        settings: Settings,
        definitions: Definitions,
        broker_url: str,
        embedded_broker: bool = False,
    ) -> None:
        self.settings = settings
        self.embedded_broker = embedded_broker
        self.definitions = definitions
        self.bootstrap = to_bootstrap(broker_url)
        self.app = faust_app(settings, broker_url)
        self.names = topic_names(settings, definitions)
        self.channel = input_channel(self.app, self.names)
        self.state_table = tables.declare(self.app, settings.partitions)
        self.store = tables.TableStateStore(self.state_table)
        self.metrics = Metrics()
        self.redis = (
            TransitionLog(settings.redis_url, settings.redis_stream, settings.redis_maxlen)
            if settings.redis_url
            else None
        )
        self.processor = BatchProcessor(
            definitions,
            self.names,
            settings.partitions,
            self.store,
            sink=self,
            max_event_bytes=settings.max_event_bytes,
            recent_states=settings.recent_states,
        )
        self.timer_service = TimerService(self.send_tick)
        self.held: Held = {}
        """The decoded states of the users applied since their states were last encoded."""
        self._topics: dict[str, faust.TopicT] = {}
        self.listeners: list[Any] = []
        """Callables given each audit record (the dashboard's live feed)."""
        self.definitions_text: str | None = None
        """The text of the pattern file in force, once the definitions topic gave it."""
        self.failure: BaseException | None = None
        """Why the worker stopped itself (`fail`): it exits with an error."""
        self.stop_worker: Callable[[], None] = _stop_this_process
        """Asks the worker to stop as on SIGTERM."""
        self._register()

    # ------------------------------------------------------------------ wiring

    def _register(self) -> None:
        from . import agents

        agents.register(self)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.state_table.on_recover(self._register_timers)

        @self.app.on_before_shutdown.connect
        async def _stop(app: faust.App, **_: Any) -> None:
            self.timer_service.shutdown()
            if self.redis is not None:
                await self.redis.stop()

        @self.app.task
        async def _start() -> None:
            self.timer_service.start()
            if self.redis is not None:
                await self.redis.start()

        from .web import register_web

        register_web(self)

    def topic(self, name: str) -> faust.TopicT:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = raw_topic(self.app, name)
        return topic

    # ------------------------------------------------------------------ batches

    def process_batch(self, records: list[FetchedRecord]) -> AppliedBatch:
        """Apply a batch the agent took; what to write is `commit_batch`'s."""
        started = time.perf_counter()
        result = self.processor.process(records, self.held)
        self._index_timers(result.changed)
        self.metrics.observe_batch(result, time.perf_counter() - started, len(records))
        self.metrics.observe_lag([record.timestamp_ms for record in records], time.time())
        return AppliedBatch(_outputs(result))

    def _index_timers(self, users: set[str]) -> None:
        """The earliest timers of the users a batch changed, indexed at once.

        Not when their states are written: held for up to `batch_size` events,
        or until the stream pauses, a state's timers would ring that much late.
        """
        held = self.held
        self.timer_service.update_all(
            (user_id.encode(), held[user_id][0].state.next_due()) for user_id in users
        )

    def reject(self, record: FetchedRecord, error: BaseException) -> AppliedBatch:
        """A record the core failed on, to the dead-letter topic (`agents.apply_batches`)."""
        result = self.processor.reject(record, error)
        self.metrics.observe_batch(result, 0.0, 1)
        return AppliedBatch(_outputs(result))

    def fail(self, error: BaseException) -> None:
        """A batch's writes failed: stop the worker, with an error, before anything else.

        Its events are not acknowledged; a later batch of the same users, applied
        and acknowledged meanwhile, would hide them for good (the state's offsets
        would be past them). A restarted worker restores the last durable states
        and applies them again from the last committed offsets.
        """
        log.critical(
            "writing a batch failed (%r): stopping, to apply it again once restarted",
            error,
            exc_info=error,
        )
        self.failure = error
        # Stopping commits what was acknowledged, and must not wait for the rest.
        self.app.conf.stream_wait_empty = False
        self.stop_worker()

    async def commit_batch(self, applied: AppliedBatch) -> None:
        """Make a batch's outputs durable, with the states encoded before it.

        Outputs durable first, then the states that account for them: a
        batch's states stay decoded (`held`) until `encode_held`, which follows
        the write of their outputs, and the states it encodes go with the next
        batch's outputs, in the same produce request, or alone (`write_states`).
        So one round trip per batch, and a user's events in several batches
        cost one decode and one encode. A crash before the states are durable
        re-applies their records from the old states: the same outputs again,
        under the same ids, and nothing lost.
        """
        await self._write(applied.outputs)

    def encode_held(self) -> None:
        """Store the held states; their changelog records go with the next write.

        Only once the outputs they account for are durable (`commit_batch`).
        Their timers were indexed when their batches were applied (`_index_timers`).
        """
        result = BatchResult()
        self.processor.encode(self.held, result)
        self.held = {}
        self.processor.write_states(result)

    async def write_states(self) -> None:
        """Encode the held states and make every state encoded durable, now."""
        self.encode_held()
        if self.store.changelog:
            await self._write(RecordBatches())

    def reapply(self, records: list[FetchedRecord]) -> None:
        """Apply records again to the states last encoded; their outputs (durable) dropped.

        After the core failed half-way through a batch: the held states it may
        have changed go, and what they held is made again.
        """
        self.held = {}
        self.processor.reapply(records, self.held)

    def drop_held(self) -> None:
        """Forget the held states (a rebalance): their records, not acknowledged, are
        fetched and applied again from the states last written."""
        if self.held:
            log.warning("dropping the states of %d users held at a rebalance", len(self.held))
        self.held = {}

    async def _write(self, outputs: RecordBatches) -> None:
        """`outputs` and the states encoded since the last write, in one produce request."""
        if self.embedded_broker and not self.store.restores_in_bulk and self.store.changelog:
            self.store.end_changelog_batches(CHANGELOG_MARKER)
        outputs.take_all(self.store.changelog)
        await outputs.send(self.app.producer._ensure_producer())
        self.store.changelog_written(outputs.last_batch_starts)

    def send_tick(self, key: bytes, due: int) -> None:
        value = orjson.dumps({"kind": "tick", "user_id": key.decode(), "due": due})
        self.topic(self.names.timers).send_soon(key=key, value=value)
        self.metrics.timer_ticks.inc()

    async def send_reset(self, user_id: str, pattern: str) -> None:
        key = user_id.encode()
        value = orjson.dumps(
            {
                "kind": "reset",
                "user_id": user_id,
                "pattern": pattern,
                "time": time.time_ns() // 1000,
            }
        )
        await self.topic(self.names.timers).send(key=key, value=value)

    # ------------------------------------------------------------------ RecordSink

    def on_record(self, record: Mapping[str, Any], cause: Event | None) -> None:
        self.metrics.observe_record(record)
        if self.redis is not None:
            if record["kind"] == "transition":
                self.redis.add_transition(
                    record,
                    None
                    if cause is None
                    else {"event": cause.name, "attributes": cause.attributes},
                )
            elif (
                record["kind"] == "action"
                and record["action"] == "publish"
                and record.get("offer")
                and not record.get("suppressed")
            ):
                self.redis.add_offer(record)
        for listener in self.listeners:
            listener(record)

    # ------------------------------------------------------------------ pattern files

    def use_definitions(self, definitions: Definitions, text: str | None = None) -> None:
        """Switch pattern files between two batches (hot reload)."""
        if text is not None:
            self.definitions_text = text
        if definitions.version == self.definitions.version:
            return
        self.definitions = definitions
        self.processor.use(definitions)
        self.metrics.definitions_version.info({"version": definitions.version})
        log.warning("pattern file %s in force", definitions.version)

    # ------------------------------------------------------------------ rebalancing

    async def _on_revoked(self, app: faust.App, revoked: set[TP], **_: Any) -> None:
        self.drop_held()  # written by the agent as flow stopped, unless it could not be
        self.processor.recent.clear()  # recovery rewrites the states; the store decides
        self.timer_service.forget_partitions(
            {tp.partition for tp in revoked}, self.store.partition_of
        )

    async def _register_timers(self) -> None:
        """After recovery: index the timers of the users of the partitions this worker owns."""
        owned = {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic in (self.names.events, self.names.timers, self.names.source)
        }
        pending = list(self.store.pending(owned))
        self.timer_service.load(pending)
        self.metrics.timers_pending.set(len(self.timer_service.index))
        log.info("registered the timers of %d users", len(pending))
        tables.release_free_memory()  # what the changelog read left behind
        if self.settings.gc_young_threshold:
            # What lives now (the app, the recovered store) lives on: no collection
            # need walk it again.
            log.info("froze %d objects alive after recovery", freeze_survivors())


def _stop_this_process() -> None:
    """Faust's worker stops on SIGTERM: its consumer leaves the group, nothing is committed
    past what was acknowledged."""
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class AppliedBatch:
    """A batch applied by the core, its writes not yet made (`Runtime.commit_batch`).

    Its states stay in `Runtime.held` until `Runtime.encode_held`."""

    outputs: RecordBatches
    """Its outputs, produced as whole record batches."""


def _outputs(result: BatchResult) -> RecordBatches:
    outputs = RecordBatches()
    for out in result.outgoing:
        outputs.add(out.topic, out.key, out.value, list(out.headers))
    return outputs
