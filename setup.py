"""The compiled core's extensions, for a wheel built with EVENTPATTERNS_COMPILE=1.

Everything else about the package is in pyproject.toml. mypyc compiles the
modules `eventpatterns/compiled.py` names, into one group whose shared library
is `eventpatterns__mypyc`; the wheel also carries the stamp (`core/compiled.json`)
that lets `eventpatterns.compiled` check the build against its sources.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "build_support"))
from eventpatterns_build import compile_requested  # noqa: E402


def load_compiled_module() -> ModuleType:
    """`eventpatterns/compiled.py` alone (it imports only the standard library), not the package."""
    spec = importlib.util.spec_from_file_location(
        "_eventpatterns_compiled", HERE / "eventpatterns/compiled.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compiled = load_compiled_module()


class BuildPyWithStamp(build_py):
    """Also writes the stamp of the compiled core into the build."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "eventpatterns" / "core" / compiled.STAMP.name
        target.write_text(compiled.stamp_text([compiled.GROUP_LIBRARY]))


def compiled_core() -> list[Extension]:
    from mypyc.build import mypycify

    os.chdir(HERE)  # mypycify takes paths relative to the project
    return mypycify(
        [f"eventpatterns/core/{module}.py" for module in compiled.MODULES],
        group_name=compiled.GROUP,
    )


if compile_requested():
    setup(ext_modules=compiled_core(), cmdclass={"build_py": BuildPyWithStamp})
else:
    setup()
