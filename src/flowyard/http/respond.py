"""JSON responses encoded with msgspec (Structs, ``Raw`` payloads and enums as they are)."""

from typing import Any

import msgspec
from starlette.responses import Response

_encoder = msgspec.json.Encoder()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``data`` as an ``application/json`` response."""
    return Response(_encoder.encode(data), status, headers, media_type="application/json")
