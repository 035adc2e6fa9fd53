"""The pure core in one process: replay-style evaluation of generated clickstream records.

    python -m benchmarks.bench_core [--events 1000000] [--users 100000] [--no-profile]

Measures, over the same generated records (benchmarks/datagen.py) and the ten
patterns of benchmarks/patterns.yaml:

- evaluate only: pre-decoded events through `Engine.process`, every user's state
  held as Python objects (what `replay` does);
- decode + evaluate: raw bytes -> `decode_event` with the file's source mapping ->
  `Engine.process`;
- runtime path: the worker's `BatchProcessor` over an in-memory state store, in
  batches of 1,000 (decode, the user's stored state decoded and encoded again per
  batch, audit and output records serialized): the most a worker can do before
  Faust and Kafka take their share;
- baselines in the same run: the seed's two offers through our engine
  (examples/clickstream.yaml), and the same two offers hand-written over dicts
  (benchmarks/seed_machine.py): the ceiling of plain Python;
- memory: the growth of the process's resident memory while it holds every user's
  state as objects, the encoded state per user, and the peak resident memory;
- where the time goes: the CPU per event of each pattern alone, evaluate-only with
  the garbage collector off, and cProfile of the evaluate-only and runtime paths.

The generated inputs are `gc.freeze()`d: they stay alive for the whole run, and the
collector's passes over them would otherwise cost in proportion to the benchmark's
inputs rather than to the work measured.

Rates are events per second of wall time on one core; "cpu" rates divide by the
process's CPU time instead, which other load on the machine does not inflate.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import resource
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from eventpatterns.core.definitions import Definitions, load_definitions, load_definitions_file
from eventpatterns.core.evaluator import Engine
from eventpatterns.core.events import Event, decode_event
from eventpatterns.core.state import UserState
from eventpatterns.processor import BatchProcessor, BatchResult, Incoming, Topics, partition_for

from . import datagen
from .seed_machine import SeedMachine

HERE = Path(__file__).resolve().parent
PATTERNS = HERE / "patterns.yaml"
CLICKSTREAM = HERE.parent / "examples" / "clickstream.yaml"
PARTITIONS = 4
BATCH = 1000

GOAL_EVALUATE = 250_000
GOAL_DECODE = 150_000


@dataclass
class Rate:
    """One timed pass."""

    name: str
    events: int
    wall: float
    cpu: float
    outputs: int = 0
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.events / self.wall if self.wall else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.events / self.cpu if self.cpu else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "seconds": round(self.wall, 3),
            "cpu_seconds": round(self.cpu, 3),
            "events_per_s": round(self.per_second),
            "events_per_cpu_s": round(self.per_cpu_second),
            "outputs": self.outputs,
            "note": self.note,
        }


@dataclass
class CoreResult:
    events: int
    users: int
    rates: dict[str, Rate] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    pattern_costs: dict[str, float] = field(default_factory=dict)
    """Microseconds of CPU per event for each pattern alone."""
    profiles: dict[str, str] = field(default_factory=dict)
    generate_seconds: float = 0.0
    load_average: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "users": self.users,
            "rates": {key: rate.as_json() for key, rate in self.rates.items()},
            "memory": self.memory,
            "pattern_costs_us": self.pattern_costs,
            "goals": goals(self),
            "load_average_1m": self.load_average,
            "generate_seconds": round(self.generate_seconds, 2),
            "profiles": self.profiles,
        }


# --------------------------------------------------------------------------- helpers


def rss_bytes() -> int:
    """The process's resident memory now (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(name: str, events: int, work: Callable[[], int], note: str = "") -> Rate:
    gc.collect()
    cpu = time.process_time()
    wall = time.perf_counter()
    outputs = work()
    return Rate(name, events, time.perf_counter() - wall, time.process_time() - cpu, outputs, note)


def evaluate(engine: Engine, events: Iterable[Event], states: dict[str, UserState]) -> int:
    """Every event through the engine; returns how many records it emitted."""
    process = engine.process
    new_state = engine.new_state
    emitted = 0
    for event in events:
        user = event.user_id
        state = states.get(user)
        if state is None:
            state = states[user] = new_state(user)
        emitted += len(process(state, event))
    return emitted


def decode_and_evaluate(
    engine: Engine, definitions: Definitions, raws: Iterable[bytes], states: dict[str, UserState]
) -> int:
    source = definitions.source
    process = engine.process
    new_state = engine.new_state
    emitted = 0
    for raw in raws:
        event = decode_event(raw, source)
        user = event.user_id
        state = states.get(user)
        if state is None:
            state = states[user] = new_state(user)
        emitted += len(process(state, event))
    return emitted


class DictStore:
    """The processor's StateStore in a dict: what a Faust memory table holds, minus Faust."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def get(self, user_id: str) -> bytes | None:
        return self.values.get(user_id)

    def put(self, user_id: str, value: bytes, partition: int) -> None:
        self.values[user_id] = value


def incoming_batches(
    topic: str, records: list[dict[str, Any]], raws: list[bytes], size: int = BATCH
) -> list[list[Incoming]]:
    """The records as the agent hands them over: keyed by user, in their user's partition."""
    offsets = [0] * PARTITIONS
    batches: list[list[Incoming]] = []
    batch: list[Incoming] = []
    for record, raw in zip(records, raws, strict=True):
        key = record["userId"].encode()
        partition = partition_for(key, PARTITIONS)
        batch.append(Incoming(topic, partition, offsets[partition], key, raw, 1))
        offsets[partition] += 1
        if len(batch) == size:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def make_processor(definitions: Definitions, store: DictStore) -> BatchProcessor:
    """A worker's batch processor with the default topic names, over `store`."""
    topics = Topics(
        source=definitions.source.topic,
        events="eventpatterns-events",
        timers="eventpatterns-timers",
        actions="eventpatterns-actions",
        dlq="eventpatterns-dlq",
        history="eventpatterns-history",
    )
    return BatchProcessor(definitions, topics, PARTITIONS, store, clock=lambda: 1)


def apply_batch(processor: BatchProcessor, batch: list[Incoming]) -> BatchResult:
    """What the agent does with a batch, minus Kafka: process it, then store the states."""
    result = processor.process(batch)
    write_states = getattr(processor, "write_states", None)
    if write_states is not None:  # states are written once the outputs are durable
        write_states(result)
    return result


def runtime_path(definitions: Definitions, batches: list[list[Incoming]], store: DictStore) -> int:
    processor = make_processor(definitions, store)
    outgoing = 0
    for batch in batches:
        result = apply_batch(processor, batch)
        outgoing += len(result.outgoing)
    return outgoing


def seed_evaluate(records: Iterable[dict[str, Any]]) -> int:
    machine = SeedMachine()
    process = machine.process
    for record in records:
        process(record)
    return machine.offers


def seed_decode_and_evaluate(raws: Iterable[bytes]) -> int:
    machine = SeedMachine()
    process = machine.process
    loads = orjson.loads
    for raw in raws:
        process(loads(raw))
    return machine.offers


def profile(work: Callable[[], Any], top: int = 14) -> str:
    """cProfile of `work`: the functions with the most own time, and their callers' share."""
    profiler = cProfile.Profile()
    profiler.enable()
    work()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    # Keep the header line with the total and the table; shorten the file paths.
    root = str(HERE.parent) + "/"
    kept = [line.replace(root, "") for line in lines if line.strip()]
    start = next((i for i, line in enumerate(kept) if "function calls" in line), 0)
    return "\n".join(kept[start:])


def single_pattern_files(path: Path) -> dict[str, Definitions]:
    """Each pattern of the file alone (same source, offers and segments), and none at all."""
    document = yaml.safe_load(path.read_text())
    files: dict[str, Definitions] = {}
    idle = {"id": "no_match", "type": "match_all", "events": [{"event": "never"}]}
    for pattern in [idle, *document["patterns"]]:
        text = yaml.safe_dump({**document, "patterns": [pattern]}, sort_keys=False)
        files[pattern["id"]] = load_definitions(text, filename=f"{path.name}:{pattern['id']}")
    return files


def per_pattern_costs(path: Path, events: list[Event]) -> dict[str, float]:
    """Microseconds per event of each pattern alone, less the cost of a file matching nothing."""
    costs: dict[str, float] = {}
    for pattern_id, definitions in single_pattern_files(path).items():
        engine = Engine(definitions)
        rate = timed(pattern_id, len(events), lambda e=engine: evaluate(e, events, {}))
        costs[pattern_id] = 1e6 * rate.cpu / max(1, len(events))
    base = costs.pop("no_match")
    result = {pattern_id: round(cost - base, 2) for pattern_id, cost in costs.items()}
    result["(engine.process, no pattern matching)"] = round(base, 2)
    return result


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# --------------------------------------------------------------------------- the benchmark


def _measure_evaluate(
    result: CoreResult, definitions: Definitions, decoded: list[Event], log: Callable[[str], None]
) -> None:
    engine = Engine(definitions)
    rate = timed("evaluate only (10 patterns)", len(decoded), lambda: evaluate(engine, decoded, {}))
    _add(result, "evaluate", rate, log)


def _measure_decode_evaluate(
    result: CoreResult, definitions: Definitions, raws: list[bytes], log: Callable[[str], None]
) -> None:
    """Decode + evaluate, holding every user's state as objects; also the memory figures.

    Events are decoded on the fly, so what the states keep of them (aliases' bindings,
    timer payloads) counts in the resident memory they add.
    """
    engine = Engine(definitions)
    states: dict[str, UserState] = {}
    gc.collect()
    before = rss_bytes()
    rate = timed(
        "decode + evaluate (10 patterns)",
        len(raws),
        lambda: decode_and_evaluate(engine, definitions, raws, states),
    )
    _add(result, "decode_evaluate", rate, log)
    gc.collect()
    held = rss_bytes() - before
    encoded = [state.encode() for state in states.values()]
    users = max(1, len(states))
    encode_rate = timed("encode", users, lambda: len([s.encode() for s in states.values()]))
    decode_rate = timed("decode", users, lambda: len([UserState.decode(e) for e in encoded]))
    result.memory.update(
        {
            "users_with_state": len(states),
            "object_bytes_per_user": round(held / users),
            "encoded_bytes_per_user": round(sum(len(value) for value in encoded) / users),
            "encoded_bytes_max": max((len(value) for value in encoded), default=0),
            "state_encode_us": round(1e6 * encode_rate.cpu / users, 2),
            "state_decode_us": round(1e6 * decode_rate.cpu / users, 2),
        }
    )


def _measure_without_gc(
    result: CoreResult, definitions: Definitions, decoded: list[Event], log: Callable[[str], None]
) -> None:
    """Evaluate only with the cyclic garbage collector off: what its passes over states cost."""
    engine = Engine(definitions)
    gc.collect()
    gc.disable()
    try:
        rate = timed(
            "evaluate only, gc disabled",
            len(decoded),
            lambda: evaluate(engine, decoded, {}),
            "what the collector's passes over the users' states cost",
        )
    finally:
        gc.enable()
    _add(result, "evaluate_no_gc", rate, log)


def _measure_runtime_path(
    result: CoreResult,
    definitions: Definitions,
    records: list[dict[str, Any]],
    raws: list[bytes],
    log: Callable[[str], None],
) -> None:
    batches = incoming_batches(definitions.source.topic, records, raws)
    store = DictStore()
    rate = timed(
        "runtime path: BatchProcessor, batches of 1000",
        len(raws),
        lambda: runtime_path(definitions, batches, store),
    )
    _add(result, "runtime_path", rate, log)
    values = store.values
    result.memory["envelope_bytes_per_user"] = round(
        sum(len(value) for value in values.values()) / max(1, len(values))
    )


def _add(result: CoreResult, key: str, rate: Rate, log: Callable[[str], None]) -> None:
    result.rates[key] = rate
    log(
        f"  {rate.name:<46} {rate.per_second:>10,.0f} ev/s "
        f"({rate.per_cpu_second:,.0f} per cpu-s, {rate.outputs:,} outputs)"
    )


def run_core(
    events: int = 1_000_000,
    users: int = 100_000,
    with_profile: bool = True,
    profile_events: int = 200_000,
    log: Callable[[str], None] = print,
) -> CoreResult:
    result = CoreResult(events, users, load_average=load_average())
    started = time.perf_counter()
    records = datagen.generate(events, users)
    raws = datagen.encode(records)
    result.generate_seconds = time.perf_counter() - started
    # The inputs stay alive all along: keep them out of the collector's passes, which
    # would otherwise cost in proportion to the benchmark's inputs, not to its work.
    gc.collect()
    gc.freeze()
    log(f"generated {len(records):,} records of {users:,} users in {result.generate_seconds:.1f}s")

    definitions = load_definitions_file(str(PATTERNS))
    clickstream = load_definitions_file(str(CLICKSTREAM))
    source = definitions.source

    def decode_all() -> int:
        return len([decode_event(raw, source) for raw in raws])

    _add(result, "decode_only", timed("decode only (decode_event)", events, decode_all), log)
    decoded = [decode_event(raw, source) for raw in raws]
    gc.collect()
    gc.freeze()

    _measure_evaluate(result, definitions, decoded, log)
    _measure_without_gc(result, definitions, decoded, log)

    _measure_decode_evaluate(result, definitions, raws, log)
    _measure_runtime_path(result, definitions, records, raws, log)

    # Baselines: the two clickstream offers only.
    def clickstream_evaluate() -> int:
        return evaluate(Engine(clickstream), decoded, {})

    def clickstream_decode_evaluate() -> int:
        return decode_and_evaluate(Engine(clickstream), clickstream, raws, {})

    for key, name, work in (
        ("clickstream_evaluate", "evaluate only, 2 clickstream patterns", clickstream_evaluate),
        (
            "clickstream_decode_evaluate",
            "decode + evaluate, 2 clickstream patterns",
            clickstream_decode_evaluate,
        ),
        ("seed_evaluate", "baseline: hand-written seed machine", lambda: seed_evaluate(records)),
        (
            "seed_decode_evaluate",
            "baseline: orjson + hand-written seed machine",
            lambda: seed_decode_and_evaluate(raws),
        ),
    ):
        _add(result, key, timed(name, events, work), log)
    result.memory["peak_rss_mib"] = round(peak_rss_bytes() / 2**20, 1)

    part = decoded[:profile_events]
    result.pattern_costs = per_pattern_costs(PATTERNS, part)
    if with_profile:
        result.profiles["evaluate"] = profile(lambda: evaluate(Engine(definitions), part, {}))
        part_batches = incoming_batches(
            source.topic, records[:profile_events], raws[:profile_events]
        )
        result.profiles["runtime_path"] = profile(
            lambda: runtime_path(definitions, part_batches, DictStore())
        )
    gc.unfreeze()
    return result


def goals(result: CoreResult) -> dict[str, Any]:
    evaluate_rate = result.rates.get("evaluate")
    decode_rate = result.rates.get("decode_evaluate")
    out: dict[str, Any] = {}
    if evaluate_rate is not None:
        out["evaluate_250k"] = {
            "goal": GOAL_EVALUATE,
            "measured": round(evaluate_rate.per_second),
            "met": evaluate_rate.per_second >= GOAL_EVALUATE,
        }
    if decode_rate is not None:
        out["decode_evaluate_150k"] = {
            "goal": GOAL_DECODE,
            "measured": round(decode_rate.per_second),
            "met": decode_rate.per_second >= GOAL_DECODE,
        }
    return out


def table(result: CoreResult) -> str:
    lines = [
        f"core: {result.events:,} events, {result.users:,} users, "
        f"load average {result.load_average} at start",
        f"{'pass':<46} {'events/s':>10} {'per cpu-s':>10} {'outputs':>9}",
    ]
    for rate in result.rates.values():
        lines.append(
            f"{rate.name:<46} {rate.per_second:>10,.0f} {rate.per_cpu_second:>10,.0f} "
            f"{rate.outputs:>9,}"
        )
    memory = result.memory
    lines += [
        "",
        f"users with state:                 {memory.get('users_with_state', 0):,}",
        f"state as objects, per user:       {memory.get('object_bytes_per_user', 0):,} B "
        "(resident memory growth / users)",
        f"encoded state, per user:          {memory.get('encoded_bytes_per_user', 0):,} B "
        f"(max {memory.get('encoded_bytes_max', 0):,} B)",
        f"stored envelope, per user:        {memory.get('envelope_bytes_per_user', 0):,} B "
        "(offsets + state: a table value)",
        f"state encode / decode:            {memory.get('state_encode_us', 0)} / "
        f"{memory.get('state_decode_us', 0)} us per user",
        f"peak resident memory:             {memory.get('peak_rss_mib', 0):,} MiB",
    ]
    if result.pattern_costs:
        lines += ["", "cpu per event of each pattern alone (us):"]
        lines += [f"  {name:<44} {cost:>7.2f}" for name, cost in result.pattern_costs.items()]
    for key, goal in goals(result).items():
        verdict = "met" if goal["met"] else "MISSED"
        lines.append(f"goal {key}: {goal['measured']:,} ev/s vs {goal['goal']:,}: {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile passes")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = run_core(args.events, args.users, with_profile=not args.no_profile)
    print()
    print(table(result))
    for name, text in result.profiles.items():
        print(f"\nprofile ({name}):\n{text}")
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
