"""CPU per event of the same batches, back to back and with idle gaps between them.

    python -m benchmarks.burst_cost [--batch 300] [--gap-ms 12] [--events 60000] [--pairs 2]

The runtime's path in process (`BatchProcessor` over a dict store, the ten
patterns of patterns.yaml, states held across batches and encoded every ~800
users, as the worker does), on latency-like records (~8 events per user). Only
the batches' own CPU time is counted (`time.thread_time`), so a gap costs
nothing by itself. What differs is what the work costs after one. A paced load
is applied in bursts like these, a backlog back to back: benchmarks/README.md,
"Changes made (2026-12-06, a fifth session)". Run another process meanwhile (one
that walks a lot of memory) to see the other programs on a worker's CPUs.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from eventpatterns.core.definitions import Definitions, load_definitions_file
from eventpatterns.processor import BatchResult

from . import datagen
from .bench_core import DictStore, incoming_batches, make_processor

HERE = Path(__file__).resolve().parent
HELD_USERS = 800


def cpu_per_event(definitions: Definitions, batches: list[Any], events: int, gap: float) -> float:
    """Microseconds of this thread's CPU per event, for the batches alone."""
    store = DictStore()
    processor = make_processor(definitions, store)
    held: dict[str, Any] = {}
    spent = 0.0
    for batch in batches:
        started = time.thread_time()
        processor.process(batch, held)
        if len(held) > HELD_USERS:
            result = BatchResult()
            processor.encode(held, result)
            held.clear()
            processor.write_states(result)
        spent += time.thread_time() - started
        if gap:
            time.sleep(gap)
    return 1e6 * spent / events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=12.0)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args(argv)
    definitions = load_definitions_file(HERE / "patterns.yaml")
    records = datagen.generate(
        args.events, args.events // 8, seed=7, start_ns=time.time_ns(), first_user=10_000_000
    )
    raws = [orjson.dumps(record) for record in records]
    batches = incoming_batches(definitions.source.topic, records, raws, args.batch)
    gc.freeze()  # the inputs: the collector's passes cost what the work costs
    for _ in range(args.pairs):
        for gap in (0.0, args.gap_ms / 1000):
            cost = cpu_per_event(definitions, batches, args.events, gap)
            print(f"batches of {args.batch}, {gap * 1000:g} ms between them: {cost:.1f} us/event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
