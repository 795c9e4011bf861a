"""What a made-up credential may cost: no work past 256 characters, bounded memory always.

The unit tests drive :class:`Authenticator` on the real SQLite file of a running service and
look at its caches; the last one sends 1 MiB credentials to a real server process.
"""

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.requests import Request

from flowyard.errors import Unauthorized
from flowyard.http import auth
from flowyard.http.auth import MAX_CREDENTIAL, Authenticator
from flowyard.storage.projects import ALL_SCOPES, create_key_sync, hash_key
from tests.conftest import ServerProcess, Service

StartServer = Callable[..., ServerProcess]


def carrying(*headers: tuple[str, str]) -> Request:
    """A request with just these headers, as the authenticator reads them."""
    raw = [(name.lower().encode(), value.encode("latin-1")) for name, value in headers]
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": raw}
    return Request(scope)


def bearer(token: str) -> Request:
    return carrying(("Authorization", f"Bearer {token}"))


async def refused(authenticator: Authenticator, request: Request) -> str:
    with pytest.raises(Unauthorized) as raised:
        await authenticator.authenticate(request)
    return raised.value.message


async def test_a_credential_over_256_characters_is_401_without_a_look_up(
    service: Service,
) -> None:
    authenticator = Authenticator(service.supervisor.db)
    for too_long in ("k" * (MAX_CREDENTIAL + 1), "sk_live_" + "x" * 1024 * 1024):
        for request in (bearer(too_long), carrying(("X-API-Key", too_long))):
            message = await refused(authenticator, request)
            assert f"longer than {MAX_CREDENTIAL} characters" in message
    assert authenticator._unknown == {} and authenticator._found == {}  # nothing looked up
    longest = "k" * MAX_CREDENTIAL  # still looked up, and unknown
    assert "longer" not in await refused(authenticator, bearer(longest))
    assert list(authenticator._unknown) == [hash_key(longest)]


async def test_made_up_credentials_keep_the_caches_bounded_and_real_keys_cached(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "CACHE_SIZE", 50)
    authenticator = Authenticator(service.supervisor.db)
    real = await authenticator.authenticate(bearer(service.key))
    for n in range(400):
        made_up = secrets.token_urlsafe(8 if n % 2 else 180)  # short and long ones
        request = bearer(made_up) if n % 3 else carrying(("X-API-Key", made_up))
        await refused(authenticator, request)
        assert len(authenticator._unknown) <= 50
    # Digests only, never what was sent; and the real key was never pushed out.
    assert all(len(digest) == 64 for digest in authenticator._unknown)
    assert list(authenticator._found) == [hash_key(service.key)]
    assert await authenticator.authenticate(bearer(service.key)) == real


async def test_a_run_of_one_credential_is_hashed_once(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []

    def counted(token: str) -> str:
        hashed.append(token)
        return hash_key(token)

    monkeypatch.setattr(auth, "hash_key", counted)
    authenticator = Authenticator(service.supervisor.db)
    real = await authenticator.authenticate(bearer(service.key))
    assert authenticator.cached(bearer(service.key).scope) == real
    assert authenticator.cached(carrying(("X-API-Key", service.key)).scope) == real
    assert hashed == [service.key]
    await refused(authenticator, bearer("made-up"))  # another credential: hashed on its own
    assert await authenticator.authenticate(bearer(service.key)) == real
    assert hashed == [service.key, "made-up", service.key]


async def test_mebibyte_credentials_are_refused_quickly_by_a_real_server(
    tmp_path: Path, server_process: StartServer
) -> None:
    db = str(tmp_path / "flowyard.db")
    key = create_key_sync(db, "flood", list(ALL_SCOPES)).key
    server = await anyio.to_thread.run_sync(lambda: server_process(db))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/infra/jobs", headers={"X-API-Key": key})).status_code == 200
        for n in range(50):
            token = f"{n:08d}" + "t" * (1024 * 1024)
            name = "Authorization" if n % 2 else "X-API-Key"
            value = f"Bearer {token}" if n % 2 else token
            with anyio.fail_after(5):
                answer = await client.get("/infra/jobs", headers={name: value})
            assert answer.status_code in (401, 431), answer.text  # 431: the header is over 64 KiB
        assert (await client.get("/infra/jobs", headers={"X-API-Key": key})).status_code == 200
