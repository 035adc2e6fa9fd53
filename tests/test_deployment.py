"""The production compose file: valid, KRaft Kafka, Redis, two workers with known settings;
and the worker image's build stage, given what the compiled wheel's build needs."""

from __future__ import annotations

import fnmatch
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


def test_the_workers_name_no_file_their_image_lacks() -> None:
    """A path in a worker's settings must be in one of its volumes or in the home
    directory the image makes: the image holds the installed package and nothing
    of the checkout (its pattern file is the package's own, the default)."""
    result = subprocess.run([*compose_command(), "config"], cwd=REPO, capture_output=True)
    services = yaml.safe_load(result.stdout)["services"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "useradd --create-home eventpatterns" in dockerfile
    for name in [name for name in services if name.startswith("worker")]:
        service = services[name]
        mounted = [volume["target"] for volume in service.get("volumes", [])]
        for variable, value in service["environment"].items():
            if str(value).startswith("/"):
                roots = [*mounted, "/home/eventpatterns"]
                assert any(str(value).startswith(f"{root}/") for root in roots), (variable, value)


def build_stage() -> list[str]:
    """The Dockerfile's instructions up to its second FROM, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    second_from = [i for i, line in enumerate(instructions) if line.startswith("FROM ")][1]
    return instructions[:second_from]


def test_the_image_builds_the_compiled_wheel_from_what_it_copies() -> None:
    # tests/test_compiled.py builds the compiled wheel from a copy of exactly these.
    from tests.test_compiled import PROJECT_FILES

    stage = build_stage()
    copied = {
        source.rstrip("/")
        for line in stage
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    assert copied == {*PROJECT_FILES, "build_support", "eventpatterns"}
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in copied:
        assert (REPO / source).exists(), source
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
    [build] = [line for line in stage if line.startswith("RUN ")]
    assert "EVENTPATTERNS_COMPILE=1 pip wheel" in build
    assert "/venv/bin/pip install" in build
