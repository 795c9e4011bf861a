"""Reading request bodies and query parameters: size, media type, JSON, types and ranges."""

import re
from typing import Any, TypeVar, cast

import msgspec
from starlette.requests import Request
from starlette.types import Receive

from flowyard.errors import Invalid, PayloadTooLarge, UnsupportedMediaType, invalid_field
from flowyard.http.unknown_fields import unknown_fields

T = TypeVar("T")

MAX_BODY_BYTES = 1024 * 1024
MAX_DETAILS = 100
"""At most this many ``details`` for one body: a mebibyte of unknown fields answers 100."""
_PATH = re.compile(r"^(?P<message>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_INTEGER = re.compile(r"^-?[0-9]{1,18}\Z")
_UNKNOWN = "Object contains unknown field"
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


async def read_body(request: Request) -> bytes:
    """The raw body, refusing more than 1 MiB (413) and non-JSON media types (415)."""
    length = content_type = None
    for name, value in request.scope["headers"]:  # two headers in one scan, as header() reads one
        if name == b"content-length" and length is None:
            length = value
        elif name == b"content-type" and content_type is None:
            content_type = value
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    body = await receive_body(request.receive)
    if body and content_type is not None and content_type != b"application/json":
        media = content_type.decode("latin-1").split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType(f"send the body as application/json, not {media}")
    return body


async def receive_body(receive: Receive) -> bytes:
    """A body's ASGI messages read whole, refusing more than 1 MiB (413).

    Straight from ``receive``: Starlette's ``request.stream()`` is an async generator around
    the same loop, a layer every request with a body paid for.
    """
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # Nobody will read the answer; it only has to be an ordinary one, not a logged 500.
            raise Invalid("the client left before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode(body: bytes, kind: type[T]) -> T:
    """Decode JSON into ``kind``; a malformed body or a bad field is a 400 naming the field.

    msgspec stops at the first problem; every unknown field is named (``details`` lists each),
    then the first other problem, if that is what stopped msgspec.
    """
    decoder = _DECODERS.get(kind)
    if decoder is None:  # one per body type, built on its first use
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind, strict=True)
    try:
        return cast(T, decoder.decode(body))
    except msgspec.ValidationError as exc:
        match = _PATH.match(str(exc))
        message, path = (match["message"], match["path"]) if match else (str(exc), "$")
        missing = _MISSING.match(message)
        if missing:  # name the missing field itself, not the object that lacks it
            path = f"{path}.{missing['field']}"
        problems = unknown_fields(body, kind)
        if not message.startswith(_UNKNOWN) or not problems:
            problems.append({"path": path, "message": message})
        first = problems[0]
        more = _more(len(problems) - 1)
        # The message counts them all; the details stop where no reader would go on.
        details = problems[:MAX_DETAILS]
        raise Invalid(f"{first['path']}: {first['message']}{more}", details) from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise Invalid("the body is nested too deeply") from None


def _more(count: int) -> str:
    if count == 0:
        return ""
    return f" (and {count} more problem{'s' if count > 1 else ''})"


class NoFields(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of an action that takes no fields: none at all, or ``{}``."""


async def read_json(request: Request, kind: type[T], *, optional: bool = False) -> T:
    """The body decoded as ``kind``; with ``optional``, an empty body means ``{}``."""
    body = await read_body(request)
    if not body.strip():
        if not optional:
            raise Invalid("a JSON body is required")
        body = b"{}"
    return decode(body, kind)


async def read_no_fields(request: Request) -> None:
    """Refuse a body with any field (400) on a route that takes none, or a non-JSON one."""
    await read_json(request, NoFields, optional=True)


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # Plain ASCII digits only, not int()'s " 5", "+5", "1_0" or fullwidth digits.
    if not _INTEGER.match(raw) or not low <= int(raw) <= high:
        raise invalid_field(f"$.{name}", f"must be an integer from {low} to {high}")
    return int(raw)


def query_choice(request: Request, name: str, choices: frozenset[str]) -> str | None:
    """A query parameter restricted to ``choices`` (None when absent)."""
    value = request.query_params.get(name)
    if value is not None and value not in choices:
        raise invalid_field(f"$.{name}", f"must be one of {', '.join(sorted(choices))}")
    return value


def query_str(request: Request, name: str, max_length: int = 256) -> str | None:
    """A free-text query parameter of bounded length."""
    value = request.query_params.get(name)
    if value is not None and not 1 <= len(value) <= max_length:
        raise invalid_field(f"$.{name}", f"must be 1 to {max_length} characters")
    return value
