"""The CEL expressions both candidate packages are measured on, with the answer CEL gives.

Shared by ``python -m bench.cel`` (how many each package gets right) and
``tests/test_conditions.py`` (where they agree, and that ours is right where they differ).
``ERROR`` means CEL evaluation ends in an error (a ``when`` with it fails its step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR = "<error>"

ACTIVATION: dict[str, Any] = {
    "input": {
        "amount": 150,
        "price": 9.5,
        "tags": ["vip", "eu"],
        "none": None,
        "name": "abc",
        "flag": True,
        "neg": -3,
        "meta": {"k": 1, "nested": {"list": [1, {"z": True}]}},
    },
    "steps": {
        "charge": {"output": {"ok": True, "amount": 42.5}, "status": "completed"},
        "fraud-check": {"output": {"score": 7}, "status": "completed"},
        "notify": {"output": None, "status": "skipped"},
    },
    "execution": {"id": "ex_1", "blueprint_id": "bp_1"},
}


@dataclass(frozen=True)
class Case:
    """One expression, its CEL answer and, when the packages differ, why."""

    expr: str
    expected: Any
    differs: str = ""  # the documented difference, when the packages disagree
    input: dict[str, Any] | None = field(default=None)  # replaces ACTIVATION["input"]

    def activation(self) -> dict[str, Any]:
        """The variables this case is evaluated over."""
        if self.input is None:
            return ACTIVATION
        return {**ACTIVATION, "input": self.input}


CASES: tuple[Case, ...] = (
    # numbers: JSON integers arrive as int, and CEL compares int with double by value
    Case("input.amount > 100", True),
    Case("input.amount > 100.0", True, "int compared with double"),
    Case("input.amount == 150.0", True, "int compared with double"),
    Case("1 == 1.0", True, "int compared with double"),
    Case("dyn(input.amount) > 1.5", True, "int compared with double"),
    Case("steps.charge.output.amount > 40", True),
    Case("input.price < 10", True),
    Case("input.neg < 0", True),
    Case("input.amount % 7", 3),
    Case("int(input.price) == 9", True),
    Case("double(input.amount) == 150.0", True),
    Case("string(input.amount) == '150'", True),
    Case("type(input.price) == double", True),
    Case("1 / 0", ERROR),
    Case("9223372036854775807 + 1", ERROR),
    Case("input.big > 0", True, "an integer past int64 in the JSON", {"big": 2**63}),
    # equality across types is false, not an error (booleans are not numbers)
    Case("true == 1", False, "bool compared with int"),
    # has() and presence
    Case("has(input.missing)", False),
    Case("has(input.meta.k)", True),
    Case("has(steps.notify)", True),
    Case("has(steps.unknown)", False),
    # in on lists and maps
    Case("'vip' in input.tags", True),
    Case("'us' in input.tags", False),
    Case("'k' in input.meta", True),
    Case("'fraud-check' in steps", True),
    # strings
    Case("input.name.startsWith('ab')", True),
    Case("input.name.endsWith('c')", True),
    Case("input.name.contains('b')", True),
    Case("input.name.matches('^a.c$')", True),
    Case("size(input.name) == 3", True),
    Case("'a' < 'b'", True),
    Case("input.name + 1", ERROR),
    # null
    Case("input.none == null", True),
    Case("steps.notify.output == null", True),
    Case("input.name == null", False),
    # nested maps and lists from JSON
    Case("input.meta.nested.list[1].z", True),
    Case("input.meta['k'] == 1", True),
    Case("steps['fraud-check'].output.score < 10", True),
    Case("steps.charge.status == 'completed'", True),
    Case("execution.blueprint_id == 'bp_1'", True),
    Case("input.tags.exists(t, t == 'eu')", True),
    Case("input.tags.all(t, size(t) == 2)", False),
    Case("input.tags.filter(t, t != 'vip')", ["eu"]),
    Case("size(input.meta) == 2", True),
    # errors: missing keys, bad indexes, unknown names
    Case("input.missing", ERROR),
    Case("input.meta.missing == null", ERROR),
    Case("input.tags[5]", ERROR),
    Case("steps.unknown.output", ERROR),
    Case("nothing_named_so", ERROR),
    Case("input.flag && input.missing", ERROR),
    Case("input.missing || true", True),
    Case("input.missing && false", False),
    # results that are not booleans (a when with one fails its step)
    Case("input.name", "abc"),
    Case("input.tags", ["vip", "eu"]),
    Case("input.none", None),
    Case("input.amount > 100 ? 'big' : 'small'", "big"),
)
