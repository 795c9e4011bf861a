"""The Python SDK: :class:`Client` (sync) and :class:`AsyncClient` over the whole API.

    from flowyard.client import Client

    with Client("http://127.0.0.1:8080", api_key="sk_live_...") as client:
        job = client.jobs.create({"trigger": {"type": "pull", "queue": "emails"},
                                  "payload": {"to": "ada@example.com"}})
        for failed in client.jobs.iter(status="failed"):
            client.jobs.retry(failed.id)
        hook = client.webhooks.create("https://example.com/hooks", ["jobs.*"])

``base_url``, ``api_key`` and ``timeout`` default to ``FLOWYARD_URL``, ``FLOWYARD_API_KEY`` and
``FLOWYARD_TIMEOUT``. Request bodies are the msgspec types the server decodes (``JobSpec``,
``BlueprintSpec`` ...) or plain dicts; answers are the Structs of ``flowyard.client.models``.
An error answer raises a :class:`FlowyardAPIError` subclass; 429, 503 and failed connections
are retried first (see :class:`RetryPolicy`), and a server that stays out of reach raises
:class:`ConnectionFailed`. Both clients share one description of every method (``jobs.py``,
``workflows.py``, ``webhooks.py``, ``accounts.py``): a method returns its value on
:class:`Client` and an awaitable of it on :class:`AsyncClient`.
"""

import httpx

from flowyard.client.accounts import Admin, Identity, Tokens
from flowyard.client.core import AsyncRunner, Connection, RetryPolicy, SyncRunner
from flowyard.client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    FlowyardAPIError,
    Forbidden,
    InsufficientTokens,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    UnsupportedMediaType,
    WaitTimeout,
)
from flowyard.client.jobs import Jobs, Queues, job_ack, job_spec
from flowyard.client.models import UNSET, Page, WhoAmI
from flowyard.client.namespace import Async, Sync
from flowyard.client.webhooks import Webhooks
from flowyard.client.workflows import Workflows

__all__ = [
    "UNSET",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "FlowyardAPIError",
    "Forbidden",
    "InsufficientTokens",
    "InternalError",
    "MethodNotAllowed",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "RateLimited",
    "RetryPolicy",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "UnsupportedMediaType",
    "WaitTimeout",
    "job_ack",
    "job_spec",
]


_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class Client:
    """The API over a blocking ``httpx.Client``; use it as a context manager or ``close()``.

    Args:
        base_url: e.g. ``http://127.0.0.1:8080`` (default ``FLOWYARD_URL``, else that).
        api_key: the project's key (default ``FLOWYARD_API_KEY``).
        timeout: seconds per request (default ``FLOWYARD_TIMEOUT``, else 30); a long-poll
            claim adds its ``wait_seconds`` to it.
        retry: when to retry 429, 503 and failed connections (default :class:`RetryPolicy`).
        transport: an ``httpx`` transport (tests: ``httpx.MockTransport``, WSGI ...).
        limits: ``httpx`` connection pool limits.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        self.connection = Connection.resolve(base_url, api_key, timeout, retry)
        self.http = httpx.Client(
            base_url=self.connection.base_url,
            headers=self.connection.headers(),
            timeout=self.connection.timeout,
            transport=transport,
            limits=limits or _LIMITS,
        )
        runner = SyncRunner(self.http, self.connection)
        self.jobs: Jobs[Sync] = Jobs(runner)
        self.queues: Queues[Sync] = Queues(runner)
        self.workflows: Workflows[Sync] = Workflows(runner)
        self.webhooks: Webhooks[Sync] = Webhooks(runner)
        self.tokens: Tokens[Sync] = Tokens(runner)
        self.admin: Admin[Sync] = Admin(runner)
        self._identity: Identity[Sync] = Identity(runner)

    @property
    def base_url(self) -> str:
        return self.connection.base_url

    def whoami(self) -> WhoAmI:
        """The key this client sends and its project: its name, scopes and admin flag."""
        return self._identity.whoami()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """The API over an ``httpx.AsyncClient``: every method returns an awaitable, every
    ``iter*`` an async iterator. Use it with ``async with`` or ``await client.aclose()``.

    Arguments as for :class:`Client` (``transport`` is an ``httpx.AsyncBaseTransport``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        self.connection = Connection.resolve(base_url, api_key, timeout, retry)
        self.http = httpx.AsyncClient(
            base_url=self.connection.base_url,
            headers=self.connection.headers(),
            timeout=self.connection.timeout,
            transport=transport,
            limits=limits or _LIMITS,
        )
        runner = AsyncRunner(self.http, self.connection)
        self.jobs: Jobs[Async] = Jobs(runner)
        self.queues: Queues[Async] = Queues(runner)
        self.workflows: Workflows[Async] = Workflows(runner)
        self.webhooks: Webhooks[Async] = Webhooks(runner)
        self.tokens: Tokens[Async] = Tokens(runner)
        self.admin: Admin[Async] = Admin(runner)
        self._identity: Identity[Async] = Identity(runner)

    @property
    def base_url(self) -> str:
        return self.connection.base_url

    async def whoami(self) -> WhoAmI:
        """The key this client sends and its project: its name, scopes and admin flag."""
        return await self._identity.whoami()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
