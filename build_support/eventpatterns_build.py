"""The package's build backend: setuptools', plus the compiled core on request.

    EVENTPATTERNS_COMPILE=1 pip wheel .      # a platform wheel, the core compiled with mypyc
    pip wheel .                              # a pure-Python wheel, as without this backend

Only a wheel built with `EVENTPATTERNS_COMPILE=1` needs mypy (whose mypyc
compiles) and a C compiler, so only that build asks for mypy, and for what mypy
type-checks the core against (`compile_requirements`); an editable install never
compiles (`python -m eventpatterns.compiled` builds in place).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 (the rest of the PEP 517 hooks, unchanged)

COMPILE = "EVENTPATTERNS_COMPILE"
MYPYC = "mypy>=1.10"
TYPE_CHECKED = ("pydantic", "PyYAML", "orjson", "mypy-extensions")
"""The project's dependencies that the compiled core imports. mypyc type-checks
the core before it compiles it, so a build environment of its own (pip's
isolated one, as in the Dockerfile) needs them, and the stubs of those without
types (`STUBS`)."""
STUBS = ("types-PyYAML",)
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def compile_requested() -> bool:
    return os.environ.get(COMPILE, "").strip().lower() in {"1", "true", "yes"}


def compile_requirements() -> list[str]:
    """mypy, and what it type-checks the core against, as pyproject.toml pins them."""
    with PYPROJECT.open("rb") as file:
        dependencies: list[str] = tomllib.load(file)["project"]["dependencies"]
    pinned = {requirement_name(dependency): dependency for dependency in dependencies}
    missing = [name for name in TYPE_CHECKED if requirement_name(name) not in pinned]
    if missing:
        raise RuntimeError(f"pyproject.toml's dependencies lack {missing}")
    return [MYPYC, *(pinned[requirement_name(name)] for name in TYPE_CHECKED), *STUBS]


def requirement_name(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    # setuptools' own hook runs setup.py, which cannot compile before mypy is there;
    # the project has no setup_requires for it to find.
    if compile_requested():
        return compile_requirements()
    return _setuptools.get_requires_for_build_wheel(config_settings)
