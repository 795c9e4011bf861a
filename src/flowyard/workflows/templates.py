"""``{{ path }}`` placeholders in step payload templates: parsing, checking, and resolving a
path in a context (rendering a whole template is :mod:`flowyard.workflows.rendering`).

Pure: no I/O and no clock. Strings are parsed once (cached), so rendering is a walk.
"""

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, NamedTuple

import msgspec

ROOTS = ("input", "steps", "execution", "failure", "item", "item_index")
EXECUTION_FIELDS = ("id", "blueprint_id")
FAILURE_FIELDS = ("step_id", "code", "error", "job_id", "attempt", "item_index")
ITEM_ROOTS = ("item", "item_index")
"""Bound only in the templates of a for_each step, to the item a job runs."""

_KEY = re.compile(r"[A-Za-z0-9_-]+")
_PART = re.compile(r"\.([A-Za-z0-9_-]+)|\[([0-9]+)\]")
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
encode_json = msgspec.json.Encoder().encode


class TemplateSyntaxError(ValueError):
    """A malformed placeholder (or an unknown root) in a template."""

    def __init__(self, message: str, location: str = "$") -> None:
        super().__init__(f"{location}: {message}")
        self.message = message
        self.location = location


class TemplateError(Exception):
    """A placeholder path that does not resolve against the render context."""

    def __init__(self, path: str) -> None:
        super().__init__(f"placeholder {{{{{path}}}}} does not resolve")
        self.path = path


@dataclass(frozen=True)
class Placeholder:
    """One ``{{ path }}`` occurrence.

    ``parts`` is the whole path (``("steps", "charge", "output", "charge_id")``), ``text`` its
    normalised spelling (``steps.charge.output.charge_id``) and ``location`` the JSON path of
    the string holding it, relative to the template (``$.a.b[0]``).
    """

    root: str
    parts: tuple[str | int, ...]
    text: str
    location: str = "$"

    @property
    def step_id(self) -> str | None:
        """The step a ``steps.<id>.output`` placeholder reads, else None."""
        return str(self.parts[1]) if self.root == "steps" else None

    @property
    def lookup(self) -> tuple[str | int, ...]:
        """The keys to follow from the render context (``steps.X.output`` drops ``output``)."""
        if self.root == "steps":
            return self.parts[:2] + self.parts[3:]
        return self.parts


class _Parsed(NamedTuple):
    segments: tuple[str | Placeholder, ...]
    errors: tuple[str, ...]
    whole: Placeholder | None


def _path_text(parts: Iterable[str | int]) -> str:
    out: list[str] = []
    for part in parts:
        out.append(f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part))
    return "".join(out)


def _tokenize(raw: str) -> tuple[tuple[str | int, ...], str | None]:
    """Split a stripped path into keys and indexes, or explain why it is malformed."""
    head = _KEY.match(raw)
    if head is None:
        return (), f"malformed placeholder {raw!r}: invalid character {raw[0]!r}"
    parts: list[str | int] = [head.group()]
    pos = head.end()
    while pos < len(raw):
        match = _PART.match(raw, pos)
        if match is None:
            char = raw[pos]
            nxt = raw[pos + 1 : pos + 2]
            if char == ".":
                if nxt in ("", ".", "["):
                    return (), f"malformed placeholder {raw!r}: empty key"
                return (), f"malformed placeholder {raw!r}: invalid character {nxt!r}"
            if char == "[":
                return (), f"malformed placeholder {raw!r}: an index is [n] with n >= 0"
            return (), f"malformed placeholder {raw!r}: invalid character {char!r}"
        key, index = match.groups()
        parts.append(key if key is not None else int(index))
        pos = match.end()
    return tuple(parts), None


def _check_root(raw: str, parts: tuple[str | int, ...]) -> str | None:
    root = parts[0]
    if root == "input":
        return None
    if root == "steps":
        if len(parts) < 3 or not isinstance(parts[1], str) or parts[2] != "output":
            return f"malformed placeholder {raw!r}: expected steps.<step id>.output"
        return None
    if root == "execution":
        if len(parts) != 2 or parts[1] not in EXECUTION_FIELDS:
            return f"malformed placeholder {raw!r}: expected execution.id or execution.blueprint_id"
        return None
    if root == "failure":
        if len(parts) != 2 or parts[1] not in FAILURE_FIELDS:
            fields = ", ".join(f"failure.{name}" for name in FAILURE_FIELDS)
            return f"malformed placeholder {raw!r}: expected one of {fields}"
        return None
    if root == "item":
        return None
    if root == "item_index":
        if len(parts) != 1:
            return f"malformed placeholder {raw!r}: item_index is a number, with no path below"
        return None
    return (
        f"unknown placeholder root {root!r}"
        " (expected input, steps, execution, failure, item or item_index)"
    )


def _parse_path(inner: str) -> Placeholder | str:
    raw = inner.strip()
    if not raw:
        return "malformed placeholder: empty path"
    parts, error = _tokenize(raw)
    if error is None:
        error = _check_root(raw, parts)
    if error is not None:
        return error
    return Placeholder(root=str(parts[0]), parts=parts, text=_path_text(parts))


@lru_cache(maxsize=8192)
def parse(text: str) -> _Parsed:
    """Literal text and placeholders of one string; ``\\{{`` is a literal ``{{``."""
    segments: list[str | Placeholder] = []
    errors: list[str] = []
    literal: list[str] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            literal.append(text[pos:])
            break
        if start > 0 and text[start - 1] == "\\":
            literal += (text[pos : start - 1], "{{")
            pos = start + 2
            continue
        literal.append(text[pos:start])
        end = text.find("}}", start + 2)
        if end < 0:
            errors.append("malformed placeholder: '{{' without a closing '}}'")
            literal.append(text[start:])
            break
        parsed = _parse_path(text[start + 2 : end])
        if isinstance(parsed, str):
            errors.append(parsed)
            literal.append(text[start : end + 2])
        else:
            if any(literal):
                segments.append("".join(literal))
            literal = []
            segments.append(parsed)
        pos = end + 2
    if any(literal):
        segments.append("".join(literal))
    whole = segments[0] if len(segments) == 1 and not errors else None
    return _Parsed(
        tuple(segments), tuple(errors), whole if isinstance(whole, Placeholder) else None
    )


def _child(location: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{location}[{key}]"
    if _SIMPLE_KEY.fullmatch(key):
        return f"{location}.{key}"
    return f"{location}[{encode_json(key).decode()}]"


def _strings(template: Any, location: str) -> Iterator[tuple[str, str]]:
    """Every string that may hold a placeholder, with its location (keys are not templated)."""
    if isinstance(template, str):
        if "{{" in template:
            yield template, location
    elif isinstance(template, dict):
        for key, value in template.items():
            yield from _strings(value, _child(location, str(key)))
    elif isinstance(template, list):
        for index, value in enumerate(template):
            yield from _strings(value, _child(location, index))


def scan(template: Any, base_path: str = "$") -> tuple[list[Placeholder], list[dict[str, str]]]:
    """Every well-formed placeholder and a ``{path, message}`` problem per malformed one.

    Placeholder locations are relative to the template (``$...``); problem paths start with
    ``base_path`` (e.g. ``$.steps[0].payload_template``).
    """
    found: list[Placeholder] = []
    problems: list[dict[str, str]] = []
    for text, location in _strings(template, "$"):
        parsed = parse(text)
        found += (
            replace(segment, location=location)
            for segment in parsed.segments
            if isinstance(segment, Placeholder)
        )
        problems += ({"path": base_path + location[1:], "message": e} for e in parsed.errors)
    return found, problems


def find_placeholders(template: Any) -> list[Placeholder]:
    """Every placeholder in the template, in document order.

    Raises:
        TemplateSyntaxError: for the first malformed placeholder or unknown root.
    """
    found, problems = scan(template)
    if problems:
        raise TemplateSyntaxError(problems[0]["message"], problems[0]["path"])
    return found


def whole_placeholder(text: str) -> Placeholder | None:
    """The placeholder ``text`` consists of, if it is exactly one well-formed one."""
    return parse(text).whole


def template_problems(template: Any, base_path: str = "$") -> list[dict[str, str]]:
    """A ``{path, message}`` entry per malformed placeholder or unknown root."""
    return scan(template, base_path)[1]


def resolve(value: Any, keys: Iterable[str | int], path: str) -> Any:
    for key in keys:
        if isinstance(key, str):
            if not isinstance(value, dict) or key not in value:  # decoded JSON: plain dicts
                raise TemplateError(path)
        elif not isinstance(value, (list, tuple)) or key >= len(value):
            raise TemplateError(path)
        value = value[key]
    return value


def input_paths(templates: Iterable[Any]) -> list[Placeholder]:
    """The ``input.*`` placeholders of all templates, one per distinct path, first seen first.

    Raises:
        TemplateSyntaxError: for a malformed placeholder.
    """
    seen: dict[str, Placeholder] = {}
    for template in templates:
        for placeholder in find_placeholders(template):
            if placeholder.root == "input":
                seen.setdefault(placeholder.text, placeholder)
    return list(seen.values())


def missing_input_paths(placeholders: Iterable[Placeholder], input_data: Any) -> list[str]:
    """The distinct ``input.*`` paths (as text) that do not resolve in ``input_data``."""
    missing: dict[str, None] = {}
    for placeholder in placeholders:
        if placeholder.root != "input" or placeholder.text in missing:
            continue
        try:
            resolve(input_data, placeholder.parts[1:], placeholder.text)
        except TemplateError:
            missing[placeholder.text] = None
    return list(missing)
