"""Every unknown field of a request body, by walking its JSON against the body's msgspec type.

Request Structs forbid unknown fields, so msgspec refuses such a body, but it stops at the
first one. A client fixing a blueprint should see every misspelt or unsupported field at once,
so after a refusal the raw JSON is walked against the type's ``msgspec.inspect`` description
to name them all. Valid bodies never get here: they cost nothing extra.
"""

import functools
import re
from typing import Any

import msgspec
import msgspec.inspect as mi

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_ITEMS = (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)


def unknown_fields(body: bytes, kind: Any) -> list[dict[str, str]]:
    """One ``{path, message}`` per field of ``body`` that ``kind`` does not declare, in the
    order they appear; empty when the body is not JSON or has none."""
    try:
        value = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return []
    found: list[dict[str, str]] = []
    _walk(value, _info(kind), "$", found)  # as deep as the type only: free JSON is not walked
    return found


@functools.cache
def _info(kind: Any) -> mi.Type:
    """The type description, built once per request type."""
    return mi.type_info(kind)


def _walk(value: Any, info: mi.Type, path: str, found: list[dict[str, str]]) -> None:
    while isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):
        info = _member(value, info)
    if isinstance(value, dict):
        if isinstance(info, mi.StructType):
            _struct(value, info, path, found)
        elif isinstance(info, mi.DictType):
            for key, item in value.items():
                _walk(item, info.value_type, _child(path, key), found)
    elif isinstance(value, list):
        if isinstance(info, _ITEMS):
            for index, item in enumerate(value):
                _walk(item, info.item_type, f"{path}[{index}]", found)
        elif isinstance(info, mi.TupleType):
            for index, (item, item_type) in enumerate(zip(value, info.item_types, strict=False)):
                _walk(item, item_type, f"{path}[{index}]", found)


def _struct(
    value: dict[str, Any], info: mi.StructType, path: str, found: list[dict[str, str]]
) -> None:
    fields = {field.encode_name: field.type for field in info.fields}
    for key, item in value.items():
        if key in fields:
            _walk(item, fields[key], _child(path, key), found)
        elif key != info.tag_field and info.forbid_unknown_fields:
            found.append({"path": _child(path, key), "message": "unknown field"})


def _member(value: Any, union: mi.UnionType) -> mi.Type:
    """The member of a union that a JSON value decodes as (AnyType when none walks further)."""
    if isinstance(value, dict):
        structs = [t for t in union.types if isinstance(t, mi.StructType)]
        tagged = [t for t in structs if t.tag_field is not None]
        if tagged:
            tag = value.get(tagged[0].tag_field)
            return next((t for t in tagged if t.tag == tag), mi.AnyType())
        if len(structs) == 1:
            return structs[0]
        return next((t for t in union.types if isinstance(t, mi.DictType)), mi.AnyType())
    if isinstance(value, list):
        return next(
            (t for t in union.types if isinstance(t, (*_ITEMS, mi.TupleType))), mi.AnyType()
        )
    return mi.AnyType()


def _child(path: str, key: str) -> str:
    """``$.name``, or ``$["odd name"]`` for a key that is not a plain name."""
    if _NAME.match(key):
        return f"{path}.{key}"
    return f"{path}[{msgspec.json.encode(key).decode()}]"
