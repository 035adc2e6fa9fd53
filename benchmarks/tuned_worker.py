"""`eventpatterns.worker` with benchmark-only changes, to measure proposals before making them.

    BENCH_FETCH_MAX_WAIT_MS=10 BENCH_GC_FREEZE=1 python -m benchmarks.tuned_worker

Each variable turns on one change; none edits the project:

BENCH_FETCH_MAX_WAIT_MS  the worker consumer's fetch wait (Faust hard-codes 1500 ms,
                         and Tansu holds an empty fetch that long);
BENCH_GC_FREEZE=1        `gc.freeze()` once the tables are recovered, and the young
                         generation's threshold raised to 50,000 allocations;
BENCH_LINGER_MS          the producer's linger (the app sets 1 ms).

Two proposals measured this way have landed (batch sends, uvloop); the `asyncio`
experiment runs the worker on the standard event loop, to measure what uvloop
gives.

`python -m benchmarks.run --experiment NAME` runs its workers through this module.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

EXPERIMENTS: dict[str, dict[str, str]] = {
    "fetch10": {"BENCH_FETCH_MAX_WAIT_MS": "10"},
    "asyncio": {"EVENTPATTERNS_EVENT_LOOP": "asyncio"},
    "gcfreeze": {"BENCH_GC_FREEZE": "1"},
    "linger5": {"BENCH_LINGER_MS": "5"},
}


def _patch_fetch_wait(milliseconds: int) -> None:
    import aiokafka

    original = aiokafka.AIOKafkaConsumer.__init__

    def init(self: Any, *topics: Any, **options: Any) -> None:
        if options.get("fetch_max_wait_ms") == 1500:  # Faust's worker consumer
            options["fetch_max_wait_ms"] = milliseconds
        original(self, *topics, **options)

    aiokafka.AIOKafkaConsumer.__init__ = init  # type: ignore[method-assign]


def _patch_gc_freeze() -> None:
    from eventpatterns.app import Runtime

    original = Runtime._register_timers

    async def register_timers(self: Runtime) -> None:
        await original(self)
        gc.collect()
        gc.freeze()

    Runtime._register_timers = register_timers  # type: ignore[method-assign]
    gc.set_threshold(50_000, 20, 100)


def _patch_linger(milliseconds: int) -> None:
    import eventpatterns.app as app_module

    original = app_module.faust.App

    def make_app(*args: Any, **options: Any) -> Any:
        options["producer_linger_ms"] = milliseconds
        return original(*args, **options)

    app_module.faust.App = make_app  # type: ignore[misc]


def main() -> int:
    if os.environ.get("BENCH_FETCH_MAX_WAIT_MS"):
        _patch_fetch_wait(int(os.environ["BENCH_FETCH_MAX_WAIT_MS"]))
    if os.environ.get("BENCH_GC_FREEZE") == "1":
        _patch_gc_freeze()
    if os.environ.get("BENCH_LINGER_MS"):
        _patch_linger(int(os.environ["BENCH_LINGER_MS"]))
    from eventpatterns.worker import main as worker_main

    return worker_main()


if __name__ == "__main__":
    sys.exit(main())
