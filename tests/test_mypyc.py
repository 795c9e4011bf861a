"""The mypyc build (packaging/mypyc_build.py): the hot modules compiled give the same results.

The modules are compiled from a copy of ``src/`` into a temporary directory; the tests of the
compiled modules (the decide, template and job transition tables, ids, clock, timers, metrics,
the router, accounts) and the pull, exchange and workflow tests that drive the real service
through them then run again in a child Python that imports the compiled modules. Skipped where
mypyc or a C compiler is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "packaging"))
import mypyc_build  # noqa: E402

COMPILED_TESTS = [
    *sorted(str(path) for path in (REPO / "tests").glob("test_decide*.py")),
    *(
        str(REPO / "tests" / name)
        for name in (
            "test_templates.py",
            "test_job_transitions.py",
            "test_backoff.py",
            "test_units.py",
            "test_request_ids.py",
            "test_http_protocol.py",
            "test_http_limits.py",
            "test_http_framing.py",
            "test_timers.py",
            "test_metrics.py",
            "test_router.py",
            "test_accounts_sync.py",
            "test_pull.py",
            "test_exchange.py",
            "test_workflows_e2e.py",
        )
    ),
]


def _missing() -> str | None:
    if importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed (pip install mypy)"
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return "no C compiler (apt-get install build-essential)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (apt-get install python3-dev)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def compiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``src/`` whose hot modules are compiled; its path."""
    if request.config.getoption("--store") != "sqlite":
        pytest.skip("the compiled modules use no store: run once, on the default one")
    work = tmp_path_factory.mktemp("mypyc")
    built = mypyc_build.compile_copy(REPO / "src", work)
    assert len(built) == len(mypyc_build.MODULES) + 1  # and mypyc's shared runtime library
    return work / "src"


def _env(src: Path) -> dict[str, str]:
    """The child's environment: the compiled ``src/`` first, no coverage of it, no cluster."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("COV_CORE_")}
    return env | {"PYTHONPATH": str(src), "FLOWYARD_TEST_STORE": "sqlite"}


def test_the_compiled_modules_are_the_ones_imported(compiled: Path) -> None:
    modules = [module.removesuffix(".py").replace("/", ".") for module in mypyc_build.MODULES]
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    print(importlib.import_module(name).__file__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *modules],
        env=_env(compiled),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert len(out) == len(modules)
    for path in out:
        assert path.startswith(str(compiled)) and path.endswith(".so"), path


def test_the_tests_pass_on_the_compiled_modules(compiled: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *COMPILED_TESTS],
        env=_env(compiled),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
