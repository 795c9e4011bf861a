"""Helpers for the token and rate-limit tests: set a project's account, read its balance.

``set_account`` goes through ``PATCH /admin/projects/{id}`` with an admin key (in force at
once). ``set_in_sql`` is the operator's other way, an UPDATE of the projects table in the
SQLite file, which the server reads back within about a second (``Accounts.refresh``); it
waits for that by watching the server's in-memory account, so that waiting adds no call to
the project's usage and takes nothing from its rate bucket.
"""

import time
from decimal import Decimal
from typing import Any

import anyio
import httpx

from flowyard.storage.intents import SetBalance, SetRate
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import Service
from tests.store_support import read, write

JOB_WRITE = 1_800
"""DESIGN §2 prices in 1e-9 tokens: a job create is 0.0000018 tokens ..."""
WORKFLOW_WRITE = 5_300
"""... a blueprint create or another workflow write 0.0000053 ..."""
READ = 800
"""... and a read 0.0000008."""
TOKEN = 10**9
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")

_UNSET: Any = object()


def tokens(nanos: int) -> str:
    """``1800`` -> ``"0.0000018"``: how the API shows an amount of 1e-9 tokens."""
    return format((Decimal(nanos) / TOKEN).normalize(), "f")


def _stored_balance(db: str, project_id: str) -> int | None:
    [(stored,)] = read(db, "SELECT token_balance FROM projects WHERE id = ?", project_id)
    return None if stored is None else int(stored)


async def written_behind(service: Service, project_id: str, timeout: float = 5) -> None:
    """Wait until every charge the server made is in the SQLite file.

    A balance set in SQL while charges are still unwritten would have them taken from it on
    the next write-behind (charges are written as a difference, by design).
    """
    accounts = service.supervisor.accounts
    with anyio.fail_after(timeout):
        while True:
            stored = await anyio.to_thread.run_sync(_stored_balance, service.db, project_id)
            if stored == accounts.balance(project_id):
                return
            await anyio.sleep(0.02)


_admin_keys: dict[str, str] = {}


async def admin_client(service: Service) -> httpx.AsyncClient:
    """A client with an admin key (made once per service, in a project of its own)."""
    key = _admin_keys.get(service.db)
    if key is None:
        created = await anyio.to_thread.run_sync(
            lambda: create_key_sync(service.db, "admins", list(ALL_SCOPES), admin=True)
        )
        key = _admin_keys[service.db] = created.key
    return service.client_for(key)


async def set_account(
    service: Service,
    project_id: str | None = None,
    *,
    balance: int | None = _UNSET,
    rps: float | None = _UNSET,
) -> None:
    """Set a project's balance (in 1e-9 tokens, sent as a decimal string) and/or rate limit
    through the admin API; both are in force once it answers."""
    body: dict[str, Any] = {}
    if balance is not _UNSET:
        body["token_balance"] = None if balance is None else tokens(balance)
    if rps is not _UNSET:
        body["rate_limit_rps"] = rps
    async with await admin_client(service) as admin:
        response = await admin.patch(
            f"/admin/projects/{project_id or service.project_id}", json=body
        )
    assert response.status_code == 200, response.text


async def admin_balance(service: Service, project_id: str | None = None) -> str | None:
    """The balance as ``GET /admin/projects/{id}`` shows it (not rate-limited, free)."""
    async with await admin_client(service) as admin:
        response = await admin.get(f"/admin/projects/{project_id or service.project_id}")
    assert response.status_code == 200, response.text
    value: str | None = response.json()["token_balance"]
    return value


async def set_in_sql(
    service: Service,
    project_id: str | None = None,
    *,
    balance: int | None = _UNSET,
    rps: float | None = _UNSET,
) -> None:
    """Set a project's balance and/or rate limit in the projects table; wait until the
    server has read it back."""
    project_id = project_id or service.project_id
    accounts = service.supervisor.accounts
    if balance is not _UNSET:
        await written_behind(service, project_id)
        await anyio.to_thread.run_sync(write, service.db, SetBalance(project_id, balance))
    if rps is not _UNSET:
        await anyio.to_thread.run_sync(write, service.db, SetRate(project_id, rps))
    with anyio.fail_after(5):
        while (balance is not _UNSET and accounts.balance(project_id) != balance) or (
            rps is not _UNSET and accounts.rate(project_id) != rps
        ):
            await anyio.sleep(0.02)


async def balance_of(client: httpx.AsyncClient) -> str | None:
    """``total_balance`` as ``GET /core/tokens/balance`` shows it (a free call)."""
    response = await client.get("/core/tokens/balance")
    assert response.status_code == 200, response.text
    value: str | None = response.json()["total_balance"]
    return value


def today_start() -> str:
    """The RFC 3339 start of the current UTC day, as usage's ``period_start`` shows it."""
    return time.strftime("%Y-%m-%dT00:00:00.000Z", time.gmtime())


def assert_rate_headers(response: httpx.Response, limit: str) -> tuple[int, int]:
    """The response carries the three ``X-RateLimit-*`` headers; (remaining, reset)."""
    for name in RATE_HEADERS:
        assert name in response.headers, (response.status_code, dict(response.headers))
    assert response.headers["x-ratelimit-limit"] == limit
    remaining = int(response.headers["x-ratelimit-remaining"])
    reset = int(response.headers["x-ratelimit-reset"])
    assert remaining >= 0
    return remaining, reset


def assert_no_rate_headers(response: httpx.Response) -> None:
    present = [name for name in RATE_HEADERS if name in response.headers]
    assert not present, (response.status_code, present)
