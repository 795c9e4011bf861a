"""JSON responses encoded with msgspec (Structs, ``Raw`` payloads and enums as they are)."""

from typing import Any

import msgspec
from starlette.responses import Response

_encoder = msgspec.json.Encoder()


class _JsonResponse(Response):
    """A JSON answer with its two headers made at once.

    Starlette's ``init_headers`` works out, for any body and media type, whether a length
    or a charset is due: a JSON body with a status of 200 or more always needs both as here.
    """

    def __init__(self, body: bytes, status: int, headers: dict[str, str] | None) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        self.raw_headers = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json"),
        ]
        if headers:
            self.raw_headers += [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
            ]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``data`` as an ``application/json`` response (``status`` 200 or more)."""
    return _JsonResponse(_encoder.encode(data), status, headers)
