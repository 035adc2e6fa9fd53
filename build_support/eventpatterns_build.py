"""The package's build backend: setuptools', plus the compiled core on request.

    EVENTPATTERNS_COMPILE=1 pip wheel .      # a platform wheel, the core compiled with mypyc
    pip wheel .                              # a pure-Python wheel, as without this backend

Only a wheel built with `EVENTPATTERNS_COMPILE=1` needs mypy (whose mypyc
compiles) and a C compiler, so only that build asks for mypy; an editable
install never compiles (`python -m eventpatterns.compiled` builds in place).
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 (the rest of the PEP 517 hooks, unchanged)

COMPILE = "EVENTPATTERNS_COMPILE"
MYPYC = "mypy>=1.10"


def compile_requested() -> bool:
    return os.environ.get(COMPILE, "").strip().lower() in {"1", "true", "yes"}


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    # setuptools' own hook runs setup.py, which cannot compile before mypy is there;
    # the project has no setup_requires for it to find.
    if compile_requested():
        return [MYPYC]
    return _setuptools.get_requires_for_build_wheel(config_settings)
