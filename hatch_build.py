"""The wheel's build hook: with ``FLOWYARD_MYPYC=1``, ``pip install .`` compiles the hot modules
with mypyc (packaging/mypyc_build.py). Without it, and for ``pip install -e .``, it does nothing:
the wheel is the plain Python one."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

sys.path.insert(0, str(Path(__file__).resolve().parent / "packaging"))
import mypyc_build


class MypycBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def dependencies(self) -> list[str]:
        if not mypyc_build.enabled():
            return []
        # mypyc type-checks the modules against the libraries they import.
        return ["mypy>=1.11", "setuptools>=68", "types-croniter", *self.metadata.core.dependencies]

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable" or not mypyc_build.enabled():
            return
        self._work = tempfile.mkdtemp(prefix="flowyard-mypyc-")
        built = mypyc_build.compile_copy(Path(self.root) / "src", Path(self._work))
        build_data["force_include"].update(built)
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        work = getattr(self, "_work", None)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
