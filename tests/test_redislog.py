"""The Redis transition log against the real Redis: the seed's lines, capped stream."""

from __future__ import annotations

import asyncio
import uuid

import redis

from eventpatterns.redislog import TransitionLog, offer_line, transition_line

TRANSITION = {
    "kind": "transition",
    "time": "2026-11-17T11:54:35.000Z",
    "user_id": "u-17",
    "pattern": "fashion",
    "from": "not_met",
    "to": "met",
}
CAUSE = {"event": "click", "attributes": {"productId": "VD55147564", "category": "shoes"}}


def test_lines_have_the_seed_form() -> None:
    assert transition_line(TRANSITION, CAUSE) == (
        "[User u-17 entered state met][Event: clicked VD55147564][Category: shoes]"
        "[Pattern: fashion]"
    )
    assert transition_line(TRANSITION, {"event": "signup", "attributes": {}}) == (
        "[User u-17 entered state met][Event: signup][Pattern: fashion]"
    )
    assert (
        offer_line({"user_id": "u-17", "offer": "offer2"}) == "[User u-17 triggered offer offer2]"
    )


async def test_entries_reach_a_capped_stream() -> None:
    stream = f"test:transitions:{uuid.uuid4().hex}"
    log = TransitionLog("redis://127.0.0.1:6379/0", stream, maxlen=10, batch=7)
    await log.start()
    client = redis.Redis(decode_responses=True)
    try:
        for _ in range(200):
            log.add_transition(TRANSITION, CAUSE)
        log.add_offer({**TRANSITION, "kind": "action", "offer": "offer2"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while log.written < 201 and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert log.written == 201 and log.failed == 0 and log.connected
        entries = client.xrange(stream)
        assert 10 <= len(entries) < 201  # MAXLEN ~ trims whole nodes
        assert entries[-1][1]["line"] == "[User u-17 triggered offer offer2]"
        assert entries[0][1]["pattern"] == "fashion"
    finally:
        await log.stop()
        client.delete(stream)


async def test_an_unreachable_redis_never_blocks_and_counts_overflow() -> None:
    log = TransitionLog("redis://127.0.0.1:1/0", "x", queue_limit=5)
    await log.start()
    try:
        for _ in range(8):
            log.add_transition(TRANSITION, None)  # returns at once
        assert len(log.queue) == 5 and log.failed == 3 and not log.connected
    finally:
        await log.stop(flush_timeout=0.1)
