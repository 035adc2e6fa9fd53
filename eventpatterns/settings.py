"""Runtime settings, read from `EVENTPATTERNS_*` environment variables.

Every field documents its variable; `docs/operations.md` lists them all.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_patterns() -> str:
    """examples/clickstream.yaml of the working directory, else the copy the package ships."""
    local = Path("examples/clickstream.yaml")
    if local.exists():
        return str(local)
    return str(resources.files("eventpatterns").joinpath("examples/clickstream.yaml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTPATTERNS_", extra="ignore")

    patterns: str = Field(
        default_factory=default_patterns,
        description="EVENTPATTERNS_PATTERNS: the pattern file a worker starts with, unless the "
        "definitions topic already holds a newer one.",
    )
    broker: str | None = Field(
        default=None,
        description="EVENTPATTERNS_BROKER: Kafka bootstrap servers, e.g. kafka://kafka:9092. "
        "Unset: start the embedded in-memory development broker (Tansu).",
    )
    app_id: str = Field(
        default="eventpatterns",
        description="EVENTPATTERNS_APP_ID: the consumer group, and the prefix of the tables' "
        "changelog topics.",
    )
    partitions: int = Field(
        default=4,
        ge=1,
        description="EVENTPATTERNS_PARTITIONS: partitions of the input and internal topics "
        "(the most workers that can share the load); a worker refuses to start if the events "
        "or timers topic or the state changelog exists with another count.",
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        description="EVENTPATTERNS_REPLICATION_FACTOR: replicas of the topics the worker creates.",
    )
    store: str = Field(
        default="memory://",
        description="EVENTPATTERNS_STORE: table store; memory:// or rocksdb:// (needs the "
        "`rocksdict` package) for state larger than memory.",
    )
    data_dir: str = Field(
        default=".eventpatterns-data",
        description="EVENTPATTERNS_DATA_DIR: where Faust keeps local table files.",
    )
    web_host: str = Field(
        default="127.0.0.1",
        description="EVENTPATTERNS_WEB_HOST: the address the HTTP server binds "
        "(0.0.0.0 in containers).",
    )
    web_port: int = Field(
        default=6066, description="EVENTPATTERNS_WEB_PORT: HTTP API, metrics and dashboard."
    )
    redis_url: str | None = Field(
        default="redis://127.0.0.1:6379/0",
        description="EVENTPATTERNS_REDIS_URL: transition log; empty to disable.",
    )
    redis_stream: str = Field(
        default="eventpatterns:transitions",
        description="EVENTPATTERNS_REDIS_STREAM: the Redis stream transitions and offers go to.",
    )
    redis_maxlen: int = Field(
        default=100_000, description="EVENTPATTERNS_REDIS_MAXLEN: approximate cap of that stream."
    )
    session_timeout: float = Field(
        default=4.0,
        gt=0,
        description="EVENTPATTERNS_SESSION_TIMEOUT: seconds before the group gives a silent "
        "worker's partitions to the others; also bounds how long joining takes.",
    )
    batch_size: int = Field(
        default=1000,
        ge=1,
        description="EVENTPATTERNS_BATCH_SIZE: most events per agent batch; also how many "
        "are applied before the states they changed are written.",
    )
    fetch_wait_ms: int = Field(
        default=25,
        ge=1,
        description="EVENTPATTERNS_FETCH_WAIT_MS: longest a fetch waits for data; bounds the "
        "latency each hop adds when the broker does not answer early.",
    )
    batch_wait: float = Field(
        default=0.002,
        gt=0,
        description="EVENTPATTERNS_BATCH_WAIT: seconds a batch waits, from its first event, "
        "for more before it runs; longer makes larger batches, more events/s and later "
        "actions.",
    )
    state_write_idle: float = Field(
        default=0.02,
        gt=0,
        description="EVENTPATTERNS_STATE_WRITE_IDLE: seconds without an event after which the "
        "states held decoded are written; shorter makes them durable sooner in a pause, at "
        "the cost of writing them more often under a paced load.",
    )
    recent_states: int = Field(
        default=1_000,
        ge=0,
        description="EVENTPATTERNS_RECENT_STATES: users whose last written state the worker "
        "keeps decoded, so that their next events skip decoding it (0: none).",
    )
    max_event_bytes: int = Field(
        default=1 << 20, description="EVENTPATTERNS_MAX_EVENT_BYTES: larger records go to the DLQ."
    )
    api_token: str | None = Field(
        default=None,
        description="EVENTPATTERNS_API_TOKEN: when set, the HTTP API wants "
        "'Authorization: Bearer <token>' (all but /metrics).",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="EVENTPATTERNS_EVENT_LOOP: uvloop (8-12 % less CPU per event, measured) "
        "or asyncio.",
    )
    gc_young_threshold: int = Field(
        default=50_000,
        ge=0,
        description="EVENTPATTERNS_GC_YOUNG_THRESHOLD: allocations between two collections of "
        "the youngest generation (Python's default: 700; 0 keeps Python's thresholds). With it, "
        "what is alive after each recovery is frozen out of later collections (gc.freeze): "
        "16-18 % less CPU per event, measured.",
    )
    log_level: str = Field(
        default="warning", description="EVENTPATTERNS_LOG_LEVEL: debug, info, warning or error."
    )

    # Internal topic names, derived from app_id unless set.
    events_topic: str = Field(
        default="eventpatterns-events",
        description="EVENTPATTERNS_EVENTS_TOPIC: events keyed by user id (posts, repartitioned "
        "foreign records).",
    )
    timers_topic: str = Field(
        default="eventpatterns-timers",
        description="EVENTPATTERNS_TIMERS_TOPIC: timer ticks and reset commands, keyed by user id.",
    )
    actions_topic: str = Field(
        default="eventpatterns-actions",
        description="EVENTPATTERNS_ACTIONS_TOPIC: the audit trail of transitions and actions.",
    )
    dlq_topic: str = Field(
        default="eventpatterns-dlq",
        description="EVENTPATTERNS_DLQ_TOPIC: bad records, raw, with the reason in headers.",
    )
    history_topic: str = Field(
        default="eventpatterns-history",
        description="EVENTPATTERNS_HISTORY_TOPIC: contact and response history.",
    )
    definitions_topic: str = Field(
        default="eventpatterns-definitions",
        description="EVENTPATTERNS_DEFINITIONS_TOPIC: compacted; the pattern file in force.",
    )

    @property
    def redis_enabled(self) -> bool:
        return bool(self.redis_url)


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for docs and `eventpatterns settings`."""
    rows = []
    for name, field in Settings.model_fields.items():
        variable = f"EVENTPATTERNS_{name.upper()}"
        text = (field.description or "").removeprefix(f"{variable}: ")
        default = "examples/clickstream.yaml" if field.default_factory else repr(field.default)
        rows.append((variable, default, text))
    return rows
