"""One request on a connection and its answer: the ASGI ``receive`` and ``send`` of the app.

:class:`~flowyard.http.protocol.HttpProtocol` parses the request and hands its body over as
it arrives; the exchange turns the app's messages into bytes on the wire, waiting while the
client does not read. See the protocol's module docstring for the behaviour as a whole.
"""

import asyncio
import http
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message

from flowyard import logs

if TYPE_CHECKING:
    from flowyard.http.protocol import HttpProtocol

log = logging.getLogger("flowyard.http.protocol")
access_log = logging.getLogger("flowyard.access")
"""One DEBUG line per answered request, when that level is on (it is checked per connection)."""

_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}
_STATUS_LINE = {
    code: f"HTTP/1.1 {code} {_PHRASES.get(code, '')}\r\n".encode() for code in range(100, 600)
}
_bind_request = logs.request_id.set
_bind_project = logs.project_id.set
_BAD_HEADER_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_ERROR_500 = b"Internal Server Error"


class Exchange:
    """One request and its answer: the ASGI ``receive`` and ``send`` of the app's call."""

    __slots__ = (
        "buffered",
        "chunked",
        "chunks",
        "complete",
        "connection",
        "disconnected",
        "expect_continue",
        "head",
        "keep_alive",
        "more_body",
        "read_all",
        "remaining",
        "request_id",
        "scope",
        "started",
        "status",
        "task",
        "waiter",
    )

    def __init__(
        self,
        connection: "HttpProtocol",
        scope: dict[str, Any],
        keep_alive: bool,
        expect: bool,
        request_id: str,
    ) -> None:
        self.connection = connection
        self.request_id = request_id  # sent back on the answer, bound for the app's logs
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.more_body = True  # the parser has not seen the body's end
        self.read_all = False  # the app was given the body's end
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.started = False
        self.status = 0
        self.complete = False
        self.head = b""  # status line and headers, sent with the first piece of the body
        self.chunked = False
        self.remaining = -1  # Content-Length still to send; -1: no Content-Length
        self.task: asyncio.Task[None] | None = None

    @property
    def wrote(self) -> bool:
        """Whether some of the answer is on the wire (then nothing else can be sent instead)."""
        return self.started and not self.head

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, app: ASGIApp) -> None:
        # The task's own context (a copy of the one it was started from, maybe a previous
        # request's): the id, and no project yet.
        _bind_request(self.request_id)
        _bind_project(None)
        since = time.perf_counter() if self.connection.access_log else 0.0
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException:
            log.exception("the app failed on %s %s", self.scope["method"], self.scope["path"])
            if not self.started:
                await self._send_500()
            else:
                self.connection.close()
        else:
            if not self.disconnected and not self.started:
                log.error("the app returned without answering %s", self.scope["path"])
                await self._send_500()
            elif not self.disconnected and not self.complete:
                log.error("the app returned before its answer ended: %s", self.scope["path"])
                self.connection.close()
        finally:
            self.connection.server_state.tasks.discard(self.task)
            self.task = None
            if since:
                self._log_access(since)

    def _log_access(self, since: float) -> None:
        scope = self.scope
        route = scope.get("route")
        template = getattr(route, "path", None) or "(no route)"  # never a raw path
        access_log.debug(
            "%s %s %d %.1f ms",
            scope["method"],
            template,
            self.status,
            (time.perf_counter() - since) * 1000,
            extra={"request_id": self.request_id},
        )

    async def receive(self) -> Message:
        connection = self.connection
        if self.expect_continue:
            self.expect_continue = False
            connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not (self.disconnected or self.complete):
            if self.chunks or (not self.more_body and not self.read_all):
                chunks = self.chunks
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self.chunks = []
                self.buffered = 0
                self.read_all = not self.more_body
                connection.resume_reading()
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            connection.resume_reading()
            self.waiter = connection.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        connection = self.connection
        if connection.writing_paused and not self.disconnected:
            await connection.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, not {kind}")
            self.status = status = message["status"]
            self.head = self._head(status, message.get("headers", ()))
            self.started = True
            self.expect_continue = False
            return
        if self.complete:
            raise RuntimeError(f"{kind} after the answer was complete")
        if kind != "http.response.body":
            raise RuntimeError(f"expected http.response.body, not {kind}")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            body = b""
            self.remaining = 0  # its Content-Length tells what a GET would get
        elif self.chunked:
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (
                b"" if more_body else b"0\r\n\r\n"
            )
        elif self.remaining >= 0:
            if len(body) > self.remaining:
                raise RuntimeError("the body is longer than its Content-Length")
            self.remaining -= len(body)
        if self.head:
            body = self.head + body
            self.head = b""
        if body:
            connection.write(body)
        if not more_body:
            if self.remaining > 0:
                raise RuntimeError("the body is shorter than its Content-Length")
            self.complete = True
            self.wake()
            connection.answered(self)

    def _head(self, status: int, headers: Any) -> bytes:
        parts = [_STATUS_LINE[status], b"x-request-id: %s\r\n" % self.request_id.encode()]
        for name, value in self.connection.server_state.default_headers:  # Date, Server
            parts += (name, b": ", value, b"\r\n")
        closes = self.chunked = False
        self.remaining = -1
        for name, value in headers:
            if _BAD_HEADER_VALUE.search(value):
                raise RuntimeError(f"invalid value for the header {name!r}")
            lowered = name.lower()
            if lowered == b"content-length":
                self.remaining = int(value)
            elif lowered == b"transfer-encoding" and value.lower() == b"chunked":
                self.chunked = True
            elif lowered == b"connection" and b"close" in [
                token.strip().lower() for token in value.split(b",")
            ]:
                self.keep_alive = False
                closes = True
            parts += (name, b": ", value, b"\r\n")
        if not self.keep_alive:
            if not closes:
                parts.append(b"connection: close\r\n")
        elif self.scope["http_version"] == "1.0":  # kept open only because it asked
            parts.append(b"connection: keep-alive\r\n")
        if (
            self.remaining < 0
            and not self.chunked
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    async def _send_500(self) -> None:
        self.keep_alive = False
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"%d" % len(_ERROR_500)),
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": _ERROR_500})
