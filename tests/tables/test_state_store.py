"""The processor's store over the Faust table (tables/__init__.py), with stand-ins for it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka.structs import TopicPartition

from eventpatterns.tables import TableStateStore


class Data:
    """Stands in for the table's store: records the positions it is told."""

    def __init__(self) -> None:
        self.positions: dict[TopicPartition, int] = {}

    def set_persisted_offset(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset


def test_a_write_with_other_topics_sets_only_the_changelogs_positions() -> None:
    """The states go in one produce with a batch's outputs (`Runtime._write`): only the
    changelog's partitions are where the store's own writes got to."""
    data = Data()
    table: Any = SimpleNamespace(changelog_topic_name="app-state-changelog", data=data)
    store = TableStateStore(table)
    store.changelog_written(
        {
            TopicPartition("app-state-changelog", 0): 40,
            TopicPartition("app-actions", 0): 900,
            TopicPartition("app-state-changelog", 3): 7,
            TopicPartition("special-offers", 1): 12,
        }
    )
    assert data.positions == {
        TopicPartition("app-state-changelog", 0): 40,
        TopicPartition("app-state-changelog", 3): 7,
    }
