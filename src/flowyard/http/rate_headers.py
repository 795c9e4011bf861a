"""ASGI middleware that puts a rate-limited project's ``X-RateLimit-*`` headers on every
response to it, whatever the handler or the error handler answered."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RateLimitHeaders:
    """Adds ``scope["state"]["rate_headers"]`` (set by ``caller``) to the response start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = scope.get("state", {}).get("rate_headers")
                if headers:
                    message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
