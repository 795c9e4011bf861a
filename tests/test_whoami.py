"""``GET /core/whoami`` over real HTTP and real SQLite: the key and its project, free."""

from flowyard.storage.projects import create_key_sync
from tests.accounts_support import balance_of, set_account
from tests.conftest import Service
from tests.jobs_support import error_of


async def test_whoami_names_the_key_and_its_project(service: Service) -> None:
    created = create_key_sync(service.db, "shop", ["jobs:read"], name="reporting")
    async with service.client_for(created.key) as client:
        response = await client.get("/core/whoami")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "project_id": created.record.project_id,
        "project_name": "shop",
        "key_id": created.record.id,
        "name": "reporting",
        "scopes": ["jobs:read"],
        "admin": False,
    }
    assert created.key not in response.text


async def test_whoami_tells_an_admin_key(service: Service) -> None:
    created = create_key_sync(service.db, "ops", ["*"], admin=True)
    async with service.client_for(created.key) as client:
        answer = (await client.get("/core/whoami")).json()
    assert (answer["project_name"], answer["admin"], answer["scopes"]) == ("ops", True, ["*"])


async def test_whoami_needs_a_valid_key_and_no_tokens(service: Service) -> None:
    async with service.client_for(None) as anonymous:
        error_of(await anonymous.get("/core/whoami"), 401, "unauthorized")
    async with service.client_for("sk_live_" + "0" * 32) as unknown:
        error_of(await unknown.get("/core/whoami"), 401, "unauthorized")
    await set_account(service, balance=0)
    for _ in range(3):
        response = await service.client.get("/core/whoami")
        assert response.status_code == 200, response.text
    assert await balance_of(service.client) == "0"
