"""What one HTTP connection may cost the server (DESIGN §10), and the answers that refuse more.

The limits are enforced by :mod:`flowyard.http.protocol` while the bytes arrive, before any
of them reach the app: a client must not be able to hold memory or the event loop with a
request that never ends, nor with an answer it never reads.
"""

import http

import orjson

MAX_TARGET = 8192
"""Bytes of request target (the path and query); longer is ``414``."""
MAX_HEADER_BYTES = 65_536
"""Bytes of header section (names, values and their separators); more is ``431``."""
MAX_HEADER_FIELDS = 100
"""Header fields in one request; more is ``431``."""
MAX_HEAD_BYTES = MAX_TARGET + MAX_HEADER_BYTES + 1024
"""Bytes of a request head still unparsed after a read: beyond, ``431`` without waiting
for the parser to find the fields. It holds the two limits above, the method, the version
and whitespace the parser drops, so it only stops heads the field count would refuse."""
READ_TIMEOUT = 10.0
"""Seconds for a request's head to arrive whole, and at most between two pieces of a body."""
LINGER_SECONDS = 2.0
"""Seconds a refused connection keeps reading (and dropping) what the client still sends,
so that its answer is not lost to a reset."""
WRITE_TIMEOUT = 30.0
"""Seconds an answer may wait for the client to read before the connection is dropped."""


def answer(status: int, code: str, message: str) -> bytes:
    """A whole JSON error answer that closes the connection, ``{code, message}``."""
    body = orjson.dumps({"code": code, "message": message})
    phrase = http.HTTPStatus(status).phrase
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


URI_TOO_LONG = answer(414, "uri_too_long", f"the request target is over {MAX_TARGET} bytes")
HEADERS_TOO_LARGE = answer(
    431,
    "header_fields_too_large",
    f"the header section is over {MAX_HEADER_BYTES} bytes or {MAX_HEADER_FIELDS} fields",
)
UNKNOWN_CODING = answer(400, "bad_request", "Transfer-Encoding may only be chunked")
ONE_HOST = answer(400, "bad_request", "a request needs one Host header (HTTP/1.0: at most one)")
INVALID = answer(400, "bad_request", "invalid HTTP request")


def request_timeout(seconds: float) -> bytes:
    """The ``408`` for a request that did not arrive within ``seconds``."""
    message = f"the request did not arrive within {seconds:g} seconds"
    return answer(408, "request_timeout", message)
