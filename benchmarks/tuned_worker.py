"""`eventpatterns.worker` with benchmark-only changes, to measure proposals before making them.

    BENCH_LINGER_MS=5 python -m benchmarks.tuned_worker

Each variable turns on one change; none edits the project:

BENCH_LINGER_MS          the producer's linger (the app sets 1 ms).
BENCH_TASK_DELIVERY      deliver records the way faust-streaming does (four tasks each),
                         without `faustpatches.deliver_without_tasks`.
BENCH_SWITCH_INTERVAL    seconds a thread holds the GIL before another that waits gets it
                         (Python: 0.005); the consumer thread waits for it under load.
BENCH_TAKE_EVENTS        batch with Faust's `Stream.take_events` (its window opens when the
                         previous batch is done), not `agents/batching.py`.
BENCH_CONSUMER_THREAD    run the consumer in a thread of its own, as faust-streaming does,
                         without `faustpatches.consume_on_the_app_loop`.
BENCH_RECORD_DELIVERY    deliver the events agent's records one by one through Faust's
                         channel and stream, without `faustpatches.deliver_fetches_in_bulk`.
BENCH_SLICE_OUTPUTS      apply a batch this many records at a time and hand each slice's
                         outputs to the producer at once (states written at the end).
BENCH_TRACE              a directory: each worker appends a line of JSON per batch to
                         `<app id>.trace.jsonl` there (`_trace_batches`), to see where a
                         record's time goes between its produce and its batch's writes.
BENCH_ENCODE_SLICES      when `max_events` were applied, encode the states then held over
                         this many batches, a slice after each batch's write, instead of
                         all at once (proposal 11 in README's "Still proposed").
BENCH_ZSTD_DICT          compress stored states with a zstd dictionary of this many bytes,
                         trained at start on states the worker's own pattern file makes of
                         other users (datagen seed 99), not the benchmark's.
BENCH_RDKAFKA_FETCHER    fetch the events agent's topics with librdkafka in a thread of its
                         own (`rdkafka_fetcher.py`); Faust's consumer keeps the group, the
                         seeks and the commits.
BENCH_RDKAFKA_MIN_BYTES  that fetcher's `fetch.min.bytes` (1): larger, every fetch waits its
                         whole wait on Tansu, so fetches come once per wait.
BENCH_THREAD_APPLY       apply each batch in a thread of its own while the loop writes the
                         batch before and goes on fetching (`_apply_in_a_thread`).
BENCH_BUSY_NO_WINDOW     a batch whose first events came while the batch before was applied
                         or written starts at once, without the batch window.
BENCH_SPIN_WAITS_MS      waits of the agent's batching up to this long (the batch window,
                         the idle check) spin on the event loop instead of sleeping, so
                         that the CPU stays busy (and its caches and clock warm).
BENCH_NICE               the worker's niceness (`os.nice`): the broker and the benchmark's
                         clients before it when the CPUs are short.

Seven proposals measured this way have landed (batch sends, uvloop, the garbage
collector's thresholds with `gc.freeze()` after recovery, delivery without tasks,
batches whose window opens at their first event, the consumer on the app's loop,
fetches delivered to the agent whole); the `asyncio`, `gcdefault`, `taskdelivery`,
`takeevents`, `consumerthread` and `recorddelivery` experiments run the worker
without one of them, to measure what it gives. Others only set the worker's own
settings: `fetch5`, `fetch10` and `fetch2` (a 5, 10 or 2 ms fetch wait, not 25, for
a broker that holds an empty fetch as long as it may, as Tansu does), `batchwait2`
(a batch waits 2 ms to fill: the default since 2026-12-06, an eighth session),
`batchwait10` (10 ms, the default until 2026-12-01), `window5` (the batch window and
the idle moment's wait both 5 ms: the defaults until the eighth session), `idle5` and
`idle50` (the states held written after 5 or 50 ms without an event, not 20),
`batch250` (batches of at most 250 events, not 1,000) and `norecent`
(no decoded states of recent users kept, `EVENTPATTERNS_RECENT_STATES=0`).
`sliceoutputs` sets BENCH_SLICE_OUTPUTS to 100; measured worse, not landed.
`zstddict` sets BENCH_ZSTD_DICT to 4096, to measure the proposal of a dictionary per
pattern file (values written with it are readable only by workers with the same
dictionary: not for landing as it is). `encodeslices` sets BENCH_ENCODE_SLICES to 4;
measured no better, not landed. `rdkafka` sets BENCH_RDKAFKA_FETCHER (with `fetch10`
as measured), `rdkafkaperiodic` also BENCH_RDKAFKA_MIN_BYTES to 1 MiB (with
`fetch5`), `nice5` BENCH_NICE to 5; all three measured no better, not landed. `threadapply`
sets BENCH_THREAD_APPLY (`threadapply1ms` and `threadapply05ms` with a GIL switch
interval of 1 or 0.5 ms), `busynowindow` BENCH_BUSY_NO_WINDOW, `spinwindow`
BENCH_SPIN_WAITS_MS to 10; measured worse, not landed.
`trace` sets BENCH_TRACE to /tmp/eventpatterns-traces: no change, timings only.

`python -m benchmarks.run --experiment NAME` runs its workers through this module.
"""

from __future__ import annotations

import os
import sys
from typing import Any

EXPERIMENTS: dict[str, dict[str, str]] = {
    "fetch5": {"EVENTPATTERNS_FETCH_WAIT_MS": "5"},
    "fetch10": {"EVENTPATTERNS_FETCH_WAIT_MS": "10"},
    "fetch2": {"EVENTPATTERNS_FETCH_WAIT_MS": "2"},
    "batchwait2": {"EVENTPATTERNS_BATCH_WAIT": "0.002"},
    "batchwait1": {"EVENTPATTERNS_BATCH_WAIT": "0.001"},
    "batchwait10": {"EVENTPATTERNS_BATCH_WAIT": "0.01"},
    "window5": {"EVENTPATTERNS_BATCH_WAIT": "0.005", "EVENTPATTERNS_STATE_WRITE_IDLE": "0.005"},
    "idle5": {"EVENTPATTERNS_STATE_WRITE_IDLE": "0.005"},
    "idle50": {"EVENTPATTERNS_STATE_WRITE_IDLE": "0.05"},
    "asyncio": {"EVENTPATTERNS_EVENT_LOOP": "asyncio"},
    "gcdefault": {"EVENTPATTERNS_GC_YOUNG_THRESHOLD": "0"},
    "linger5": {"BENCH_LINGER_MS": "5"},
    "taskdelivery": {"BENCH_TASK_DELIVERY": "1"},
    "takeevents": {"BENCH_TAKE_EVENTS": "1"},
    "switch1ms": {"BENCH_SWITCH_INTERVAL": "0.001"},
    "switch05ms": {"BENCH_SWITCH_INTERVAL": "0.0005"},
    "consumerthread": {"BENCH_CONSUMER_THREAD": "1"},
    "recorddelivery": {"BENCH_RECORD_DELIVERY": "1"},
    "batch250": {"EVENTPATTERNS_BATCH_SIZE": "250"},
    "norecent": {"EVENTPATTERNS_RECENT_STATES": "0"},
    "sliceoutputs": {"BENCH_SLICE_OUTPUTS": "100"},
    "zstddict": {"BENCH_ZSTD_DICT": "4096"},
    "trace": {"BENCH_TRACE": "/tmp/eventpatterns-traces"},
    "encodeslices": {"BENCH_ENCODE_SLICES": "4"},
    "rdkafka": {"BENCH_RDKAFKA_FETCHER": "1"},
    "nice5": {"BENCH_NICE": "5"},
    "threadapply": {"BENCH_THREAD_APPLY": "1"},
    "busynowindow": {"BENCH_BUSY_NO_WINDOW": "1"},
    "spinwindow": {"BENCH_SPIN_WAITS_MS": "10"},
    "threadapply1ms": {"BENCH_THREAD_APPLY": "1", "BENCH_SWITCH_INTERVAL": "0.001"},
    "threadapply05ms": {"BENCH_THREAD_APPLY": "1", "BENCH_SWITCH_INTERVAL": "0.0005"},
    "rdkafkaperiodic": {"BENCH_RDKAFKA_FETCHER": "1", "BENCH_RDKAFKA_MIN_BYTES": "1048576"},
}


def _patch_linger(milliseconds: int) -> None:
    import eventpatterns.app as app_module

    original = app_module.faust.App

    def make_app(*args: Any, **options: Any) -> Any:
        options["producer_linger_ms"] = milliseconds
        return original(*args, **options)

    app_module.faust.App = make_app  # type: ignore[misc]


def _keep_task_delivery() -> None:
    import eventpatterns.faustpatches as patches

    patches.deliver_without_tasks = lambda: None


def _batch_with_take_events() -> None:
    import eventpatterns.agents as agents
    from eventpatterns.faustpatches import fetched_from_event

    async def take_events(
        stream: Any, size: int, within: float, report_idle: bool = False, idle_after: Any = None
    ) -> Any:
        # No idle moment reported: the states are written every `size` events.
        async for events in stream.take_events(size, within=within):
            yield [fetched_from_event(event) for event in events]  # what the agent applies

    agents.batches = take_events  # type: ignore[assignment]


def _consume_in_a_thread() -> None:
    import eventpatterns.faustpatches as patches

    patches.consume_on_the_app_loop = lambda: None


def _deliver_record_by_record() -> None:
    import eventpatterns.faustpatches as patches

    patches.deliver_fetches_in_bulk = lambda: None


def _send_outputs_per_slice(size: int) -> None:
    """A batch applied `size` records at a time, each slice's outputs handed to the
    producer at once; the states written once all are durable (not for landing:
    slices' sends of one partition are not ordered)."""
    import asyncio
    import time

    import eventpatterns.agents as agents
    from eventpatterns.agents.batching import acknowledge, batches
    from eventpatterns.app import _outputs
    from eventpatterns.processor import BatchResult

    counters = ("events", "bad", "duplicates", "forwarded", "ticks", "records")

    async def apply_batches(
        runtime: Any, stream: Any, max_events: int, within: float, idle_after: Any = None
    ) -> None:
        processor = runtime.processor
        async for batch in batches(stream, max_events, within):
            producer = runtime.app.producer._ensure_producer()
            started = time.perf_counter()
            touched: dict[str, Any] = {}
            total = BatchResult()
            sends = []
            for first in range(0, len(batch), size):
                part = BatchResult()
                for incoming in batch[first : first + size]:
                    if incoming.topic == processor.topics.timers:
                        processor._command(incoming, touched, part)
                    else:
                        processor._event(incoming, touched, part)
                for name in counters:
                    setattr(total, name, getattr(total, name) + getattr(part, name))
                sends.append(asyncio.ensure_future(_outputs(part).send(producer)))
                await asyncio.sleep(0)  # the producer's sender takes them
            runtime.metrics.observe_batch(total, time.perf_counter() - started, len(batch))
            await asyncio.gather(*sends)
            runtime.held = touched
            runtime._index_timers(set(touched))  # as `Runtime.process_batch` does
            await runtime.write_states()  # the batch's states, once its outputs are durable
            acknowledge(runtime.app, batch)

    agents.apply_batches = apply_batches  # type: ignore[assignment]


def _encode_in_slices(slices: int) -> None:
    """The states held when `max_events` were applied, encoded a slice after each of
    the next `slices` writes (each slice's changelog records go with the write after
    it); the records applied before then acknowledged once the last slice is durable.
    Sound because a user's state may be made durable at any newer point (its offsets
    say which records it holds); measured before landing (the failover test would
    have to pass as often as the held states' did)."""
    import eventpatterns.agents as agents
    from eventpatterns.agents import apply_one_at_a_time, write, write_states
    from eventpatterns.agents.batching import acknowledge, batches

    def encode_some(runtime: Any, users: list[str]) -> None:
        part = {user: runtime.held.pop(user) for user in users if user in runtime.held}
        rest, runtime.held = runtime.held, part
        runtime.encode_held()
        runtime.held = rest

    async def apply_batches(
        runtime: Any, stream: Any, max_events: int, within: float, idle_after: Any = None
    ) -> None:
        applied: list[Any] = []  # applied since the last threshold
        pending: list[Any] = []  # applied before it, their users' states being encoded
        encoded: list[Any] = []  # every state they changed encoded: durable with the next write
        to_encode: list[str] = []
        size = 0
        async for batch in batches(stream, max_events, within, True, idle_after):
            if not batch:
                if not await write_states(runtime):
                    return
                acknowledge(runtime.app, encoded + pending + applied)
                encoded, pending, applied, to_encode = [], [], [], []
                continue
            try:
                result = runtime.process_batch(batch)
            except Exception:
                if not await apply_one_at_a_time(runtime, pending + applied, batch):
                    return
                acknowledge(runtime.app, encoded + pending + applied + batch)
                encoded, pending, applied, to_encode = [], [], [], []
                continue
            if not await write(runtime, result):
                return
            acknowledge(runtime.app, encoded)
            encoded = []
            applied.extend(batch)
            if not to_encode and len(applied) >= max_events:
                pending, applied = applied, []
                to_encode = list(runtime.held)
                size = -(-len(to_encode) // slices)
            if to_encode:
                if len(applied) >= max_events:  # the next threshold came first: the rest now
                    size = len(to_encode)
                now, to_encode = to_encode[:size], to_encode[size:]
                encode_some(runtime, now)
                if not to_encode:
                    encoded, pending = pending, []
        if (encoded or pending or applied) and await write_states(runtime):
            acknowledge(runtime.app, encoded + pending + applied)

    agents.apply_batches = apply_batches  # type: ignore[assignment]


def _compress_with_a_dictionary(size: int) -> None:
    """States compressed with a dictionary trained on states of the worker's pattern file."""
    import zstandard

    import eventpatterns.processor as processor
    from eventpatterns.core.definitions import load_definitions_file

    from . import datagen
    from .bench_core import DictStore, incoming_batches, runtime_path

    definitions = load_definitions_file(os.environ["EVENTPATTERNS_PATTERNS"])
    records = datagen.generate(60_000, 6_000, seed=99, first_user=10_000_000)
    store = DictStore()
    batches = incoming_batches(definitions.source.topic, records, datagen.encode(records))
    runtime_path(definitions, batches, store)
    samples = [processor.unpack_stored(value) for value in store.values.values()]
    trained = zstandard.train_dictionary(size, samples)
    processor._COMPRESSOR = zstandard.ZstdCompressor(
        level=1, dict_data=trained, write_checksum=False
    )
    processor._SMALL_COMPRESSOR = processor._COMPRESSOR
    processor._DECOMPRESSOR = zstandard.ZstdDecompressor(dict_data=trained)


def _spin_short_waits(longest: float) -> None:
    """The agent's short waits (window, idle check) spin on the loop, not sleep.

    Work done in bursts with idle gaps between them costs more per event than
    the same work back to back (caches and clock cold after each gap). Spinning
    keeps the worker's CPU busy through the gaps, at the cost of that CPU.
    """
    import asyncio

    from faust.streams import Stream

    original = Stream.wait_for_stopped

    async def wait_for_stopped(self: Any, *events: Any, timeout: Any = None) -> bool:
        if timeout is None or timeout > longest:
            return bool(await original(self, *events, timeout=timeout))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not any(event.is_set() for event in events):
            if self.should_stop:
                return True
            await asyncio.sleep(0)
        return False

    Stream.wait_for_stopped = wait_for_stopped  # type: ignore[method-assign]


def _no_window_when_busy() -> None:
    """The batch window only when the worker has caught up.

    A batch's window lets a light stream gather into batches of some size. Under
    load the events that came while the batch before was applied and written are
    a batch already; waiting out a window for them adds its length to their
    latency. Here a batch whose first event was buffered before the batch before
    was done (the agent came back for the next one) starts at once: its window
    opens already over. `agents/batching.py` unchanged otherwise.
    """
    import eventpatterns.agents as agents
    from eventpatterns.agents import batching

    applying = [False]
    """A batch is out with the agent (not the idle moment's empty one)."""
    window = [0.0]

    class BufferSkippingTheWindow(batching.Buffer):
        def _open_if_empty(self) -> None:
            opening = not self.events
            super()._open_if_empty()
            if opening and applying[0]:
                self.opened_at -= window[0]

    take_batches = batching.batches

    async def batches(
        stream: Any,
        max_events: int,
        within: float,
        report_idle: bool = False,
        idle_after: Any = None,
    ) -> Any:
        window[0] = within
        async for batch in take_batches(stream, max_events, within, report_idle, idle_after):
            applying[0] = bool(batch)
            yield batch
            applying[0] = False

    batching.Buffer = BufferSkippingTheWindow  # type: ignore[misc]
    agents.batches = batches  # type: ignore[assignment]


def _apply_in_a_thread() -> None:
    """Each batch applied in a thread while the loop writes the batch before it.

    The loop is free while a batch is applied (the GIL changes hands every
    switch interval), so the fetches go on and the previous batch's write is in
    flight meanwhile: the write's round trip leaves the batch cycle. A write
    takes the changelog records encoded before it when it starts, and starts
    once the one before is durable, so the order of the writes is the agent's.
    The sink's calls (Redis, listeners) and the timers' indexing are made on the
    loop after each batch.
    """
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import eventpatterns.agents as agents
    from eventpatterns.agents import write_states
    from eventpatterns.agents.batching import acknowledge, batches
    from eventpatterns.app import CHANGELOG_MARKER, Runtime

    executor = ThreadPoolExecutor(1, thread_name_prefix="apply")
    loop_thread = threading.main_thread()
    on_record = Runtime.on_record
    deferred: list[tuple[Any, Any]] = []

    def on_record_from_any_thread(self: Runtime, record: Any, cause: Any) -> None:
        if threading.current_thread() is loop_thread:
            on_record(self, record, cause)
        else:
            deferred.append((record, cause))

    Runtime.on_record = on_record_from_any_thread  # type: ignore[method-assign]
    index_timers = Runtime._index_timers
    deferred_timers: list[set[str]] = []

    def index_timers_on_the_loop(self: Runtime, users: set[str]) -> None:
        if threading.current_thread() is loop_thread:
            index_timers(self, users)
        else:
            deferred_timers.append(users)

    Runtime._index_timers = index_timers_on_the_loop  # type: ignore[method-assign]

    def start_write(runtime: Runtime, outputs: Any) -> asyncio.Future[bool]:
        store = runtime.store
        if runtime.embedded_broker and not store.restores_in_bulk and store.changelog:
            store.end_changelog_batches(CHANGELOG_MARKER)
        outputs.take_all(store.changelog)  # now, not when the task first runs

        async def send() -> bool:
            try:
                await outputs.send(runtime.app.producer._ensure_producer())
            except Exception as error:
                runtime.fail(error)
                return False
            store.changelog_written(outputs.last_batch_starts)
            return True

        return asyncio.ensure_future(send())

    async def apply_batches(
        runtime: Runtime, stream: Any, max_events: int, within: float, idle_after: Any = None
    ) -> None:
        loop = asyncio.get_running_loop()
        applied: list[Any] = []
        encoded: list[Any] = []
        in_flight: tuple[asyncio.Future[bool], list[Any]] | None = None

        async def settle() -> bool:
            nonlocal in_flight
            if in_flight is None:
                return True
            task, records = in_flight
            in_flight = None
            if not await task:
                return False
            acknowledge(runtime.app, records)
            return True

        async for batch in batches(stream, max_events, within, True, idle_after):
            if not batch:
                if not await settle() or not await write_states(runtime):
                    return
                acknowledge(runtime.app, encoded + applied)
                encoded, applied = [], []
                continue
            result = await loop.run_in_executor(executor, runtime.process_batch, batch)
            for record, cause in deferred:
                on_record(runtime, record, cause)
            deferred.clear()
            for users in deferred_timers:
                index_timers(runtime, users)
            deferred_timers.clear()
            if not await settle():
                return
            in_flight = (start_write(runtime, result.outputs), encoded)
            applied.extend(batch)
            if len(applied) >= max_events:
                runtime.encode_held()  # with the next write, once this one is durable
                encoded, applied = applied, []
            else:
                encoded = []
        if await settle() and (encoded or applied) and await write_states(runtime):
            acknowledge(runtime.app, encoded + applied)

    agents.apply_batches = apply_batches  # type: ignore[assignment]


def _trace_batches(directory: str) -> None:
    """A line per batch: when it was applied and written, and how old its records were.

    `fetched` and `buffered` are percentiles (0, 50, 90, 100), in ms, over the
    batch's records of the time from each record's produce (its Kafka timestamp)
    to its fetch reaching the worker, and from there to the batch's start;
    `apply_ms` and `write_ms` the batch's own steps; `states` the changelog
    records its write carried, `held` the users held after the batch.
    """
    import json
    import time
    from pathlib import Path

    from eventpatterns.app import Runtime

    Path(directory).mkdir(parents=True, exist_ok=True)
    path = Path(directory) / f"{os.environ.get('EVENTPATTERNS_APP_ID', 'worker')}.trace.jsonl"
    out = path.open("a", buffering=1)  # a line at a time: the worker may be killed
    process_batch, commit_batch = Runtime.process_batch, Runtime.commit_batch
    pending: dict[str, Any] = {}

    def percentiles(values: list[float]) -> list[float]:
        if not values:
            return []
        values.sort()
        last = len(values) - 1
        return [round(values[round(last * q)], 2) for q in (0, 0.5, 0.9, 1)]

    def traced_process(self: Runtime, records: list[Any]) -> Any:
        started = time.time()
        applied = process_batch(self, records)
        pending.update(
            at=round(started, 4),
            events=len(records),
            apply_ms=round((time.time() - started) * 1000, 2),
            fetched=percentiles(
                [r.received_at / 1000 - r.timestamp_ms for r in records if r.timestamp_ms]
            ),
            buffered=percentiles([started * 1000 - r.received_at / 1000 for r in records]),
            held=len(self.held),
            states=len(self.store.changelog),
        )
        return applied

    async def traced_commit(self: Runtime, applied: Any) -> None:
        started = time.time()
        await commit_batch(self, applied)
        pending["write_ms"] = round((time.time() - started) * 1000, 2)
        out.write(json.dumps(pending) + "\n")
        pending.clear()

    Runtime.process_batch = traced_process  # type: ignore[method-assign]
    Runtime.commit_batch = traced_commit  # type: ignore[method-assign]


def main() -> int:
    if os.environ.get("BENCH_NICE"):
        os.nice(int(os.environ["BENCH_NICE"]))
    if os.environ.get("BENCH_RECORD_DELIVERY"):
        _deliver_record_by_record()
    if os.environ.get("BENCH_CONSUMER_THREAD"):
        _consume_in_a_thread()
    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    if os.environ.get("BENCH_TAKE_EVENTS"):
        _batch_with_take_events()
    if os.environ.get("BENCH_TASK_DELIVERY"):
        _keep_task_delivery()
    if os.environ.get("BENCH_LINGER_MS"):
        _patch_linger(int(os.environ["BENCH_LINGER_MS"]))
    if os.environ.get("BENCH_SLICE_OUTPUTS"):
        _send_outputs_per_slice(int(os.environ["BENCH_SLICE_OUTPUTS"]))
    if os.environ.get("BENCH_ENCODE_SLICES"):
        _encode_in_slices(int(os.environ["BENCH_ENCODE_SLICES"]))
    if os.environ.get("BENCH_ZSTD_DICT"):
        _compress_with_a_dictionary(int(os.environ["BENCH_ZSTD_DICT"]))
    if os.environ.get("BENCH_SPIN_WAITS_MS"):
        _spin_short_waits(float(os.environ["BENCH_SPIN_WAITS_MS"]) / 1000)
    if os.environ.get("BENCH_BUSY_NO_WINDOW"):
        _no_window_when_busy()
    if os.environ.get("BENCH_THREAD_APPLY"):
        _apply_in_a_thread()
    if os.environ.get("BENCH_TRACE"):
        _trace_batches(os.environ["BENCH_TRACE"])
    if os.environ.get("BENCH_RDKAFKA_FETCHER"):
        from .rdkafka_fetcher import install

        install()
    from eventpatterns.worker import main as worker_main

    return worker_main()


if __name__ == "__main__":
    sys.exit(main())
