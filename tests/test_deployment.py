"""The production compose file: valid, KRaft Kafka, Redis, two workers with known settings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from eventpatterns.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def compose_command() -> list[str]:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if shutil.which("docker") and probe.returncode == 0:
        return ["docker", "compose"]
    assert shutil.which("docker-compose"), "docker compose or docker-compose (CI installs it)"
    return ["docker-compose"]


def test_compose_file_is_valid() -> None:
    result = subprocess.run([*compose_command(), "config"], cwd=REPO, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_compose_runs_kraft_kafka_redis_and_two_workers() -> None:
    result = subprocess.run([*compose_command(), "config"], cwd=REPO, capture_output=True)
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["redis"]["image"].startswith("redis")
    workers = [name for name in services if name.startswith("worker")]
    assert len(workers) == 2
    known = {f"EVENTPATTERNS_{name.upper()}" for name in Settings.model_fields}
    for name in workers:
        environment = services[name]["environment"]
        assert environment["EVENTPATTERNS_BROKER"] == "kafka://kafka:9092"
        assert set(environment) <= known, set(environment) - known
