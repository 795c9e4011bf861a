"""How the remote commands show API objects to people: short cells, fields, JSON for scripts."""

import argparse
import json
import sys
from collections.abc import Collection, Iterable
from typing import Any

import msgspec

from flowyard.cli.common import print_table

CELL_WIDTH = 48
"""Longer values are cut in tables; ``--json`` always has them whole."""


OUTPUT_WIDTH = 200
"""A step's output on a single execution's view is cut here: enough to read, one line."""


def shorten(text: str, width: int | None = CELL_WIDTH) -> str:
    """``text`` on one line, cut to ``width`` characters with ``...`` at the end (None: whole)."""
    line = " ".join(text.split())
    return line if width is None or len(line) <= width else line[: width - 3] + "..."


def compact(value: Any) -> str:
    """A value as a table shows it: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def cell(value: Any, width: int | None = CELL_WIDTH) -> str | None:
    """A table cell: None stays None (``print_table`` shows ``-``), the rest shortened."""
    if value is None:
        return None
    return shorten(compact(value), width)


def error_text(error: Any, width: int | None = CELL_WIDTH) -> str | None:
    """A step's or execution's ``{code, message}`` error as ``code: message`` on one line,
    cut to ``width`` (None: whole)."""
    if error is None:
        return None
    return shorten(f"{error.code}: {error.message}", width)


def trigger_text(trigger: Any) -> str:
    """A job trigger as ``type:settings``, e.g. ``pull:emails`` or ``delayed:60``."""
    fields = msgspec.to_builtins(trigger)
    kind = fields.pop("type")
    return ":".join([kind, " ".join(str(value) for value in fields.values())]) if fields else kind


def json_value(text: str) -> Any:
    """An option's value parsed as JSON (argparse reports the error, exit status 2)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def json_object(text: str) -> dict[str, Any]:
    """An option's value that must be a JSON object."""
    value = json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"order\": 1}'")
    return value


def print_json(value: Any) -> None:
    """``value`` (Structs, lists, dicts) as indented JSON, exactly as the API encodes it."""
    print(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def print_fields(pairs: Iterable[tuple[str, Any]], uncut: Collection[str] = ()) -> None:
    """One ``name: value`` line per field, values aligned; absent values show as ``-``.
    Values are cut at 100 characters, except those of the fields named in ``uncut``."""
    shown = [(name, cell(value, None if name in uncut else 100)) for name, value in pairs]
    width = max(len(name) for name, _ in shown) + 1
    for name, value in shown:
        print(f"{name + ':':<{width}} {value if value not in (None, '') else '-'}")


def print_record(record: msgspec.Struct) -> None:
    """A small answer (e.g. of cancel) as a one-row table of all its fields."""
    names = record.__struct_fields__
    print_table(names, [[cell(getattr(record, name)) for name in names]])


def note(message: str) -> None:
    """A remark for the person at the terminal, on stderr so that stdout stays the data."""
    print(message, file=sys.stderr)
