"""Texts as PostgreSQL can hold them: its ``text`` has no NUL character, which SQLite's has.

An id, a name or a queue that a client sent with a NUL must still be stored and match itself,
as it does on SQLite: the adapter escapes every text parameter that needs it and unescapes
what it reads back. Texts without either special character, nearly all of them, pass as they
are.
"""

import re
from collections.abc import Sequence
from typing import Any

_NUL, _MARK = "\x00", "\uffff"


def _escape(text: str) -> str:
    return text.replace(_MARK, _MARK + _MARK).replace(_NUL, _MARK + "0")


_ESCAPE = re.compile("\uffff(.)", re.S)


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda found: _NUL if found.group(1) == "0" else found.group(1), text)


def _needs_escape(value: Any) -> bool:
    if isinstance(value, str):
        return _NUL in value or _MARK in value
    return isinstance(value, list) and any(map(_needs_escape, value))


def escaped(params: Sequence[Any]) -> Sequence[Any]:
    """``params`` with every text made storable: PostgreSQL's text holds no NUL character,
    which SQLite's does (an id or a name may hold one, and must still match itself). A NUL is
    written as U+FFFF ``0`` and U+FFFF as itself twice; :func:`unescaped` undoes it. Texts
    without either character, nearly all of them, pass as they are."""
    if not any(map(_needs_escape, params)):
        return params
    return [_escaped_value(value) for value in params]


def _escaped_value(value: Any) -> Any:
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, list):
        return [_escaped_value(item) for item in value]
    return value


def unescaped(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row read back, with the texts :func:`escaped` changed restored."""
    if not any(isinstance(value, str) and _MARK in value for value in row):
        return row
    return tuple(_unescape(value) if isinstance(value, str) else value for value in row)
