"""`eventpatterns.worker` with benchmark-only changes, to measure proposals before making them.

    BENCH_GC_FREEZE=1 BENCH_LINGER_MS=5 python -m benchmarks.tuned_worker

Each variable turns on one change; none edits the project:

BENCH_GC_FREEZE=1        `gc.freeze()` once the tables are recovered, and the young
                         generation's threshold raised to 50,000 allocations;
BENCH_LINGER_MS          the producer's linger (the app sets 1 ms).

Two proposals measured this way have landed (batch sends, uvloop); the `asyncio`
experiment runs the worker on the standard event loop, to measure what uvloop
gives. Others only set the worker's own settings: `fetch5` (a 5 ms fetch wait, for
a broker that holds an empty fetch as long as it may, as Tansu does) and
`batchwait2` (a batch waits 2 ms to fill, not 10).

`python -m benchmarks.run --experiment NAME` runs its workers through this module.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

EXPERIMENTS: dict[str, dict[str, str]] = {
    "fetch5": {"EVENTPATTERNS_FETCH_WAIT_MS": "5"},
    "batchwait2": {"EVENTPATTERNS_BATCH_WAIT": "0.002"},
    "asyncio": {"EVENTPATTERNS_EVENT_LOOP": "asyncio"},
    "gcfreeze": {"BENCH_GC_FREEZE": "1"},
    "linger5": {"BENCH_LINGER_MS": "5"},
}


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
    if os.environ.get("BENCH_GC_FREEZE") == "1":
        _patch_gc_freeze()
    if os.environ.get("BENCH_LINGER_MS"):
        _patch_linger(int(os.environ["BENCH_LINGER_MS"]))
    from eventpatterns.worker import main as worker_main

    return worker_main()


if __name__ == "__main__":
    sys.exit(main())
