"""uvicorn's HTTP protocol with each response written in one piece.

uvicorn writes a response's status line and headers when the app sends
``http.response.start`` and the body when it sends ``http.response.body``: two ``send()``
system calls, and on loopback two wake-ups of the client, per response. Starlette sends both
messages in the same step of the event loop, so a transport that holds writes until the end
of that step sends them as one.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _CorkedTransport:
    """A transport that gathers the writes of one event-loop step into one ``write``."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`_CorkedTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_CorkedTransport(transport, self.loop))  # type: ignore[arg-type]
