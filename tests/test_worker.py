"""The worker's choice of event loop, and its garbage collector's thresholds."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
import uvloop

from eventpatterns.gctuning import freeze_survivors, tune_gc
from eventpatterns.settings import Settings
from eventpatterns.worker import use_event_loop


@pytest.fixture
def restored_policy() -> Iterator[None]:
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


@pytest.mark.parametrize(
    ("name", "kind"), [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)]
)
def test_loops_made_after_the_choice_are_of_its_kind(
    restored_policy: None, name: str, kind: type
) -> None:
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    use_event_loop(name)
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, kind)
        assert name == "uvloop" or not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_uvloop_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTPATTERNS_EVENT_LOOP", raising=False)
    assert Settings().event_loop == "uvloop"
    monkeypatch.setenv("EVENTPATTERNS_EVENT_LOOP", "asyncio")
    assert Settings().event_loop == "asyncio"


@pytest.fixture
def restored_gc_thresholds() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)


def test_the_young_generation_is_collected_after_the_threshold_set(
    restored_gc_thresholds: None,
) -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc(50_000)
    assert gc.get_threshold() == (50_000, 20, 100)
    gc.set_threshold(700, 10, 10)
    tune_gc(0)  # Python's own thresholds
    assert gc.get_threshold() == (700, 10, 10)


def test_the_worker_defaults_to_a_high_young_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTPATTERNS_GC_YOUNG_THRESHOLD", raising=False)
    assert Settings().gc_young_threshold == 50_000
    monkeypatch.setenv("EVENTPATTERNS_GC_YOUNG_THRESHOLD", "0")
    assert Settings().gc_young_threshold == 0


def test_what_is_alive_is_frozen_out_of_collections() -> None:
    survivors = [[number] for number in range(1000)]
    try:
        assert freeze_survivors() >= len(survivors)
    finally:
        gc.unfreeze()
