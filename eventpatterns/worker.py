"""Starting a worker: broker, topics, the pattern file in force, then Faust.

`python -m eventpatterns.worker` (what `eventpatterns run` and the tests
launch) reads its settings from `EVENTPATTERNS_*` variables.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import ExitStack

from .broker import (
    EmbeddedBroker,
    acreate_topics,
    admin_client,
    apartition_counts,
    broker_from_env,
    to_bootstrap,
)
from .core.definitions import Definitions, PatternFileError, load_definitions, load_definitions_file
from .gctuning import tune_gc
from .patternstore import publish, read_latest
from .settings import Settings
from .topics import all_topics, co_partitioned

log = logging.getLogger("eventpatterns")

EMBEDDED_BANNER = (
    "eventpatterns: no EVENTPATTERNS_BROKER set, so an embedded in-memory development broker "
    "(Tansu) runs at {url}.\n"
    "  Everything on it is lost when this process stops. Point EVENTPATTERNS_BROKER at Kafka "
    "for production."
)


async def is_tansu(bootstrap: str) -> bool:
    """Tansu brokers need the changelog workaround in `app.CHANGELOG_MARKER`."""
    async with admin_client(bootstrap) as admin:
        cluster = await admin.describe_cluster()
    return str(cluster.get("cluster_id") or "").startswith("tansu")


class TopicLayoutError(Exception):
    """Topics that exist with another partition count than the worker's setting."""


async def check_partition_counts(settings: Settings, bootstrap: str) -> None:
    """Refuse to start on co-partitioned topics of another partition count.

    Topics that existed are left as they were. A user's state is written to the
    partition its event came from, so an events topic with more partitions than
    the changelog would fail the worker at its first write, far from the cause.
    """
    names = co_partitioned(settings)
    counts = await apartition_counts(bootstrap, names)
    wrong = {name: count for name, count in counts.items() if count != settings.partitions}
    if wrong:
        found = ", ".join(f"{name!r} has {count}" for name, count in sorted(wrong.items()))
        raise TopicLayoutError(
            f"EVENTPATTERNS_PARTITIONS is {settings.partitions}, but {found}: a user's "
            f"events, timer ticks and state share a partition number, so each of "
            f"{', '.join(map(repr, names))} needs "
            f"{settings.partitions} partitions (set EVENTPATTERNS_PARTITIONS to match, "
            f"or recreate the topics)"
        )


async def prepare(settings: Settings, bootstrap: str, file_definitions: Definitions) -> Definitions:
    """Create topics; take the pattern file in force from the definitions topic, or publish ours."""
    topics, compacted = all_topics(settings, file_definitions)
    await acreate_topics(
        bootstrap, topics, compacted, replication_factor=settings.replication_factor
    )
    await check_partition_counts(settings, bootstrap)
    text = await read_latest(bootstrap, settings.definitions_topic)
    if text is not None:
        try:
            latest = load_definitions(text, filename=settings.definitions_topic)
        except PatternFileError as error:
            log.error(
                "the definitions topic holds a bad file; using %s:\n%s", settings.patterns, error
            )
        else:
            if latest.source.topic == file_definitions.source.topic:
                return latest
            log.warning(
                "the definitions topic reads another source topic; using %s", settings.patterns
            )
    with open(settings.patterns, encoding="utf-8") as handle:
        await publish(bootstrap, settings.definitions_topic, handle.read())
    return file_definitions


def run_worker(settings: Settings, broker_url: str | None = None) -> int:
    """Run one worker until it is stopped; starts the embedded broker when none is set."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    use_event_loop(settings.event_loop)
    tune_gc(settings.gc_young_threshold)
    try:
        file_definitions = load_definitions_file(settings.patterns)
    except PatternFileError as error:
        print(error, file=sys.stderr)
        return 2
    with ExitStack() as stack:
        url = broker_url or broker_from_env(settings.broker)
        if url is None:
            broker = stack.enter_context(EmbeddedBroker())
            url = broker.url
            print(EMBEDDED_BANNER.format(url=broker.bootstrap), file=sys.stderr, flush=True)
        bootstrap = to_bootstrap(url)
        try:
            definitions = asyncio.run(prepare(settings, bootstrap, file_definitions))
        except TopicLayoutError as error:
            print(f"eventpatterns: {error}", file=sys.stderr)
            return 2
        tansu = asyncio.run(is_tansu(bootstrap))
        from .app import Runtime

        runtime = Runtime(settings, definitions, url, embedded_broker=tansu)
        return start_faust(runtime)
    return 0


def use_event_loop(name: str) -> None:
    """Every event loop made from now on in this process is of this kind."""
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def start_faust(runtime: object) -> int:
    import faust

    from .app import Runtime

    assert isinstance(runtime, Runtime)
    worker = faust.Worker(
        runtime.app,
        loglevel=runtime.settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        code = int(stop.code or 0)
    else:
        code = 0
    return 1 if runtime.failure is not None and code == 0 else code


def main() -> int:
    return run_worker(Settings())


if __name__ == "__main__":
    sys.exit(main())
