"""The batch processor with an in-memory state store: decode, re-key, dedupe, outputs."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from eventpatterns import processor as processor_module
from eventpatterns.core.definitions import load_definitions_file
from eventpatterns.core.state import UserState
from eventpatterns.processor import (
    SMALL_STATE,
    BatchProcessor,
    BatchResult,
    Envelope,
    Incoming,
    Topics,
    murmur2,
    pack_stored,
    partition_for,
    stored_next_due,
    stored_partition,
    unpack_stored,
)
from eventpatterns.replay import Replayer

TOPICS = Topics(
    "enriched-click-data",
    "eventpatterns-events",
    "eventpatterns-timers",
    "eventpatterns-actions",
    "eventpatterns-dlq",
    "eventpatterns-history",
)
PARTITIONS = 4


class MemoryStore:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.partitions: dict[str, int] = {}

    def get(self, user_id: str) -> bytes | None:
        return self.values.get(user_id)

    def put(self, user_id: str, value: bytes, partition: int) -> None:
        self.values[user_id] = value
        self.partitions[user_id] = partition


def clicks() -> list[dict[str, Any]]:
    base = 1_700_221_869_000_000_000
    steps = [("clothing", "A"), ("clothing", "A"), ("shoes", "B"), ("clothing", "C")]
    return [
        {
            "timestamp": base + i * 10**9,
            "userId": "u1",
            "category": c,
            "productId": p,
            "gender": "F",
            "age": 30,
        }
        for i, (c, p) in enumerate(steps)
    ]


def home(records: list[dict[str, Any]], topic: str = TOPICS.source) -> list[Incoming]:
    """Records as Kafka would deliver them when produced keyed by user id."""
    out = []
    for offset, record in enumerate(records):
        key = record["userId"].encode()
        out.append(
            Incoming(topic, partition_for(key, PARTITIONS), offset, key, orjson.dumps(record))
        )
    return out


def applied(proc: BatchProcessor, batch: list[Incoming]) -> BatchResult:
    """A batch processed and its states written, as the runtime does once outputs are sent."""
    result = proc.process(batch)
    proc.write_states(result)
    return result


def processor(store: MemoryStore | None = None) -> BatchProcessor:
    definitions = load_definitions_file("examples/clickstream.yaml")
    return BatchProcessor(
        definitions, TOPICS, PARTITIONS, store or MemoryStore(), clock=lambda: 1_700_221_900_000_000
    )


def test_records_match_replay_and_publish_the_seed_offer() -> None:
    store = MemoryStore()
    result = applied(processor(store), home(clicks()))
    replayed: list[dict[str, Any]] = []
    replayer = Replayer(load_definitions_file("examples/clickstream.yaml"), replayed.append)
    for incoming in home(clicks()):
        from eventpatterns.core.events import decode_event

        replayer.feed(decode_event(incoming.value, replayer.definitions.source))
    audit = [orjson.loads(o.value) for o in result.outgoing if o.topic == TOPICS.actions]
    assert [{k: v for k, v in r.items() if k not in ("id", "version")} for r in audit] == replayed
    offers = [o for o in result.outgoing if o.topic == "special-offers"]
    assert [orjson.loads(o.value) for o in offers] == [
        [{"Timestamp": 1_700_221_872_000_000_000, "Tags": {}, "Id": "offer", "Value": "offer2"}]
    ]
    assert offers[0].key == b"u1"
    assert store.partitions["u1"] == partition_for(b"u1", PARTITIONS)
    assert stored_partition(store.values["u1"]) == store.partitions["u1"]
    assert result.timers["u1"] is not None  # the time_bound extension end


def test_redelivered_records_are_skipped() -> None:
    store = MemoryStore()
    batch = home(clicks())
    first = applied(processor(store), batch)
    again = applied(processor(store), batch)
    assert first.events == 4 and again.events == 0 and again.duplicates == 4
    assert not [o for o in again.outgoing if o.topic != TOPICS.dlq]


def test_output_ids_are_stable_for_the_same_input_and_state() -> None:
    one = applied(processor(), home(clicks()))
    two = applied(processor(), home(clicks()))
    ids = [orjson.loads(o.value)["id"] for o in one.outgoing if o.topic == TOPICS.actions]
    assert ids == [orjson.loads(o.value)["id"] for o in two.outgoing if o.topic == TOPICS.actions]
    assert len(set(ids)) == len(ids)


def test_records_not_keyed_by_user_are_moved_to_the_events_topic() -> None:
    record = clicks()[0]
    wrong_key = Incoming(TOPICS.source, 0, 0, b"other", orjson.dumps(record))
    result = applied(processor(), [wrong_key])
    assert result.forwarded == 1 and result.events == 0
    (moved,) = result.outgoing
    assert moved.topic == TOPICS.events and moved.key == b"u1"
    # Forwarded in the standard shape, keeping microseconds, and applied there.
    again = applied(
        processor(),
        [Incoming(TOPICS.events, partition_for(b"u1", PARTITIONS), 0, b"u1", moved.value)],
    )
    assert again.events == 1


def test_a_known_user_s_home_is_its_state_s_and_a_record_elsewhere_is_still_moved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = processor()
    first, second, third, _ = home(clicks())
    applied(proc, [first])  # u1 now has a state, written in its home partition
    hashed: list[bytes] = []
    monkeypatch.setattr(
        processor_module,
        "partition_for",
        lambda key, count: hashed.append(key) or partition_for(key, count),
    )
    assert applied(proc, [second]).events == 1
    elsewhere = Incoming(TOPICS.source, (third.partition + 1) % PARTITIONS, 9, b"u1", third.value)
    result = applied(proc, [elsewhere])
    assert (result.forwarded, result.events) == (1, 0)
    assert hashed == []  # the home came from the stored state both times
    assert applied(processor(), [elsewhere]).forwarded == 1  # an unknown user: hashed
    assert hashed == [b"u1"]


@given(
    plain=st.binary(max_size=2048) | st.text(max_size=1500).map(str.encode),
    due=st.none() | st.integers(0, 2**62),
    partition=st.none() | st.integers(0, 1000),
)
def test_stored_values_of_any_size_round_trip(
    plain: bytes, due: int | None, partition: int | None
) -> None:
    raw = pack_stored(plain, due, partition)
    assert unpack_stored(raw) == plain
    assert stored_next_due(raw) == due and stored_partition(raw) == partition


def test_small_states_take_the_fast_level_and_stay_compressed() -> None:
    store = MemoryStore()
    applied(processor(store), home(clicks()))
    plain = unpack_stored(store.values["u1"])
    assert len(plain) <= SMALL_STATE  # a clickstream state: the fast level
    raw = pack_stored(plain, None, 0)
    assert len(raw) < len(plain)
    big = plain * 4  # over the threshold: level 1, the smaller output
    fast = zstandard.ZstdCompressor(level=-1, write_checksum=False).compress(big)
    assert len(pack_stored(big, None, 0)) - 11 < len(fast)


def test_bad_records_go_to_the_dead_letter_topic_with_a_reason() -> None:
    bad = Incoming(TOPICS.events, 1, 7, None, b"{nope")
    result = applied(processor(), [bad, *home(clicks())])
    dead = [o for o in result.outgoing if o.topic == TOPICS.dlq]
    assert len(dead) == 1 and dead[0].value == b"{nope"
    headers = dict(dead[0].headers)
    assert headers["reason"].startswith(b"not JSON")
    assert headers["source-offset"] == b"7"
    assert result.events == 4


def test_a_record_the_core_failed_on_is_a_dead_letter_naming_the_error() -> None:
    record = home(clicks())[0]
    result = processor().reject(record, ZeroDivisionError("division by zero"))
    assert result.bad == 1 and not result.writes and result.events == 0
    [dead] = result.outgoing
    assert (dead.topic, dead.key, dead.value) == (TOPICS.dlq, record.key, record.value)
    headers = dict(dead.headers)
    assert headers["reason"] == b"internal error: ZeroDivisionError('division by zero')"
    assert headers["source-offset"] == str(record.offset).encode()


def test_a_tick_runs_due_timers_once() -> None:
    store = MemoryStore()
    proc = processor(store)
    applied(proc, home(clicks()))
    due = Envelope.decode(store.values["u1"]).state.next_due()
    assert due is not None
    tick = orjson.dumps({"kind": "tick", "user_id": "u1", "due": due})
    key_partition = partition_for(b"u1", PARTITIONS)
    first = applied(proc, [Incoming(TOPICS.timers, key_partition, 0, b"u1", tick)])
    second = applied(proc, [Incoming(TOPICS.timers, key_partition, 1, b"u1", tick)])
    transitions = [orjson.loads(o.value) for o in first.outgoing if o.topic == TOPICS.actions]
    assert [(t["from"], t["to"]) for t in transitions] == [("met", "not_met")]
    assert not [o for o in second.outgoing if o.topic == TOPICS.actions]
    assert first.timers["u1"] is None


def test_envelope_round_trip() -> None:
    state = UserState("u1")
    envelope = Envelope({"t:0": 5}, state)
    decoded = Envelope.decode(envelope.encode())
    assert decoded.offsets == {"t:0": 5}
    assert decoded.state.encode() == state.encode()


def test_stored_values_are_compressed_and_carry_the_earliest_timer() -> None:
    store = MemoryStore()
    applied(processor(store), home(clicks()))
    raw = store.values["u1"]
    envelope = Envelope.decode(raw)
    plain = orjson.dumps({"offsets": envelope.offsets, "version": envelope.version})
    assert len(raw) < len(plain + b"\x00" + envelope.state.encode())
    assert stored_next_due(raw) == envelope.state.next_due() is not None
    assert stored_next_due(Envelope({}, UserState("idle")).encode()) is None


def test_values_stored_before_compression_still_decode() -> None:
    state = UserState("u1")
    state.timers.append([1_700_000_000_000_000, 1, "window", "p", "f", None])
    old = orjson.dumps({"offsets": {"t:0": 3}, "version": "v1"}) + b"\x00" + state.encode()
    envelope = Envelope.decode(old)
    assert (envelope.offsets, envelope.version) == ({"t:0": 3}, "v1")
    assert envelope.state.encode() == state.encode()
    assert stored_next_due(old) == 1_700_000_000_000_000


def test_values_of_the_first_compressed_format_still_decode() -> None:
    current = Envelope({"t:0": 3}, UserState("u1"), "v1").encode(partition=2)
    plain = unpack_stored(current)
    first_format = b"\x01" + (1_700_000_000_000_000).to_bytes(8, "big") + current[11:]
    assert unpack_stored(first_format) == plain
    assert stored_next_due(first_format) == 1_700_000_000_000_000
    assert stored_partition(first_format) is None
    assert stored_partition(current) == 2
    assert stored_partition(pack_stored(plain, None)) is None  # written without one


def test_a_partition_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        pack_stored(b"{}", None, 0xFFFF)


def test_an_unknown_stored_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        Envelope.decode(b"\x07" + bytes(8) + b"whatever")


def test_a_new_pattern_file_drops_removed_patterns_and_keeps_unchanged_ones() -> None:
    from eventpatterns.core.definitions import load_definitions

    def definitions(second_threshold: int, with_third: bool) -> Any:
        third = (
            """
  - id: third
    type: counter
    events: [{event: view, count: 9}]
    checkpoints: [{after: 1d, actions: [{action: qualify_segments, segments: [s]}]}]
"""
            if with_third
            else ""
        )
        return load_definitions(f"""
version: 1
patterns:
  - id: first
    type: counter
    events: [{{event: view, count: 3}}]
  - id: second
    type: counter
    events: [{{event: view, count: {second_threshold}}}]
{third}""")

    topics = Topics(
        "eventpatterns-events",
        TOPICS.events,
        TOPICS.timers,
        TOPICS.actions,
        TOPICS.dlq,
        TOPICS.history,
    )
    store = MemoryStore()
    proc = BatchProcessor(definitions(5, True), topics, PARTITIONS, store, clock=lambda: 0)
    view = {"user_id": "u", "event": "view", "timestamp": 1_000}
    key_partition = partition_for(b"u", PARTITIONS)
    batch = [Incoming(topics.events, key_partition, n, b"u", orjson.dumps(view)) for n in range(2)]
    applied(proc, batch)
    before = Envelope.decode(store.values["u"]).state
    assert set(before.patterns) == {"first", "second", "third"} and before.timers

    proc.use(definitions(4, False))  # `second` changed, `third` removed, `first` as it was
    applied(proc, [Incoming(topics.events, key_partition, 2, b"u", orjson.dumps(view))])
    after = Envelope.decode(store.values["u"]).state
    assert set(after.patterns) == {"first", "second"}
    assert not after.timers
    # `first` kept counting across the switch: its third view made it met.
    assert after.patterns["first"].status == 1
    assert after.patterns["second"].status == 0


def test_states_are_written_only_when_the_caller_says_outputs_are_durable() -> None:
    store = MemoryStore()
    proc = processor(store)
    result = proc.process(home(clicks()))
    assert result.outgoing and not store.values  # outputs first...
    proc.write_states(result)
    assert set(store.values) == {"u1"}  # ...then the state that accounts for them
    # Had the worker died before write_states, the batch is applied again from the old
    # state and yields the same outputs under the same ids.
    again = processor(MemoryStore()).process(home(clicks()))
    assert [o.value for o in again.outgoing] == [o.value for o in result.outgoing]


def shopping(users: int) -> list[dict[str, Any]]:
    """Each user's clicks of `clicks()`, the users' interleaved, in time order."""
    records = []
    for user in range(users):
        for click in clicks():
            records.append({**click, "userId": f"u{user}", "timestamp": click["timestamp"] + user})
    return sorted(records, key=lambda record: record["timestamp"])


@given(
    cuts=st.lists(st.integers(0, 12), max_size=6),
    encode_after=st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_states_held_across_batches_end_as_one_batch_would_leave_them(
    cuts: list[int], encode_after: list[bool]
) -> None:
    """Held decoded across batches and encoded now and then, as the events agent does:
    the same outputs, and the same stored states, as the whole in one batch."""
    records = home(shopping(3))
    whole_store = MemoryStore()
    whole = applied(processor(whole_store), records)

    store = MemoryStore()
    proc = processor(store)
    held: dict[str, Any] = {}
    outputs = []
    edges = [0, *sorted(cuts), len(records)]
    for number, (start, end) in enumerate(itertools.pairwise(edges)):
        outputs += proc.process(records[start:end], held).outgoing
        if encode_after[number]:
            states = BatchResult()
            proc.encode(held, states)
            held.clear()
            proc.write_states(states)
    states = BatchResult()
    proc.encode(held, states)
    proc.write_states(states)
    assert [(o.topic, o.key, o.value) for o in outputs] == [
        (o.topic, o.key, o.value) for o in whole.outgoing
    ]
    assert store.values == whole_store.values


def test_a_state_held_under_an_earlier_pattern_file_is_brought_up_to_date() -> None:
    proc = processor()
    held: dict[str, Any] = {}
    first, *rest = home(clicks())
    proc.process([first], held)
    envelope, _ = held["u1"]
    old_version = envelope.version
    proc.use(load_definitions_file("benchmarks/patterns.yaml"))
    proc.process(rest, held)
    assert held["u1"][0] is envelope and envelope.version == proc.version != old_version
    assert set(envelope.state.patterns) <= {p.id for p in proc.definitions.patterns}


def test_records_applied_again_make_the_same_held_states_and_reach_no_sink() -> None:
    """After the core failed half-way through a batch, the agent makes the held states
    again from the records applied since they were encoded; their records went to the
    sink (the Redis log, the live feed) the first time."""
    seen: list[str] = []

    class Sink:
        def on_record(self, record: Any, cause: Any) -> None:
            seen.append(record["id"])

    proc = processor()
    proc.sink = Sink()
    records = home(clicks())
    first: dict[str, Any] = {}
    proc.process(records, first)
    assert seen
    sent = list(seen)
    again: dict[str, Any] = {}
    proc.reapply(records, again)
    assert seen == sent and proc.sink is not None
    assert again.keys() == first.keys()
    for user_id, (envelope, partition) in again.items():
        assert envelope.encode(partition) == first[user_id][0].encode(partition)


# Kafka's own test vectors (clients/.../utils/UtilsTest.java, as signed ints).
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), KAFKA_MURMUR2.items())
def test_murmur2_gives_kafkas_test_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected & 0xFFFFFFFF


@given(st.binary(max_size=400))
def test_murmur2_agrees_with_aiokafkas(data: bytes) -> None:
    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    assert murmur2(data) == aiokafka_murmur2(data)
