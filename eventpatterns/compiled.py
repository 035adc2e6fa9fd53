"""The core compiled with mypyc: built in place, next to its sources, and never stale.

    python -m eventpatterns.compiled            # build (needs mypy and a C compiler)
    python -m eventpatterns.compiled --clean    # back to interpreted

A wheel built with `EVENTPATTERNS_COMPILE=1 pip wheel .` carries the same
build (setup.py), stamped the same way; this module then only checks it.

The build turns the core's hot modules into C extensions with mypyc (shipped
with mypy): ten patterns run ~1.5x as many events per second per worker
(benchmarks/README.md). Python imports an extension before the module's
source, so the build records a hash of each source it compiled, and importing
`eventpatterns.core` refuses a build whose sources have changed since: an
edited module would otherwise be shadowed by its old compiled self. Without a
build, everything runs interpreted, as before. This module imports no part of
the core, so it can rebuild or remove a stale build.

Left interpreted: `definitions.py` and `spec.py` (pydantic and YAML, loaded
once), `explain.py`, and the runtime around the core (`processor.py`: compiled,
it gained nothing measurable).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
CORE = PACKAGE / "core"
MODULES = (
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
)
STAMP = CORE / "compiled.json"
"""Module -> sha256 of the source each extension was built from, and mypyc's shared library."""
GROUP = "eventpatterns"
"""The name a compiled wheel gives mypyc's shared library (setup.py)."""
GROUP_LIBRARY = f"{GROUP}__mypyc{EXTENSION_SUFFIXES[0]}"


class StaleBuild(ImportError):
    """A compiled module's source has changed since it was built."""


def extensions() -> list[Path]:
    """The compiled modules of the core now on disk."""
    return [
        CORE / f"{module}{suffix}"
        for module in MODULES
        for suffix in EXTENSION_SUFFIXES
        if (CORE / f"{module}{suffix}").exists()
    ]


def is_compiled() -> bool:
    """Whether the core runs compiled (its evaluator imported from an extension)."""
    from .core import evaluator

    return not str(evaluator.__file__).endswith(".py")


def refuse_stale_build() -> None:
    """Raise `StaleBuild` when the core's extensions were built from other sources."""
    built = extensions()
    if not built:
        return
    stamp = _read_stamp()
    changed = [m for m in MODULES if stamp.get("sources", {}).get(m) != _source_hash(m)]
    if changed:
        names = ", ".join(f"core/{m}.py" for m in changed)
        raise StaleBuild(
            f"the compiled core in {CORE} was built from other sources than {names}: "
            "run `python -m eventpatterns.compiled` to rebuild it, or "
            "`python -m eventpatterns.compiled --clean` to run interpreted"
        )


def load_shared_libraries() -> None:
    """Import mypyc's shared library of a build in place, wherever Python runs from.

    The compiled modules import it as a top-level module, and the build in place
    puts it next to the package, in the checkout's root; an editable install maps
    the package alone, not that root, onto Python's path, so the `eventpatterns`
    command (or anything run outside the checkout's root) could not import the
    core. A wheel installs it into site-packages, where it is found as usual.
    """
    if not extensions():
        return
    for filename in _read_stamp().get("libraries", []):
        name = filename.split(".")[0]
        path = PACKAGE.parent / filename
        if name in sys.modules or not path.exists() or importlib.util.find_spec(name):
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def compile_core() -> list[Path]:
    """Build the extensions next to the sources; returns them. Needs mypy and a C compiler.

    mypyc runs on a copy of the package in a scratch directory: mypy takes the
    modules beside the package for the project's own, and in an installed
    package's directory (site-packages) it refuses the ones that shadow a library
    (`typing_extensions.py`). The extensions go next to their sources, mypyc's
    shared library next to the package, where the extensions import it from.
    """
    clean()
    root = PACKAGE.parent
    sources = [str(Path(PACKAGE.name) / "core" / f"{module}.py") for module in MODULES]
    with tempfile.TemporaryDirectory(prefix="eventpatterns-mypyc-") as scratch:
        work = Path(scratch)
        shutil.copytree(
            PACKAGE,
            work / PACKAGE.name,
            ignore=shutil.ignore_patterns("__pycache__", "*.so", STAMP.name),
        )
        build = subprocess.run(
            [sys.executable, "-m", "mypyc", *sources], cwd=work, capture_output=True, text=True
        )
        if build.returncode:
            raise RuntimeError(f"mypyc failed:\n{build.stdout[-4000:]}{build.stderr[-4000:]}")
        for built in (work / PACKAGE.name / "core").glob("*.so"):
            shutil.copy2(built, CORE / built.name)
        libraries = sorted(p.name for p in work.glob("*__mypyc*"))
        for name in libraries:
            shutil.copy2(work / name, root / name)
    STAMP.write_text(stamp_text(libraries))
    return extensions()


def stamp_text(libraries: list[str]) -> str:
    """The stamp of a build of the sources as they are now, with mypyc's shared libraries."""
    return json.dumps(
        {"sources": {m: _source_hash(m) for m in MODULES}, "libraries": libraries}, indent=1
    )


def clean() -> list[Path]:
    """Remove the extensions, the stamp and mypyc's shared library; returns what was removed."""
    removed = extensions()
    removed += [PACKAGE.parent / name for name in _read_stamp().get("libraries", [])]
    removed += [STAMP] if STAMP.exists() else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _read_stamp() -> dict[str, Any]:
    """The stamp of the build on disk; empty when there is none or it is unreadable."""
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _source_hash(module: str) -> str:
    return hashlib.sha256((CORE / f"{module}.py").read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eventpatterns.compiled",
        description="Compile the core with mypyc, in place (or remove the build).",
    )
    parser.add_argument("--clean", action="store_true", help="remove the build: run interpreted")
    args = parser.parse_args(argv)
    if args.clean:
        removed = clean()
        print(f"removed {len(removed)} file(s); the core runs interpreted")
        return 0
    built = compile_core()
    print(f"compiled {len(built)} modules of {CORE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
