"""One batch of records through the core: the stream agent's logic, without Faust.

The agent hands over what it consumed (`Incoming`), and this module decodes,
deduplicates, applies the core, and says what to write (`Outgoing`, state).
Storage and sending are interfaces, so tests drive it with in-memory fakes and
the runtime with Faust tables and topics.

Exactly-once in effect: each user's stored state carries the offset of the
last record applied from each topic partition; a record at or below it (a
re-delivery after a crash or rebalance) is skipped. So the state may become
durable only after the outputs it accounts for: the caller sends the outputs,
waits for them, and then calls `write_states`. Outputs that were sent
before a crash, but whose state write was lost, are produced again from the
same state and input, with the same `id` (`topic:partition:offset.n` of the
input record), so duplicates in the audit trail are detectable.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import zstandard

from .core.definitions import Definitions
from .core.evaluator import Engine
from .core.events import DEFAULT_SOURCE, BadEvent, Event, decode_event
from .core.keys import murmur2 as murmur2
from .core.keys import partition_for as partition_for
from .core.state import UserState


def now_us() -> int:
    return time.time_ns() // 1000


# Incoming and Outgoing are made once per record: not frozen, as a frozen
# dataclass's __init__ takes four times as long (0.71 against 0.17 us).
@dataclass(slots=True)
class Incoming:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    received_at: int = 0
    """Microseconds; stands in for an event's absent timestamp."""


@dataclass(slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Topics:
    source: str
    events: str
    timers: str
    actions: str
    dlq: str
    history: str


class StateStore(Protocol):
    def get(self, user_id: str) -> bytes | None: ...

    def put(self, user_id: str, value: bytes, partition: int) -> None: ...


class RecordSink(Protocol):
    """Where a produced record's side effects go beyond Kafka (the Redis log, metrics)."""

    def on_record(self, record: Mapping[str, Any], cause: Event | None) -> None: ...


STORED_FORMAT = 2
"""Stored values: this byte, the earliest timer (8 bytes, -1 for none), the
partition the value belongs to (2 bytes), then the zstd-compressed envelope.
Format 1 lacks the partition; values written before it are the envelope as is (`{`)."""
_HEAD = struct.Struct(">BqH")
_HEAD_V1 = struct.Struct(">Bq")
NO_PARTITION = 0xFFFF
_COMPRESSOR = zstandard.ZstdCompressor(level=1, write_checksum=False)
_SMALL_COMPRESSOR = zstandard.ZstdCompressor(level=-1, write_checksum=False)
SMALL_STATE = 512
"""Envelopes up to this many bytes are compressed at zstd's fast level -1: level 1
costs ~2.6 us whatever the size below that, -1 ~0.7 us for ~15 % more bytes
(clickstream states of ~180 B: 138 against 164 B); larger ones (~900 B with ten
patterns) keep level 1, where -1 would cost a quarter more memory."""
_DECOMPRESSOR = zstandard.ZstdDecompressor()


@dataclass
class Envelope:
    """A user's stored value: the offsets applied, and the core's state.

    Compressed, because idle users are most of the memory of a worker: a
    typical state halves (1,080 -> ~530 B) for ~8 us to compress and ~3 us to
    decompress (benchmarks/README.md). The earliest timer and the partition
    stay readable in front, so that a worker indexes the timers of a million
    recovered users without decoding their states, and needs no map from each
    user to its partition beside the values.
    """

    offsets: dict[str, int]
    state: UserState
    version: str = ""
    """The pattern-file version the state was last written under."""

    @staticmethod
    def decode(raw: bytes) -> Envelope:
        head, _, body = unpack_stored(raw).partition(b"\x00")
        meta = orjson.loads(head)
        return Envelope(meta["offsets"], UserState.decode(body), meta.get("version", ""))

    def encode(self, partition: int | None = None) -> bytes:
        meta = {"offsets": self.offsets, "version": self.version}
        plain = orjson.dumps(meta) + b"\x00" + self.state.encode()
        return pack_stored(plain, self.state.next_due(), partition)


def pack_stored(plain: bytes, due: int | None, partition: int | None = None) -> bytes:
    """An encoded envelope as stored: compressed, behind its earliest timer and partition."""
    if partition is not None and not 0 <= partition < NO_PARTITION:
        raise ValueError(f"partition {partition} out of range")
    head = _HEAD.pack(
        STORED_FORMAT, -1 if due is None else due, NO_PARTITION if partition is None else partition
    )
    compressor = _SMALL_COMPRESSOR if len(plain) <= SMALL_STATE else _COMPRESSOR
    return head + compressor.compress(plain)


def _head_size(raw: bytes) -> int:
    form = raw[0]
    if form == STORED_FORMAT:
        return _HEAD.size
    if form == 1:
        return _HEAD_V1.size
    raise ValueError(f"stored state in an unknown format ({form})")


def unpack_stored(raw: bytes) -> bytes:
    """The encoded envelope of a stored value."""
    if raw[:1] == b"{":
        return raw
    plain: bytes = _DECOMPRESSOR.decompress(raw[_head_size(raw) :])
    return plain


def stored_next_due(raw: bytes) -> int | None:
    """The earliest timer of a stored value, without decoding its state."""
    if raw[:1] == b"{":
        return Envelope.decode(raw).state.next_due()
    _, due = _HEAD_V1.unpack_from(raw)  # the same place in every format
    return None if due < 0 else int(due)


def stored_partition(raw: bytes) -> int | None:
    """The partition a stored value was written for (None: written before it was kept)."""
    if not raw or raw[0] != STORED_FORMAT:
        return None
    _, _, partition = _HEAD.unpack_from(raw)
    return None if partition == NO_PARTITION else int(partition)


def _known_home(held: tuple[Envelope, int] | None, stored: bytes | None) -> int | None:
    """The partition a user's state lives in, if known without hashing the id.

    A state is applied and written only in its user's home partition: this
    batch's first event of the user was checked, and a stored value names
    the partition it was written for (None in values older than that). The
    one exception is a record put on the events topic elsewhere than Kafka's
    default partitioner would (not by a worker, `post` or the API): applied
    where it is, it makes that partition the user's until a record from home.
    """
    if held is not None:
        return held[1]
    return stored_partition(stored) if stored is not None else None


class RecentStates:
    """The decoded states of the users written last, so as not to decode them again.

    Under a paced load a user's events fall in consecutive small batches, and
    each batch decoded its users' stored values: ~15 % of a worker's CPU at
    a third of its capacity (benchmarks/README.md). An entry is the value
    written and the envelope it was encoded from; it serves a batch only while
    the store still holds an equal value, so a state restored, written by
    another worker or by a batch that failed is decoded from the store, the
    source of truth. A batch takes the entries it uses out (`take`): a batch
    that raises half-way leaves none it may have changed, and only a write
    that became durable puts them back (`keep`). The oldest go first beyond
    `size` users (0: none kept).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[str, tuple[bytes, Envelope]] = {}

    def take(self, user_id: str, stored: bytes) -> Envelope | None:
        entry = self.entries.pop(user_id, None)
        if entry is None or entry[0] != stored:
            return None
        return entry[1]

    def keep(self, user_id: str, stored: bytes, envelope: Envelope) -> None:
        if not self.size:
            return
        entries = self.entries
        entries.pop(user_id, None)  # to the end: the most recent
        entries[user_id] = (stored, envelope)
        if len(entries) > self.size:
            del entries[next(iter(entries))]

    def clear(self) -> None:
        self.entries.clear()


Held = dict[str, tuple[Envelope, int]]
"""user -> (decoded state, partition) of the users applied since their states were encoded."""


@dataclass
class BatchResult:
    outgoing: list[Outgoing] = field(default_factory=list)
    writes: list[tuple[str, bytes, int]] = field(default_factory=list)
    """(user, stored value, partition) of every user the batch changed."""
    decoded: list[Envelope] = field(default_factory=list)
    """The envelope each of `writes` was encoded from, in the same order."""
    timers: dict[str, int | None] = field(default_factory=dict)
    """user -> earliest due (None: none) for every user whose state was written."""
    changed: set[str] = field(default_factory=set)
    """The users whose states the batch changed (held or written)."""
    events: int = 0
    bad: int = 0
    duplicates: int = 0
    forwarded: int = 0
    ticks: int = 0
    records: int = 0


class BatchProcessor:
    def __init__(
        self,
        definitions: Definitions,
        topics: Topics,
        partitions: int,
        store: StateStore,
        sink: RecordSink | None = None,
        max_event_bytes: int = 1 << 20,
        clock: Callable[[], int] = now_us,
        recent_states: int = 1_000,
    ) -> None:
        self.topics = topics
        self.partitions = partitions
        self.store = store
        self.sink = sink
        self.max_event_bytes = max_event_bytes
        self.clock = clock
        self.recent = RecentStates(recent_states)
        self.use(definitions)

    def use(self, definitions: Definitions) -> None:
        """Switch pattern files; takes effect from the next batch."""
        self.definitions = definitions
        self.engine = Engine(definitions)
        self.version = definitions.version

    # ------------------------------------------------------------------ the batch

    def process(self, batch: Iterable[Incoming], held: Held | None = None) -> BatchResult:
        """Apply a batch; the states it changed encoded in `result.writes`, or kept in `held`.

        `held`: the decoded states of the users applied since they were last
        encoded (`encode`), kept across batches by the events agent, so that a
        user's events in several small batches cost one decode and one encode.
        A batch that raises may have changed some of them half-way: they are
        then not to be encoded (the agent makes them again, `Runtime.reapply`).
        """
        result = BatchResult()
        touched: Held = {} if held is None else held
        for incoming in batch:
            if incoming.topic == self.topics.timers:
                self._command(incoming, touched, result)
            else:
                self._event(incoming, touched, result)
        if held is None:
            self.encode(touched, result)
        return result

    def reapply(self, records: Iterable[Incoming], held: Held) -> None:
        """Apply again, into `held`, records whose outputs were made and written before.

        Their records went to the sink (the Redis log, the live feed) the first
        time: not again.
        """
        sink, self.sink = self.sink, None
        try:
            self.process(records, held)
        finally:
            self.sink = sink

    def encode(self, held: Held, result: BatchResult) -> None:
        """The states of `held`, to write (`result.writes`, `decoded`, `timers`)."""
        for user_id, (envelope, partition) in held.items():
            result.writes.append((user_id, envelope.encode(partition), partition))
            result.decoded.append(envelope)
            result.timers[user_id] = envelope.state.next_due()

    def reject(self, incoming: Incoming, error: BaseException) -> BatchResult:
        """A record the core failed on, as a dead letter: the stream goes on without it."""
        reason = f"internal error: {error!r}"
        return BatchResult(outgoing=[self._dead_letter(incoming, reason)], bad=1)

    def write_states(self, result: BatchResult) -> None:
        """Store the batch's states; only once its outputs are durable (see the module doc)."""
        for (user_id, value, partition), envelope in zip(
            result.writes, result.decoded, strict=True
        ):
            self.store.put(user_id, value, partition)
            self.recent.keep(user_id, value, envelope)

    def _envelope(self, user_id: str, touched: Held) -> Envelope:
        held = touched.get(user_id)
        if held is not None:
            return self._current(held[0])
        return self._decoded(user_id, self.store.get(user_id))

    def _decoded(self, user_id: str, raw: bytes | None) -> Envelope:
        if raw is None:
            return Envelope({}, self.engine.new_state(user_id), self.version)
        return self._current(self.recent.take(user_id, raw) or Envelope.decode(raw))

    def _current(self, envelope: Envelope) -> Envelope:
        """The state under the pattern file in force (one held across batches may predate it)."""
        if envelope.version != self.version:
            self.engine.forget_stale(envelope.state)
            envelope.version = self.version
        return envelope

    def _already_applied(self, envelope: Envelope, incoming: Incoming) -> bool:
        position = f"{incoming.topic}:{incoming.partition}"
        if envelope.offsets.get(position, -1) >= incoming.offset:
            return True
        envelope.offsets[position] = incoming.offset
        return False

    def _event(self, incoming: Incoming, touched: Held, result: BatchResult) -> None:
        source = self.definitions.source
        mapping = source if incoming.topic == source.topic else DEFAULT_SOURCE
        try:
            event = decode_event(
                incoming.value,
                mapping,
                received_at=incoming.received_at or self.clock(),
                max_bytes=self.max_event_bytes,
            )
        except BadEvent as error:
            result.bad += 1
            result.outgoing.append(self._dead_letter(incoming, str(error)))
            return
        user_id = event.user_id
        key = user_id.encode()
        held = touched.get(user_id)
        stored = self.store.get(user_id) if held is None else None
        if self._needs_rekeying(incoming, key, _known_home(held, stored)):
            # Not in its user's partition: move it to the events topic, keyed by user id.
            result.forwarded += 1
            result.outgoing.append(Outgoing(self.topics.events, key, orjson.dumps(event.to_json())))
            return
        envelope = self._current(held[0]) if held is not None else self._decoded(user_id, stored)
        if self._already_applied(envelope, incoming):
            result.duplicates += 1
            return
        touched[user_id] = (envelope, incoming.partition)
        result.changed.add(user_id)
        result.events += 1
        records = self.engine.process(envelope.state, event)
        self._emit(records, incoming, event, result)

    def _needs_rekeying(self, incoming: Incoming, key: bytes, home: int | None) -> bool:
        """A user's home is the partition Kafka's default partitioner gives its id.

        Timer ticks and posts are keyed by user id, so state stays whole only if
        every event is applied there. On the events topic a record with the right
        key is applied where it is (a different partition count is a deployment
        error, and re-keying would loop). `home`, where the user's state was
        last written, spares hashing the id (murmur2 in Python, ~7 % of a
        worker's CPU) for every event but a user's first.
        """
        if incoming.key != key:
            return True
        if incoming.topic == self.topics.events:
            return False
        if home is None:
            home = partition_for(key, self.partitions)
        return incoming.partition != home

    def _command(self, incoming: Incoming, touched: Held, result: BatchResult) -> None:
        try:
            command = orjson.loads(incoming.value)
            user_id = command["user_id"]
            kind = command["kind"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            result.bad += 1
            result.outgoing.append(self._dead_letter(incoming, f"bad timer record: {error}"))
            return
        envelope = self._envelope(user_id, touched)
        if self._already_applied(envelope, incoming):
            result.duplicates += 1
            return
        touched[user_id] = (envelope, incoming.partition)
        result.changed.add(user_id)
        if kind == "tick":
            result.ticks += 1
            records = self.engine.advance(envelope.state, int(command["due"]))
        elif kind == "reset":
            records = self.engine.reset(
                envelope.state, str(command["pattern"]), int(command.get("time") or self.clock())
            )
        else:
            records = []
        self._emit(records, incoming, None, result)

    # ------------------------------------------------------------------ outputs

    def _emit(
        self,
        records: list[dict[str, Any]],
        incoming: Incoming,
        cause: Event | None,
        result: BatchResult,
    ) -> None:
        origin = f"{incoming.topic}:{incoming.partition}:{incoming.offset}"
        for number, record in enumerate(records):
            result.records += 1
            record["id"] = f"{origin}.{number}"
            record["version"] = self.version
            user_key = str(record["user_id"]).encode()
            if record["kind"] == "action":
                self._action_outputs(record, user_key, result)
            result.outgoing.append(Outgoing(self.topics.actions, user_key, orjson.dumps(record)))
            if self.sink is not None:
                self.sink.on_record(record, cause)

    def _action_outputs(self, record: dict[str, Any], user_key: bytes, result: BatchResult) -> None:
        action = record["action"]
        if action == "publish" and not record.get("suppressed"):
            key = record.get("key")
            key_bytes = user_key if key is None else str(key).encode()
            result.outgoing.append(
                Outgoing(record["topic"], key_bytes, orjson.dumps(record["value"]))
            )
        elif action in ("log_contact", "log_accept", "log_reject") and not record.get("suppressed"):
            result.outgoing.append(Outgoing(self.topics.history, user_key, orjson.dumps(record)))

    def _dead_letter(self, incoming: Incoming, reason: str) -> Outgoing:
        return Outgoing(
            self.topics.dlq,
            incoming.key,
            incoming.value,
            (
                ("reason", reason.encode()),
                ("source-topic", incoming.topic.encode()),
                ("source-partition", str(incoming.partition).encode()),
                ("source-offset", str(incoming.offset).encode()),
            ),
        )
