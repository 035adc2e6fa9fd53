"""The processor's decoded states of recent users (`processor.RecentStates`).

The cache must never change what a batch yields: a worker with it and one
without, given the same batches and the same store, write the same records
and the same states, whatever the store went through in between.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventpatterns import processor as processor_module
from eventpatterns.core.definitions import load_definitions_file
from eventpatterns.processor import BatchProcessor, BatchResult, Incoming

from .test_processor import PARTITIONS, TOPICS, MemoryStore, home

DEFINITIONS = load_definitions_file("examples/clickstream.yaml")
BASE_NS = 1_700_221_869_000_000_000


def processor(store: MemoryStore, recent: int) -> BatchProcessor:
    return BatchProcessor(
        DEFINITIONS,
        TOPICS,
        PARTITIONS,
        store,
        clock=lambda: 1_700_221_900_000_000,
        recent_states=recent,
    )


AUDIENCES = {"u1": ("M", 40), "u2": ("F", 30), "u3": ("F", 50)}
"""Each seed offer's audience, and neither's."""


def click(user: str, second: int, category: str, product: str) -> dict[str, Any]:
    gender, age = AUDIENCES[user]
    return {
        "timestamp": BASE_NS + second * 10**9,
        "userId": user,
        "category": category,
        "productId": product,
        "gender": gender,
        "age": age,
    }


def records_at_offsets(records: list[dict[str, Any]], first: int) -> list[Incoming]:
    """`home` with offsets going on from `first` (a stream read in several batches)."""
    batch = home(records)
    for number, incoming in enumerate(batch):
        incoming.offset = first + number
    return batch


def applied(proc: BatchProcessor, batch: list[Incoming]) -> BatchResult:
    result = proc.process(batch)
    proc.write_states(result)
    return result


def outputs(result: BatchResult) -> list[tuple[str, bytes | None, bytes]]:
    return [(out.topic, out.key, out.value) for out in result.outgoing]


CLICKS = st.tuples(
    st.sampled_from(["u1", "u2", "u3"]),
    st.sampled_from(["clothing", "shoes", "books"]),
    st.sampled_from(["A", "B", "C"]),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.lists(CLICKS, min_size=1, max_size=6)),
        st.tuples(st.just("restore"), st.sampled_from(["u1", "u2", "u3"])),
        st.tuples(st.just("lose"), st.sampled_from(["u1", "u2", "u3"])),
        st.tuples(st.just("unwritten"), st.lists(CLICKS, min_size=1, max_size=3)),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(steps=STEPS, recent=st.integers(min_value=1, max_value=3))
def test_a_worker_with_recent_states_writes_what_one_without_writes(
    steps: list[tuple[str, Any]], recent: int
) -> None:
    """Batches, and between them the store changing under the worker: a user's state
    restored to an earlier one (a rebalance and recovery), or lost; and batches
    applied whose outputs failed, so their states were never written."""
    plain_store, cached_store = MemoryStore(), MemoryStore()
    plain, cached = processor(plain_store, 0), processor(cached_store, recent)
    history: dict[str, list[bytes]] = {}
    offset, second = 0, 0
    for kind, argument in steps:
        if kind in ("batch", "unwritten"):
            records = []
            for user, category, product in argument:
                second += 1
                records.append(click(user, second, category, product))
            batch = records_at_offsets(records, offset)
            if kind == "unwritten":
                assert outputs(plain.process(batch)) == outputs(cached.process(batch))
                continue
            offset += len(batch)
            assert outputs(applied(plain, batch)) == outputs(applied(cached, batch))
            for user, value in plain_store.values.items():
                history.setdefault(user, []).append(value)
        elif kind == "restore" and history.get(argument):
            earlier = history[argument][0]
            plain_store.values[argument] = cached_store.values[argument] = earlier
        elif kind == "lose":
            plain_store.values.pop(argument, None)
            cached_store.values.pop(argument, None)
        assert cached_store.values == plain_store.values
        assert len(cached.recent.entries) <= recent


def test_a_user_s_next_batch_does_not_decode_the_state_it_wrote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = processor(MemoryStore(), 10)
    applied(proc, records_at_offsets([click("u1", 1, "clothing", "A")], 0))
    decoded: list[bytes] = []
    original = processor_module.Envelope.decode
    monkeypatch.setattr(
        processor_module.Envelope,
        "decode",
        staticmethod(lambda raw: decoded.append(raw) or original(raw)),
    )
    applied(proc, records_at_offsets([click("u1", 2, "shoes", "B")], 1))
    assert decoded == []
    proc.store.values["u1"] = proc.store.values["u1"]  # the same value: still served
    applied(proc, records_at_offsets([click("u1", 3, "clothing", "C")], 2))
    assert decoded == []


class FailingOnSecondEvent:
    """An engine that fails on the second event, once the first changed its user's state."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def process(self, state: Any, event: Any) -> Any:
        self.calls += 1
        records = self.engine.process(state, event)
        if self.calls == 2:
            raise RuntimeError("the core failed")
        return records


def test_a_batch_the_core_failed_on_half_way_leaves_no_state_it_changed() -> None:
    """The agent then applies the batch's records one at a time, from the stored states."""
    plain, cached = processor(MemoryStore(), 0), processor(MemoryStore(), 10)
    first = records_at_offsets(
        [click("u1", 1, "clothing", "A"), click("u2", 2, "clothing", "A")], 0
    )
    applied(plain, first)
    applied(cached, first)
    second = records_at_offsets([click("u1", 3, "shoes", "B"), click("u2", 4, "shoes", "B")], 2)
    engine = cached.engine
    cached.engine = FailingOnSecondEvent(engine)  # type: ignore[assignment]
    with pytest.raises(RuntimeError):
        cached.process(second)
    cached.engine = engine
    for record in second:
        assert outputs(applied(cached, [record])) == outputs(applied(plain, [record]))
    assert cached.store.values == plain.store.values


def test_the_oldest_users_go_first() -> None:
    proc = processor(MemoryStore(), 2)
    for number, user in enumerate(["u1", "u2", "u1", "u3"]):
        applied(proc, records_at_offsets([click(user, number, "clothing", "A")], number))
    assert list(proc.recent.entries) == ["u1", "u3"]


def test_none_are_kept_when_the_size_is_zero() -> None:
    proc = processor(MemoryStore(), 0)
    applied(proc, records_at_offsets([click("u1", 1, "clothing", "A")], 0))
    assert proc.recent.entries == {}
