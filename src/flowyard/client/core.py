"""The transport-agnostic core of the client: calls described once, run sync or async.

Each API method is written once, as a function that returns a :class:`Call` (method, path,
query, JSON body, and how to read the answer). The descriptors of ``client/namespace.py``
turn it into a method that a :class:`SyncRunner` (``httpx.Client``) runs to a value and an
:class:`AsyncRunner` (``httpx.AsyncClient``) runs to an awaitable of it; both share the request
building, the retry decisions and the decoding below.
"""

import functools
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any, Generic, ParamSpec, TypeVar
from urllib.parse import quote

import anyio
import httpx
import msgspec

from flowyard import __version__
from flowyard.client.errors import (
    ConnectionFailed,
    UnexpectedResponse,
    WaitTimeout,
    error_from_response,
)
from flowyard.client.models import Page, page_type

P = ParamSpec("P")
T = TypeVar("T")
Params = dict[str, str | int | float]

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 30.0
_encoder = msgspec.json.Encoder()


def segment(value: str) -> str:
    """An id or name as one URL path segment."""
    return quote(value, safe="")


def query(**values: str | int | float | None) -> Params:
    """Query parameters without the ones left out (None)."""
    return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call: what to send, and how to turn a 2xx answer into a ``T``."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Params = field(default_factory=dict)
    body: Any = None
    """Anything msgspec encodes (dicts, Structs, ``Raw``); None sends no body."""
    long_poll: float = 0.0
    """Seconds the server may hold the answer on purpose (added to the read timeout)."""

    def with_params(self, **params: str | int | float) -> "Call[T]":
        return replace(self, params={**self.params, **params})


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode(response: httpx.Response, type_: type[T]) -> T:
    """The answer's JSON body as ``type_``; :class:`UnexpectedResponse` if it is not one."""
    decoder = _DECODERS.get(type_)
    if decoder is None:
        decoder = _DECODERS.setdefault(type_, msgspec.json.Decoder(type_))
    try:
        return decoder.decode(response.content)  # type: ignore[no-any-return]
    except msgspec.DecodeError as exc:
        request = response.request
        raise UnexpectedResponse(
            f"cannot read the answer to {request.method} {request.url.path}: {exc}",
            status=response.status_code,
            headers=response.headers,
        ) from None


def returns(type_: type[T]) -> Callable[[httpx.Response], T]:
    """A ``parse`` that decodes the body as ``type_``."""
    return functools.partial(decode, type_=type_)


def returns_page(key: str, item: type[T]) -> Callable[[httpx.Response], Page[T]]:
    """A ``parse`` for ``{"<key>": [...], "next_cursor": ...}``."""
    struct = page_type(key, item)

    def parse(response: httpx.Response) -> Page[T]:
        found = decode(response, struct)
        return Page(getattr(found, key), getattr(found, "next_cursor"))  # noqa: B009

    return parse


def returns_field(key: str, type_: Any) -> Callable[[httpx.Response], Any]:
    """A ``parse`` for the one field ``key`` of the body."""
    struct = _field_struct(key, type_)

    def parse(response: httpx.Response) -> Any:
        return getattr(decode(response, struct), key)

    return parse


@functools.cache
def _field_struct(key: str, type_: Any) -> type[msgspec.Struct]:
    return msgspec.defstruct(f"{key.title()}Field", [(key, type_)], frozen=True)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a refused call again.

    Every call is retried on ``429`` and ``503``, and when the connection could not be made,
    whether or not it is idempotent: Flowyard answers 429 before doing any work and 503 when
    it is not ready, shutting down or its mailbox is full, so the call did not take effect.
    A ``Retry-After`` header is honoured; without one the delay doubles from ``backoff``
    (with jitter) up to ``max_delay``. The client gives up, raising the last error, after
    ``max_retries`` retries or when the next wait would take the total past ``max_wait``.
    Behind a proxy that answers 503 itself (e.g. on an upstream timeout, when the call may have
    taken effect), pass ``statuses=frozenset({429})``.
    """

    max_retries: int = 5
    max_wait: float = 60.0
    backoff: float = 0.5
    max_delay: float = 10.0
    statuses: frozenset[int] = frozenset({429, 503})

    @classmethod
    def never(cls) -> "RetryPolicy":
        """No retries: every refusal is raised at once."""
        return cls(max_retries=0)

    def delay(self, retries: int, waited: float, response: httpx.Response | None) -> float | None:
        """Seconds to wait before retry number ``retries + 1``, or None to give up."""
        if retries >= self.max_retries:
            return None
        if response is not None and response.status_code not in self.statuses:
            return None
        after = retry_after(response) if response is not None else None
        if after is None:
            step = min(self.max_delay, self.backoff * 2**retries)
            after = step * (0.5 + random.random() / 2)
        else:
            after += random.uniform(0, min(0.1 * after, 0.25))  # spread a herd of clients
        return None if waited + after > self.max_wait else after


RETRYABLE_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
"""Transport errors that mean the request was never sent."""


def unreachable(
    request: httpx.Request, exc: Exception, retries: int, waited: float
) -> ConnectionFailed:
    """The error for a request that could not be sent, retries included."""
    return ConnectionFailed(str(request.url), exc, retries=retries, waited=waited)


@dataclass(frozen=True)
class Wait(Generic[T]):
    """A call made again every ``interval`` seconds until ``done`` holds for its answer, for
    at most ``timeout`` seconds (None: no limit), else :class:`WaitTimeout`."""

    call: Call[T]
    done: Callable[[T], bool]
    timeout: float | None
    interval: float
    what: str
    """What is waited for, as the timeout's message says it."""

    def pause(self, deadline: float | None, now: float) -> float | None:
        """How long to sleep before the next call; None once the deadline has passed."""
        if deadline is None:
            return self.interval
        if now >= deadline:
            return None
        return min(self.interval, deadline - now)

    def timed_out(self, last: T) -> WaitTimeout:
        return WaitTimeout(f"{self.what} after {self.timeout:g} s", last)


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Connection:
    """Where and how to call: base URL, headers, timeout and retries (shared by runners)."""

    base_url: str
    api_key: str | None
    timeout: float
    retry: RetryPolicy

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        timeout: float | None,
        retry: RetryPolicy | None,
    ) -> "Connection":
        """Arguments first, then ``FLOWYARD_URL``, ``FLOWYARD_API_KEY``, ``FLOWYARD_TIMEOUT``."""
        url = base_url or os.environ.get("FLOWYARD_URL") or DEFAULT_URL
        key = api_key or os.environ.get("FLOWYARD_API_KEY") or None
        if timeout is None:
            timeout = float(os.environ.get("FLOWYARD_TIMEOUT") or DEFAULT_TIMEOUT)
        return cls(url.rstrip("/"), key, timeout, retry or RetryPolicy())

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"user-agent": f"flowyard-python/{__version__}", "accept": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return {**headers, **(extra or {})}

    def request(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        """The HTTP request for ``call`` (the read timeout stretched by its long poll)."""
        content = None if call.body is None else _encoder.encode(call.body)
        headers = {"content-type": "application/json"} if content is not None else None
        timeout: httpx.Timeout | None = None
        if call.long_poll:
            timeout = httpx.Timeout(self.timeout, read=self.timeout + call.long_poll)
        return http.build_request(
            call.method,
            call.path,
            params=call.params or None,
            content=content,
            headers=headers,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )


class SyncRunner:
    """Runs calls on an ``httpx.Client``."""

    def __init__(self, http: httpx.Client, connection: Connection) -> None:
        self.http = http
        self.connection = connection

    def __call__(self, call: Call[T]) -> T:
        retries, waited = 0, 0.0
        while True:
            request = self.connection.request(self.http, call)
            try:
                response = self.http.send(request)
            except RETRYABLE_ERRORS as exc:
                delay = self.connection.retry.delay(retries, waited, None)
                if delay is None:
                    raise unreachable(request, exc, retries, waited) from exc
            else:
                if response.is_success:
                    return call.parse(response)
                delay = self.connection.retry.delay(retries, waited, response)
                if delay is None:
                    raise error_from_response(response)
            time.sleep(delay)
            retries, waited = retries + 1, waited + delay

    def poll(self, wait: "Wait[T]") -> T:
        deadline = None if wait.timeout is None else time.monotonic() + wait.timeout
        while True:
            value = self(wait.call)
            if wait.done(value):
                return value
            pause = wait.pause(deadline, time.monotonic())
            if pause is None:
                raise wait.timed_out(value)
            time.sleep(pause)

    def iterate(self, call: Call[Page[T]]) -> Iterator[T]:
        while True:
            page = self(call)
            yield from page.items
            if page.next_cursor is None:
                return
            call = call.with_params(cursor=page.next_cursor)


class AsyncRunner:
    """Runs calls on an ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, connection: Connection) -> None:
        self.http = http
        self.connection = connection

    async def __call__(self, call: Call[T]) -> T:
        retries, waited = 0, 0.0
        while True:
            request = self.connection.request(self.http, call)
            try:
                response = await self.http.send(request)
            except RETRYABLE_ERRORS as exc:
                delay = self.connection.retry.delay(retries, waited, None)
                if delay is None:
                    raise unreachable(request, exc, retries, waited) from exc
            else:
                if response.is_success:
                    return call.parse(response)
                delay = self.connection.retry.delay(retries, waited, response)
                if delay is None:
                    raise error_from_response(response)
            await anyio.sleep(delay)
            retries, waited = retries + 1, waited + delay

    async def poll(self, wait: "Wait[T]") -> T:
        deadline = None if wait.timeout is None else time.monotonic() + wait.timeout
        while True:
            value = await self(wait.call)
            if wait.done(value):
                return value
            pause = wait.pause(deadline, time.monotonic())
            if pause is None:
                raise wait.timed_out(value)
            await anyio.sleep(pause)

    async def iterate(self, call: Call[Page[T]]) -> AsyncIterator[T]:
        while True:
            page = await self(call)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            call = call.with_params(cursor=page.next_cursor)


Runner = SyncRunner | AsyncRunner
