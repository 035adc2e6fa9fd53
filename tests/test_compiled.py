"""The core compiled with mypyc (eventpatterns/compiled.py), built from a copy of the package.

The build must give the core's behaviour exactly: the core's own tests run
against it. A build older than its sources must never be imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns("__pycache__", "*.so", "compiled.json")


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Python in `root`, importing `eventpatterns` from there."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compiled")
    shutil.copytree(REPO / "eventpatterns", root / "eventpatterns", ignore=SKIP)
    shutil.copytree(REPO / "tests" / "core", root / "tests" / "core", ignore=SKIP)
    (root / "tests" / "__init__.py").write_text("")
    shutil.copytree(REPO / "examples", root / "examples")
    (root / "benchmarks").mkdir()
    shutil.copy(REPO / "benchmarks/patterns.yaml", root / "benchmarks/patterns.yaml")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")  # pytest's settings
    # Installed, the package sits among other top-level modules (site-packages),
    # some of which mypy refuses to take for the project's own.
    import typing_extensions

    shutil.copy(typing_extensions.__file__, root / "typing_extensions.py")
    build = run(root, "-m", "eventpatterns.compiled")
    assert build.returncode == 0, build.stderr[-3000:]
    return root


def compiled(root: Path) -> str:
    check = run(root, "-c", "from eventpatterns import compiled; print(compiled.is_compiled())")
    return check.stdout.strip() or check.stderr.strip().splitlines()[-1]


def test_the_build_is_imported_in_place_of_the_sources(built: Path) -> None:
    assert compiled(built) == "True"
    assert sorted(p.name.split(".")[0] for p in (built / "eventpatterns/core").glob("*.so")) == [
        "actions",
        "dispatch",
        "evaluator",
        "events",
        "expressions",
        "keys",
        "matching",
        "state",
        "templates",
        "timeutil",
    ]


def test_the_compiled_core_passes_the_core_tests(built: Path) -> None:
    tests = run(built, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/core")
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout.splitlines()[-1]


def test_a_build_older_than_its_sources_is_refused_until_rebuilt_or_removed(built: Path) -> None:
    source = built / "eventpatterns/core/timeutil.py"
    source.write_text(source.read_text() + "\n# edited after the build\n")
    refused = compiled(built)
    assert "StaleBuild" in refused and "core/timeutil.py" in refused
    assert "python -m eventpatterns.compiled" in refused
    cleaned = run(built, "-m", "eventpatterns.compiled", "--clean")
    assert cleaned.returncode == 0, cleaned.stderr[-3000:]
    assert compiled(built) == "False"
    assert not list(built.glob("*__mypyc*"))
    assert not (built / "eventpatterns/core/compiled.json").exists()
