"""The CEL package choice: ``common-expression-language`` (module ``cel``) against
``cel-python`` (module ``celpy``).

For each package: how many of ``bench/cel_cases.py``'s expressions it answers as CEL does
(and which it gets wrong), the time to compile an expression, and the time of one compiled
evaluation over a step's variables (building the variables included, as ``when`` does).
Prints one JSON line. Runs in a few seconds; nothing is started and nothing goes on the network.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.cel_cases import ACTIVATION, CASES, ERROR

Evaluate = Callable[[dict[str, Any]], Any]

# Expressions both packages evaluate correctly, of the kind a `when` holds.
TIMED = {
    "compare": "input.amount > 100",
    "and_status": "steps.charge.status == 'completed' && steps.charge.output.ok",
    "in_list": "'vip' in input.tags && input.name.startsWith('a')",
    "exists": "input.tags.exists(t, t == 'eu') || has(input.missing)",
}


def cel_compile(expr: str) -> Evaluate:
    """``common-expression-language``: a compiled program, run over a fresh context."""
    import cel

    program = cel.compile(expr)

    def evaluate(variables: dict[str, Any]) -> Any:
        context = cel.Context()
        for name, value in variables.items():
            context.add_variable(name, value)
        return program.execute(context)

    return evaluate


def celpy_compile(expr: str) -> Evaluate:
    """``cel-python``: a compiled program, run over the variables converted to its types."""
    import celpy

    env = celpy.Environment()
    program = env.program(env.compile(expr))

    def evaluate(variables: dict[str, Any]) -> Any:
        result = program.evaluate(celpy.json_to_cel(variables))
        if isinstance(result, celpy.CELEvalError):
            raise result
        return _plain(result)

    return evaluate


def _plain(value: Any) -> Any:
    """A celpy value as plain Python (its types subclass int, float, str, list and dict)."""
    import celpy.celtypes as t

    if isinstance(value, t.BoolType):
        return bool(value)
    if isinstance(value, (t.IntType, t.UintType)):
        return int(value)
    if isinstance(value, t.DoubleType):
        return float(value)
    if isinstance(value, t.StringType):
        return str(value)
    if isinstance(value, t.ListType):
        return [_plain(v) for v in value]
    if isinstance(value, t.MapType):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


PACKAGES: dict[str, tuple[str, Callable[[str], Evaluate]]] = {
    "cel": ("common-expression-language", cel_compile),
    "celpy": ("cel-python", celpy_compile),
}
IMPORTS = {
    "cel": "import cel",
    "celpy": "import celpy",
    "flowyard_conditions": "import flowyard.workflows.conditions",  # cel's core alone
}


def import_ms(statement: str) -> dict[str, Any]:
    """Milliseconds to import in a fresh process (best of three), and whether asyncio came."""
    code = (
        "import sys, time\n"
        f"t = time.perf_counter()\n{statement}\n"
        "print((time.perf_counter() - t) * 1000, 'asyncio' in sys.modules)"
    )
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout.split()
        runs.append((float(out[0]), out[1] == "True"))
    return {"ms": round(min(r[0] for r in runs), 1), "imports_asyncio": runs[0][1]}


def answer(compile_: Callable[[str], Evaluate], expr: str, variables: dict[str, Any]) -> Any:
    """What the package answers: the value, or ``ERROR`` for any failure to compile or run."""
    try:
        return compile_(expr)(variables)
    except Exception:
        return ERROR


def same(got: Any, expected: Any) -> bool:
    """Equal, and a boolean only where a boolean is expected (``1 == True`` in Python)."""
    return type(got) is type(expected) and got == expected


def correctness(compile_: Callable[[str], Evaluate]) -> dict[str, Any]:
    wrong = []
    for case in CASES:
        got = answer(compile_, case.expr, case.activation())
        if not same(got, case.expected):
            wrong.append({"expr": case.expr, "got": repr(got)[:80], "cel": repr(case.expected)})
    return {"correct": len(CASES) - len(wrong), "of": len(CASES), "wrong": wrong}


def per_call_us(call: Callable[[], Any], seconds: float) -> float:
    """Median over five rounds of the mean time of one call, in microseconds."""
    rounds: list[float] = []
    for _ in range(5):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / 5
        while True:
            for _ in range(50):
                call()
            n += 50
            now = time.perf_counter()
            if now >= deadline:
                break
        rounds.append((now - start) / n * 1e6)
    return round(statistics.median(rounds), 2)


def speed(compile_: Callable[[str], Evaluate], seconds: float) -> dict[str, Any]:
    evaluate_us = {}
    compile_us = {}
    for name, expr in TIMED.items():
        program = compile_(expr)
        evaluate_us[name] = per_call_us(lambda p=program: p(ACTIVATION), seconds)
        compile_us[name] = per_call_us(lambda e=expr: compile_(e), seconds / 2)
    return {
        "evaluate_us": evaluate_us,
        "evaluate_us_mean": round(statistics.mean(evaluate_us.values()), 2),
        "compile_us_mean": round(statistics.mean(compile_us.values()), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per expression")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {
        "benchmark": "cel",
        "python": platform.python_version(),
        "cases": len(CASES),
    }
    for key, (dist, compile_) in PACKAGES.items():
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = {"package": dist, "installed": False}
            continue
        print(f"[bench] {dist} {version}", file=sys.stderr, flush=True)
        out[key] = {
            "package": dist,
            "version": version,
            **correctness(compile_),
            **speed(compile_, args.seconds),
        }
    out["import"] = {key: import_ms(statement) for key, statement in IMPORTS.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
