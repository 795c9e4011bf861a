"""Rendering a step's payload template: every ``{{ path }}`` placeholder replaced from a
context, once (:func:`render`) or through a template compiled once per blueprint
(:func:`compile_template`). Pure: no I/O and no clock."""

from collections.abc import Callable, Mapping
from typing import Any

from flowyard.workflows.templates import TemplateSyntaxError, encode_json, parse, resolve

Renderer = Callable[[Mapping[str, Any]], Any]
"""A template compiled once (:func:`compile_template`): the rendering for a context."""


def _text(value: Any) -> str:
    """An interpolated value: a string as it is, anything else as compact JSON."""
    return value if isinstance(value, str) else encode_json(value).decode()


def _render_string(text: str, context: Mapping[str, Any]) -> Any:
    parsed = parse(text)
    if parsed.errors:
        raise TemplateSyntaxError(parsed.errors[0])
    if parsed.whole is not None:
        return resolve(context, parsed.whole.lookup, parsed.whole.text)
    out: list[str] = []
    for segment in parsed.segments:
        if isinstance(segment, str):
            out.append(segment)
            continue
        value = resolve(context, segment.lookup, segment.text)
        out.append(_text(value))
    return "".join(out)


def render(template: Any, context: Mapping[str, Any]) -> Any:
    """The template with every placeholder replaced from ``context``.

    ``context`` holds decoded JSON under ``input``, ``steps`` (step id -> output),
    ``execution`` (``{"id", "blueprint_id"}``) and, in a catch branch, ``failure``. A string
    that is exactly one placeholder takes the value itself; otherwise values are interpolated
    (strings as-is, anything else as compact JSON). Parts without placeholders are returned
    as they are, not copied.

    Raises:
        TemplateError: a path does not resolve (missing key, index out of range, or indexing
            something that is not a container); ``path`` names it.
        TemplateSyntaxError: the template was never validated and holds a malformed one.
    """
    if isinstance(template, str):
        return _render_string(template, context) if "{{" in template else template
    if isinstance(template, dict):
        out: dict[Any, Any] | None = None
        for key, value in template.items():
            new = render(value, context)
            if new is not value:
                if out is None:
                    out = dict(template)
                out[key] = new
        return template if out is None else out
    if isinstance(template, list):
        items: list[Any] | None = None
        for index, value in enumerate(template):
            new = render(value, context)
            if new is not value:
                if items is None:
                    items = list(template)
                items[index] = new
        return template if items is None else items
    return template


def compile_template(template: Any) -> Renderer:
    """What :func:`render` does with ``template``, its strings parsed and its parts without
    placeholders found once: the renderer returns ``render(template, context)``, raising as
    it would.
    """
    try:
        compiled = _compile(template)
    except RecursionError:  # nested deeper than a walk can go: rendered as it is, each time
        return lambda context: render(template, context)
    if compiled is None:
        return lambda context: template
    return compiled


def _compile(template: Any) -> Renderer | None:
    """The renderer of a part of a template, or None for a part it leaves as it is."""
    if isinstance(template, str):
        return _compile_string(template) if "{{" in template else None
    if isinstance(template, dict):
        entries: list[tuple[Any, Renderer]] = []
        for key, value in template.items():  # a loop, not a comprehension: a frame per level
            compiled = _compile(value)
            if compiled is not None:
                entries.append((key, compiled))
        if not entries:
            return None

        def fill_dict(context: Mapping[str, Any]) -> dict[Any, Any]:
            out = dict(template)
            for key, render_value in entries:
                out[key] = render_value(context)
            return out

        return fill_dict
    if isinstance(template, list):
        slots: list[tuple[int, Renderer]] = []
        for index, value in enumerate(template):
            compiled = _compile(value)
            if compiled is not None:
                slots.append((index, compiled))
        if not slots:
            return None

        def fill_list(context: Mapping[str, Any]) -> list[Any]:
            out = list(template)
            for index, render_value in slots:
                out[index] = render_value(context)
            return out

        return fill_list
    return None


def _compile_string(text: str) -> Renderer:
    parsed = parse(text)
    if parsed.errors:
        error = parsed.errors[0]

        def malformed(context: Mapping[str, Any]) -> Any:
            raise TemplateSyntaxError(error)

        return malformed
    whole = parsed.whole
    if whole is not None:
        lookup, path = whole.lookup, whole.text
        return lambda context: resolve(context, lookup, path)
    segments = tuple(
        (segment, (), "") if isinstance(segment, str) else (None, segment.lookup, segment.text)
        for segment in parsed.segments
    )

    def interpolate(context: Mapping[str, Any]) -> str:
        out: list[str] = []
        for literal, lookup, path in segments:
            if literal is not None:
                out.append(literal)
                continue
            value = resolve(context, lookup, path)
            out.append(_text(value))
        return "".join(out)

    return interpolate
