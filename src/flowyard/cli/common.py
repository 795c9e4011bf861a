"""What the commands share: environment defaults and tables for people."""

import argparse
import os
import sys
from collections.abc import Sequence

from flowyard.settings import Settings

DEFAULTS = Settings()


def env(name: str, default: str) -> str:
    """The value of ``FLOWYARD_<NAME>``, or ``default``."""
    return os.environ.get(f"FLOWYARD_{name.upper()}", default)


def described(text: str, default: object, variable: str | None = None) -> str:
    """A help line that ends naming the option's default and the ``FLOWYARD_*`` variable it
    reads, if any: ``the SQLite file (default: ./flowyard.db; env FLOWYARD_DB)``."""
    where = f"; env FLOWYARD_{variable.upper()}" if variable else ""
    return f"{text} (default: {default}{where})".replace("%", "%%")  # argparse formats help


def print_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns under a header line; empty cells show as ``-``."""
    lines = [list(columns)]
    lines += [["-" if cell is None or cell == "" else str(cell) for cell in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    for line in lines:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def fail(message: str) -> None:
    """An error line on stderr, named for the program."""
    print(f"flowyard: {message}", file=sys.stderr)


def positive_int(text: str) -> int:
    """An option's whole number of at least 1 (argparse's ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
