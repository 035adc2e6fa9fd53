"""The core compiled with mypyc (eventpatterns/compiled.py), built from a copy of the package.

The build must give the core's behaviour exactly: the core's own tests run
against it. A build older than its sources must never be imported. A wheel
built with EVENTPATTERNS_COMPILE=1 (setup.py) carries the same build.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from eventpatterns.compiled import GROUP_LIBRARY, MODULES

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns("__pycache__", "*.so", "compiled.json")


def run(root: Path, *args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Python in `root`, importing `eventpatterns` from there (or from `path`)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(path or root)},
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


def compiled(root: Path, path: Path | None = None) -> str:
    check = run(
        root, "-c", "from eventpatterns import compiled; print(compiled.is_compiled())", path=path
    )
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


def test_the_build_is_imported_where_only_the_package_is_on_the_path(
    built: Path, tmp_path: Path
) -> None:
    """As an editable install maps it: the package, not the checkout's root beside it,
    where the build puts mypyc's shared library (so the `eventpatterns` command, run
    from anywhere, imports the core)."""
    path = tmp_path / "path"
    path.mkdir()
    (path / "eventpatterns").symlink_to(built / "eventpatterns")
    assert compiled(tmp_path, path=path) == "True"


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


PROJECT_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


def build_wheel(workdir: Path, *, compile_core: bool) -> Path:
    """`pip wheel` of a copy of the project (none of the checkout's own builds in it).

    The compiled one as the Dockerfile builds it: by a Python with none of the
    project's dependencies, in pip's isolated build environment, which has only
    what the build backend asks for (mypy type-checks the core against the
    packages it imports before mypyc compiles it). The pure one with the test
    run's own setuptools, for speed.
    """
    source = workdir / "source"
    for tree in ("eventpatterns", "build_support"):
        shutil.copytree(REPO / tree, source / tree, ignore=SKIP)
    for name in PROJECT_FILES:
        shutil.copy(REPO / name, source / name)
    if compile_core:
        pip_wheel = [str(bare_python(workdir)), "-m", "pip", "wheel", "--no-deps"]
    else:
        pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*pip_wheel, "--wheel-dir", str(workdir / "dist"), str(source)],
        env={**os.environ, "EVENTPATTERNS_COMPILE": "1" if compile_core else "0"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    [wheel] = (workdir / "dist").glob("*.whl")
    return wheel


def bare_python(workdir: Path) -> Path:
    """A venv's Python: pip and nothing else, not even the test run's site-packages."""
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    probe = subprocess.run([python, "-c", "import pydantic"], capture_output=True, timeout=60)
    assert probe.returncode != 0, "the venv sees the test run's packages"
    return python


def unpacked(wheel: Path) -> Path:
    """The wheel's files, as an installer lays them out in site-packages."""
    target = wheel.parent / "installed"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


@pytest.fixture(scope="module")
def compiled_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("compiled-wheel"), compile_core=True)


@pytest.fixture(scope="module")
def pure_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("pure-wheel"), compile_core=False)


def replay(root: Path, example: str) -> str:
    done = run(
        root,
        "-m",
        "eventpatterns.cli",
        "replay",
        str(REPO / "examples" / f"{example}.yaml"),
        str(REPO / "examples" / f"{example}.jsonl"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_wheel_built_with_eventpatterns_compile_holds_the_compiled_core(
    compiled_wheel: Path,
) -> None:
    python = sysconfig.get_config_var("py_version_nodot")
    assert compiled_wheel.name.startswith(f"eventpatterns-0.1.0-cp{python}-cp{python}-")
    assert not compiled_wheel.name.endswith("-any.whl")
    names = set(zipfile.ZipFile(compiled_wheel).namelist())
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    assert {f"eventpatterns/core/{module}{suffix}" for module in MODULES} <= names
    assert {GROUP_LIBRARY, "eventpatterns/core/compiled.json"} <= names
    assert "eventpatterns/core/evaluator.py" in names  # the sources the stamp checks


def test_a_wheel_built_without_it_is_pure_python(pure_wheel: Path) -> None:
    assert pure_wheel.name == "eventpatterns-0.1.0-py3-none-any.whl"
    names = zipfile.ZipFile(pure_wheel).namelist()
    assert "eventpatterns/core/evaluator.py" in names
    assert not [name for name in names if name.endswith(".so") or "compiled.json" in name]


def test_the_compiled_wheel_installed_replays_as_the_pure_one(
    compiled_wheel: Path, pure_wheel: Path
) -> None:
    compiled_site, pure_site = unpacked(compiled_wheel), unpacked(pure_wheel)
    assert compiled(compiled_site) == "True"
    assert compiled(pure_site) == "False"
    for example in ("clickstream", "all_kinds"):
        actions = replay(compiled_site, example)
        assert actions.count("\n") >= 6
        assert actions == replay(pure_site, example)


def test_a_compiled_build_asks_for_every_package_the_core_imports() -> None:
    """mypyc type-checks the core, and every module it imports, before compiling:
    an isolated build that lacks one of them fails (a Python without the
    project's dependencies, as the Dockerfile's, sees it)."""
    sys.path.insert(0, str(REPO / "build_support"))
    try:
        import eventpatterns_build
    finally:
        sys.path.remove(str(REPO / "build_support"))
    name = eventpatterns_build.requirement_name
    asked = {name(requirement) for requirement in eventpatterns_build.compile_requirements()}
    imported = third_party_imports(REPO / "eventpatterns" / "core")
    distributions = importlib.metadata.packages_distributions()
    needed = {name(distributions[module][0]) for module in imported}
    assert {"pydantic", "pyyaml", "orjson", "mypy-extensions"} <= needed  # the scan works
    assert needed <= asked
    assert {"mypy", "types-pyyaml"} <= asked


def third_party_imports(package: Path) -> set[str]:
    """Top-level names the package's modules import, standard library and own left out."""
    names = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names} - {"eventpatterns"}
