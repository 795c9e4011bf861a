"""Helpers for the SDK tests: one test body for both clients, and transports that count.

``Api`` wraps a :class:`Client` or an :class:`AsyncClient` so that a test awaits every method
the same way: the sync client's calls (and the iterators it returns) run in a worker thread,
so that the in-process server on the test's event loop keeps answering.
"""

import functools
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from flowyard.client import AsyncClient, Client
from flowyard.client.namespace import Namespace


class Api:
    """``await api.jobs.get(id)`` on either client; ``iter*`` methods return lists."""

    def __init__(self, target: Any, sync: bool) -> None:
        self._target = target
        self.sync = sync

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if isinstance(attr, Namespace):
            return Api(attr, self.sync)
        return functools.partial(self._call, name.startswith("iter"), attr)

    async def _call(
        self, iterates: bool, method: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any:
        if self.sync:
            if iterates:
                return await anyio.to_thread.run_sync(lambda: list(method(*args, **kwargs)))
            return await anyio.to_thread.run_sync(lambda: method(*args, **kwargs))
        if iterates:
            return [item async for item in method(*args, **kwargs)]
        return await method(*args, **kwargs)


class CountingTransport(httpx.HTTPTransport):
    """A real transport that records every status it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


class AsyncCountingTransport(httpx.AsyncHTTPTransport):
    """The async :class:`CountingTransport`."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        self.statuses.append(response.status_code)
        return response


def counting_api(sync: bool, url: str, key: str, **options: Any) -> tuple[Api, list[int], Any]:
    """An :class:`Api` whose transport counts statuses; also the client, to close."""
    client: Client | AsyncClient
    if sync:
        transport: Any = CountingTransport()
        client = Client(url, key, transport=transport, **options)
    else:
        transport = AsyncCountingTransport()
        client = AsyncClient(url, key, transport=transport, **options)
    return Api(client, sync), transport.statuses, client


async def close(client: Client | AsyncClient) -> None:
    if isinstance(client, Client):
        client.close()
    else:
        await client.aclose()


class FaultyTransport(httpx.AsyncHTTPTransport):
    """A real transport that first answers (or raises) the faults queued for a path suffix."""

    def __init__(self, faults: dict[str, list[httpx.Response | Exception]]) -> None:
        super().__init__()
        self.faults = faults
        self.injected: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for suffix, queued in self.faults.items():
            if request.url.path.endswith(suffix) and queued:
                fault = queued.pop(0)
                self.injected.append(suffix)
                if isinstance(fault, Exception):
                    raise fault
                return fault
        return await super().handle_async_request(request)


def api_error(status: int, code: str, message: str = "injected") -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message})
