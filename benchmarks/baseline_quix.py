"""Baseline: the seed's clickstream offer state machine written with quixstreams.

What a user of the seed (the Quix "event detection" tutorial) would run instead of
eventpatterns: a StreamingDataFrame over `enriched-click-data` whose stateful step
keeps each user's machine in quixstreams' RocksDB state (with its changelog topic)
and sends the offer to an output topic. The logic is benchmarks/seed_machine.py.

    BENCH_BOOTSTRAP=127.0.0.1:9092 BENCH_TOPIC=enriched-click-data \\
    BENCH_OUTPUT=quix-special-offers BENCH_PROGRESS=/tmp/progress.json \\
    BENCH_STATE_DIR=/tmp/quix-state python -m benchmarks.baseline_quix

Against Tansu, librdkafka's consumer group join lasts up to half the session
timeout, so it is set to 3 s (the default, 45 s, makes the join take 23 s; with
6 s the app applied its first record 5.9 s after it started, with 3 s 5.0 s).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from quixstreams import Application, State

from .progress import Progress, from_env
from .seed_machine import step


def build(
    bootstrap: str, topic: str, output: str, group: str, state_dir: str, progress: Progress
) -> Application:
    def processed(topic: str, partition: int, offset: int) -> None:
        progress.add(1)

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        commit_interval=1.0,
        state_dir=state_dir,
        loglevel="WARNING",
        consumer_extra_config={"session.timeout.ms": 3000, "heartbeat.interval.ms": 500},
        on_message_processed=processed,
    )
    clicks = app.topic(topic, key_deserializer="bytes", value_deserializer="json")
    offers = app.topic(output, key_serializer="bytes", value_serializer="json")

    def detect(record: dict[str, Any], state: State) -> Any:
        machine, offer = step(state.get("machine"), record)
        if machine is not None:
            state.set("machine", machine)
        if offer is not None:
            progress.outputs += 1
        return offer

    sdf = app.dataframe(clicks)
    sdf = sdf.apply(detect, stateful=True).filter(lambda offer: offer is not None)
    sdf.to_topic(offers)
    return app


def main() -> int:
    progress = from_env()
    app = build(
        os.environ["BENCH_BOOTSTRAP"],
        os.environ.get("BENCH_TOPIC", "enriched-click-data"),
        os.environ.get("BENCH_OUTPUT", "quix-special-offers"),
        os.environ.get("BENCH_GROUP", "bench-quix"),
        os.environ.get("BENCH_STATE_DIR", "quix-state"),
        progress,
    )
    try:
        app.run()
    finally:
        progress.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
