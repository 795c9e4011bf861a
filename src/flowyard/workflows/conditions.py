"""A step's ``when``: a CEL expression, compiled once per blueprint and evaluated over the
step's variables when its dependencies are done.

CEL comes from ``common-expression-language`` (module ``cel``, chosen by ``bench.cel``: it
compares ints with doubles as CEL does, and is several times faster than ``cel-python``).
Evaluation is synchronous and does no I/O, so ``decide`` stays pure.
"""

import importlib.machinery
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any


def _load_cel() -> ModuleType:
    """The package's compiled core, ``cel.cel``, without ``cel/__init__.py``.

    That file also imports the package's command line (typer, rich, prompt_toolkit and with
    them asyncio: about 170 ms and a few MB); the engine needs only ``compile`` and
    ``Context``, which the extension module holds.
    """
    loaded = sys.modules.get("cel.cel")
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("cel")
    if package is None or not package.submodule_search_locations:
        raise ImportError("common-expression-language is not installed")
    folder = Path(next(iter(package.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"cel{suffix}"
        if path.is_file():
            loader = importlib.machinery.ExtensionFileLoader("cel.cel", str(path))
            spec = importlib.util.spec_from_file_location("cel.cel", path, loader=loader)
            assert spec is not None
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            sys.modules["cel.cel"] = module  # a later ``import cel`` finds it, not a second copy
            return module
    raise ImportError(f"no compiled cel module in {folder}")


cel = _load_cel()

MAX_WHEN_CHARS = 4096
"""The longest ``when`` a blueprint may hold (a condition, not a program)."""
MAX_ERROR_CHARS = 500
"""How much of the package's error text a ``condition_error`` keeps."""


class ConditionError(Exception):
    """The expression did not compile, failed to evaluate or did not give a boolean."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, eq=False)
class Condition:
    """One compiled ``when``."""

    source: str
    program: Any  # cel.Program (loaded by file name above, so untyped here)
    names: frozenset[str]  # the variables it reads: only those are converted for it

    def evaluate(self, variables: dict[str, Any]) -> bool:
        """The expression's value over ``variables`` (decoded JSON under each name).

        Raises:
            ConditionError: evaluation failed (a missing key, an index out of range, no such
                overload, ...) or the value is not a boolean.
        """
        try:
            context = cel.Context()
            for name, value in variables.items():
                if name in self.names:  # converting a large input costs ~5 µs per item
                    context.add_variable(name, value)
            value = self.program.execute(context)
        except BaseException as exc:  # KeyError, TypeError, RuntimeError, ... or a panic
            raise ConditionError(_error_text(_ours(exc))) from None
        if type(value) is not bool:
            shown = repr(value) if len(repr(value)) <= 80 else f"a {type(value).__name__}"
            raise ConditionError(f"when must give a boolean, it gave {shown}")
        return value


def compile_condition(source: str) -> Condition:
    """The compiled expression.

    Raises:
        ConditionError: the text is not CEL (the package's parse error, on one line), or it
            nests comprehensions (see :func:`nested_comprehension`).
    """
    try:
        program = cel.compile(source)
        names = frozenset(program.variables())
    except BaseException as exc:  # a ValueError with the parser's report
        raise ConditionError(f"not a CEL expression: {_error_text(_ours(exc))}") from None
    nested = nested_comprehension(source)
    if nested is not None:
        raise ConditionError(
            f"comprehensions may not nest ({nested} inside another): each level multiplies"
            " the work, and a condition is evaluated on the engine's own loop"
        )
    return Condition(source, program, names)


def _ours(exc: BaseException) -> BaseException:
    """``exc`` if it is the package's to report: an ``Exception``, or the ``PanicException``
    a Rust panic becomes (a ``BaseException``, so that it would otherwise take the execution's
    actor down). Anything else (``KeyboardInterrupt``, ``SystemExit``) is raised again."""
    if isinstance(exc, Exception) or type(exc).__name__ == "PanicException":
        return exc
    raise exc


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        text = f"no such key: {exc.args[0]}"
    else:
        text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:MAX_ERROR_CHARS]


# ------------------------------------------------------------------------- step references


@dataclass(frozen=True)
class _Token:
    kind: str  # "id", "str", "punct", "other"
    text: str


def step_references(source: str) -> list[str]:
    """The step ids ``source`` names as ``steps.X``, ``steps["X"]`` or ``steps['X']``.

    A scan over the text that skips string literals and comments, not a parser: it runs
    after the expression compiled. ``steps[<expression>]`` names no step (at run time only
    the step's ancestors are there to find).
    """
    tokens = list(_tokens(source))
    found: list[str] = []
    for n, token in enumerate(tokens):
        if token.kind != "id" or token.text != "steps":
            continue
        if n > 0 and tokens[n - 1].text == ".":
            continue  # a field named steps, as in input.steps
        after = [(t.kind, t.text) for t in tokens[n + 1 : n + 4]]
        selected = len(after) >= 2 and after[0][1] == "." and after[1][0] == "id"
        indexed = len(after) == 3 and after[0][1] == "[" and after[1][0] == "str"
        if selected or (indexed and after[2][1] == "]"):
            found.append(after[1][1])
    return list(dict.fromkeys(found))


COMPREHENSIONS = frozenset({"all", "exists", "exists_one", "map", "filter"})
"""CEL's macros that loop over a list or a map."""


def nested_comprehension(source: str) -> str | None:
    """The first comprehension macro called inside another one's arguments, if any.

    ``[..].all(a, [..].all(b, ...))`` costs the product of the list sizes, which 4096
    characters can make astronomical; one level over a list is linear in its size.
    """
    tokens = list(_tokens(source))
    opened: list[bool] = []  # per open parenthesis: is it a comprehension's?
    for n, token in enumerate(tokens):
        if token.kind != "punct":
            continue
        if token.text == "(":
            before = [(t.kind, t.text) for t in tokens[max(n - 2, 0) : n]]
            macro = len(before) == 2 and before[0] == ("punct", ".") and before[1][0] == "id"
            macro = macro and before[1][1] in COMPREHENSIONS
            if macro and any(opened):
                return f".{before[1][1]}()"
            opened.append(macro)
        elif token.text == ")" and opened:
            opened.pop()
    return None


def _tokens(source: str) -> Any:
    i, end = 0, len(source)
    while i < end:
        ch = source[i]
        if ch.isspace():
            i += 1
        elif source.startswith("//", i):
            newline = source.find("\n", i)
            i = end if newline < 0 else newline + 1
        elif ch in "\"'" or (ch in "rRbB" and _quote_after_prefix(source, i)):
            i, text = _string(source, i)
            yield _Token("str", text)
        elif ch.isalpha() or ch == "_":
            start = i
            while i < end and (source[i].isalnum() or source[i] == "_"):
                i += 1
            yield _Token("id", source[start:i])
        elif ch.isdigit():
            start = i
            while i < end and (source[i].isalnum() or source[i] == "_"):
                i += 1
            yield _Token("other", source[start:i])
        else:
            i += 1
            yield _Token("punct", ch)


def _quote_after_prefix(source: str, i: int) -> bool:
    """``r"..."``, ``b'...'``, ``rb"..."``: a string prefix, not an identifier."""
    j = i
    while j < len(source) and source[j] in "rRbB" and j - i < 2:
        j += 1
    return j < len(source) and source[j] in "\"'" and (i == 0 or not _ident(source[i - 1]))


def _ident(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _string(source: str, i: int) -> tuple[int, str]:
    """The end of the literal starting at ``i`` and its text between the quotes (escapes kept)."""
    raw = False
    while source[i] in "rRbB":
        raw = raw or source[i] in "rR"
        i += 1
    quote = source[i] * 3 if source.startswith(source[i] * 3, i) else source[i]
    i += len(quote)
    start = i
    while i < len(source):
        if source[i] == "\\" and not raw:
            i += 2
            continue
        if source.startswith(quote, i):
            return i + len(quote), source[start:i]
        i += 1
    return len(source), source[start:]
