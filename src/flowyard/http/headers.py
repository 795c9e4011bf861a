"""Reading a request header straight from the ASGI scope.

Starlette's ``request.headers.get`` builds a ``Headers`` mapping and raises and catches a
``KeyError`` for every header that is absent; the API reads four headers on every request, so
this plain scan of the scope's list is the one way request headers are read here.
"""

from starlette.types import Scope


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the header ``name`` (lowercase, as ASGI gives names), or None."""
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None
