"""Compiles the hot modules of the service with mypyc (opt-in; bench/README.md, "mypyc").

The modules stay plain Python in the tree: ``pip install -e .`` and ``pip install .`` run them
as they are, with no compiler. Compiled, the same files become C extensions that Python imports
in their place (an extension module wins over a ``.py`` file of the same name). Two ways in:

- ``scripts/build-mypyc``: compiles in place, next to the sources in ``src/`` (the benchmarks
  and the test suite then run the compiled build); ``scripts/build-mypyc --clean`` goes back.
- ``FLOWYARD_MYPYC=1 pip install .``: the wheel carries the compiled modules (``hatch_build.py``
  calls ``compile_copy``).

Needs mypy (which ships mypyc), setuptools and a C compiler with Python's headers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MODULES = [
    # decide: the workflow state machine, and what it calls
    "flowyard/actors/execution.py",
    "flowyard/actors/execution_maps.py",
    "flowyard/workflows/templates.py",
    "flowyard/workflows/rendering.py",
    "flowyard/workflows/dag.py",
    "flowyard/workflows/maps.py",
    "flowyard/jobs/transitions.py",
    "flowyard/jobs/attempts.py",
    "flowyard/jobs/backoff.py",
    "flowyard/ids.py",
    "flowyard/clock.py",
    # the actors' hot path: live jobs, claims and acks, scheduling, queues, accounts, timers
    "flowyard/actors/live_jobs.py",
    "flowyard/actors/claims.py",
    "flowyard/actors/scheduling.py",
    "flowyard/actors/queues.py",
    "flowyard/actors/accounts.py",
    "flowyard/actors/timers.py",
    # HTTP: the connection and its refusals, the body, the exchange, the router, the in-flight gate
    "flowyard/http/protocol.py",
    "flowyard/http/refusals.py",
    "flowyard/http/body.py",
    "flowyard/http/exchange.py",
    "flowyard/http/job_exchange.py",
    "flowyard/http/router.py",
    "flowyard/http/inflight.py",
    # storage's statements and the codec, metrics
    "flowyard/storage/sqlite_statements.py",
    "flowyard/storage/codec.py",
    "flowyard/metrics.py",
]
"""The compiled modules, relative to ``src/``. Left out (bench/README.md, "mypyc"): modules
that are msgspec Structs (``workflows/state.py``, ``jobs/model.py``, ``spec.py``, ``events.py``,
``storage/intents.py``: their code is msgspec's C already, and compiled their annotations are
not resolved as msgspec expects); classes that plain Python subclasses (``storage/commits.py``,
the mixins of ``actors/workflow_commits.py`` and ``step_results.py``: an interpreted class cannot
inherit from a compiled one); and ``actors/workflows.py`` (multiple inheritance)."""

ENV = "FLOWYARD_MYPYC"
"""``FLOWYARD_MYPYC=1`` makes ``pip install .`` build the compiled wheel."""


def enabled() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def compile_in_place(src: Path) -> list[Path]:
    """Compile ``MODULES`` next to their sources in ``src``; the extension files written."""
    clean(src)
    run = subprocess.run(
        [sys.executable, "-m", "mypyc", *MODULES], cwd=src, capture_output=True, text=True
    )
    if run.returncode != 0:  # mypyc's type errors, or the C compiler's
        sys.stderr.write(run.stdout[-20000:] + run.stderr[-20000:])
        raise RuntimeError(f"mypyc failed (exit {run.returncode})")
    shutil.rmtree(src / "build", ignore_errors=True)  # mypyc's C sources and objects
    return built(src)


def compile_copy(src: Path, work: Path) -> dict[str, str]:
    """Compile a copy of ``src`` under ``work``: ``{extension file: its path in a wheel}``."""
    copy = work / "src"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so", "build"))
    pyproject = src.parent / "pyproject.toml"
    if pyproject.exists():  # mypy reads its settings from the project's file
        shutil.copy(pyproject, work / "pyproject.toml")
    return {str(path): path.relative_to(copy).as_posix() for path in compile_in_place(copy)}


def built(src: Path) -> list[Path]:
    """The compiled modules' extension files in ``src``, with mypyc's shared runtime library."""
    found = [path for module in MODULES for path in (src / module).parent.glob(_ext(module))]
    return found + sorted(src.glob("*__mypyc.*.so"))


def clean(src: Path) -> None:
    """Remove the compiled files from ``src``: the plain Python modules are imported again."""
    for path in built(src):
        path.unlink()


def _ext(module: str) -> str:
    return Path(module).stem + ".*.so"


def main(argv: list[str]) -> int:
    src = Path(__file__).resolve().parent.parent / "src"
    if argv == ["--clean"]:
        clean(src)
        print("mypyc: compiled modules removed; src/ runs as plain Python")
        return 0
    if argv:
        print("usage: scripts/build-mypyc [--clean]", file=sys.stderr)
        return 2
    clean(src)
    with tempfile.TemporaryDirectory(prefix="flowyard-mypyc-") as tmp:
        for extension, target in compile_copy(src, Path(tmp)).items():
            shutil.copy(extension, src / target)
    for compiled in built(src):
        print(f"mypyc: {compiled.relative_to(src.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
