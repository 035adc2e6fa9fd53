"""The worker's choice of event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

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
