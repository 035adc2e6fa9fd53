"""Kafka topics of a worker: the input, the internal ones, and the publish targets.

Every topic that carries per-user records has the same partition count and is
keyed by user id, so a user's events, timer ticks and state changelog land in
the same partition number and are owned by the same worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust

from .processor import Topics

if TYPE_CHECKING:
    from .core.definitions import Definitions
    from .settings import Settings


def topic_names(settings: Settings, definitions: Definitions) -> Topics:
    return Topics(
        source=definitions.source.topic,
        events=settings.events_topic,
        timers=settings.timers_topic,
        actions=settings.actions_topic,
        dlq=settings.dlq_topic,
        history=settings.history_topic,
    )


def publish_topics(definitions: Definitions) -> set[str]:
    """Topics `publish` actions write to."""
    names = set()
    for pattern in definitions.patterns:
        actions = list(pattern.on_met)
        for checkpoint in pattern.checkpoints:
            actions.extend(checkpoint.actions)
        names.update(a.fields["topic"] for a in actions if a.kind == "publish")
    return names


def raw_topic(app: faust.App, name: str, **options: Any) -> faust.TopicT:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        **options,
    )


class RawSchema(faust.Schema):  # type: ignore[type-arg]
    """Keys and values as the broker gave them (bytes, or None).

    Faust's schema decodes each record through its serializer registry, which
    for `raw` returns the bytes unchanged: ~3 % of a worker's CPU (benchmarks/README.md).
    """

    def compile(self, app: Any, **_: Any) -> Any:
        event_class = app.conf.Event  # once: Faust's settings are slow to read

        async def decode(message: Any, **_: Any) -> Any:
            return event_class(app, message.key, message.value, message.headers, message)

        return decode


def input_channel(app: faust.App, names: Topics) -> faust.TopicT:
    """The one channel the events agent reads: input, repartitioned events and timer ticks."""
    subscribed = list(dict.fromkeys([names.source, names.events, names.timers]))
    schema = RawSchema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    return app.topic(*subscribed, schema=schema)


def co_partitioned(settings: Settings) -> list[str]:
    """The topics whose partition N must hold the same users: events, ticks, states.

    The input topic may differ: a record outside its user's partition is re-keyed
    through the events topic.
    """
    from .tables import STATE_TABLE

    changelog = f"{settings.app_id}-{STATE_TABLE}-changelog"  # Faust's name for it
    return [settings.events_topic, settings.timers_topic, changelog]


def all_topics(settings: Settings, definitions: Definitions) -> tuple[dict[str, int], set[str]]:
    """(name -> partitions, compacted names) to create before the worker starts."""
    names = topic_names(settings, definitions)
    partitioned = {names.source, names.events, names.timers}
    single = {names.actions, names.dlq, names.history, *publish_topics(definitions)} - partitioned
    topics = {name: settings.partitions for name in partitioned}
    topics.update({name: settings.partitions for name in single})
    topics[settings.definitions_topic] = 1
    return topics, {settings.definitions_topic}
