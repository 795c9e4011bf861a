"""Who may call the Jobs API: keys, scopes, projects; unknown routes; signing secret; health."""

from typing import Any

import httpx
import pytest

from tests.conftest import Service
from tests.jobs_support import LATER, PULL, create, error_of, job_ids, new_key, project_client

UNKNOWN = "job_01JZZZZZZZZZZZZZZZZZZZZZZZ"


# (method, path template, body, scope). {id} is replaced with a job id.
CALLS: list[tuple[str, str, Any, str]] = [
    ("GET", "/infra/jobs", None, "jobs:read"),
    ("GET", "/infra/jobs/{id}", None, "jobs:read"),
    ("GET", "/infra/jobs/{id}/runs", None, "jobs:read"),
    ("POST", "/infra/jobs", PULL, "jobs:write"),
    ("POST", "/infra/jobs/batch", {"jobs": [PULL]}, "jobs:write"),
    ("PATCH", "/infra/jobs/{id}", {"enabled": False}, "jobs:write"),
    ("DELETE", "/infra/jobs/{id}", None, "jobs:write"),
    ("POST", "/infra/jobs/{id}/trigger", None, "jobs:write"),
    ("POST", "/infra/jobs/{id}/retry", None, "jobs:write"),
    ("POST", "/infra/jobs/claim", {"queue": "q"}, "jobs:write"),
    ("GET", "/infra/jobs/signing-secret", None, "jobs:write"),
    ("POST", "/infra/jobs/signing-secret/rotate", None, "jobs:write"),
]
CALL_IDS = [f"{method} {path}" for method, path, _, _ in CALLS]


async def send(client: httpx.AsyncClient, method: str, path: str, body: Any, job_id: str) -> Any:
    return await client.request(method, path.format(id=job_id), json=body)


@pytest.mark.parametrize(("method", "path", "body", "scope"), CALLS, ids=CALL_IDS)
async def test_no_key_or_a_bad_key_is_401(
    shared: Service, api: httpx.AsyncClient, method: str, path: str, body: Any, scope: str
) -> None:
    job = await create(api, LATER)
    bad_headers = [
        {},
        {"Authorization": "Bearer sk_live_" + "x" * 40},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "sk_live_" + "y" * 40},
    ]
    for headers in bad_headers:
        async with httpx.AsyncClient(base_url=shared.url, headers=headers) as client:
            for job_id in (job["id"], UNKNOWN):
                response = await send(client, method, path, body, job_id)
                error_of(response, 401, "unauthorized")
    assert await job_ids(api) == [job["id"]]
    assert (await api.get(f"/infra/jobs/{job['id']}")).json() == job


async def test_x_api_key_header_works(shared: Service) -> None:
    key = await new_key(shared, "x-api-key-project")
    async with httpx.AsyncClient(base_url=shared.url, headers={"X-API-Key": key}) as client:
        created = await create(client, PULL)
        assert await job_ids(client) == [created["id"]]


@pytest.mark.parametrize(("method", "path", "body", "scope"), CALLS, ids=CALL_IDS)
async def test_a_key_without_the_scope_is_403_naming_it(
    shared: Service, api: httpx.AsyncClient, method: str, path: str, body: Any, scope: str
) -> None:
    project = f"scopes-{method}-{path}"
    other = "jobs:write" if scope == "jobs:read" else "jobs:read"
    main_key = await new_key(shared, project)
    async with shared.client_for(main_key) as owner:
        job = await create(owner, LATER)
    for scopes in ([other], ["workflows:read", "workflows:write"]):
        async with shared.client_for(await new_key(shared, project, scopes)) as client:
            for job_id in (job["id"], UNKNOWN):
                body_of = error_of(await send(client, method, path, body, job_id), 403, "forbidden")
                assert scope in body_of["message"]
    async with shared.client_for(main_key) as owner:
        assert await job_ids(owner) == [job["id"]]
        assert (await owner.get(f"/infra/jobs/{job['id']}")).json() == job
    for scopes in ([scope], ["*"]):
        async with shared.client_for(await new_key(shared, project, scopes)) as client:
            response = await send(client, method, path, body, job["id"])
            assert response.status_code not in (401, 403), response.text


async def test_read_and_write_scopes_are_independent(shared: Service) -> None:
    reader = shared.client_for(await new_key(shared, "independent", ["jobs:read"]))
    writer = shared.client_for(await new_key(shared, "independent", ["jobs:write"]))
    async with reader, writer:
        job = await create(writer, PULL)
        assert (await reader.get(f"/infra/jobs/{job['id']}")).json() == job
        error_of(await writer.get(f"/infra/jobs/{job['id']}"), 403, "forbidden")
        error_of(await reader.post("/infra/jobs", json=PULL), 403, "forbidden")
        assert await job_ids(reader) == [job["id"]]


OWNED: list[tuple[str, str, Any]] = [
    ("GET", "/infra/jobs/{id}", None),
    ("GET", "/infra/jobs/{id}/runs", None),
    ("PATCH", "/infra/jobs/{id}", {"enabled": False}),
    ("PATCH", "/infra/jobs/{id}", {"enabled": "not even valid"}),
    ("DELETE", "/infra/jobs/{id}", None),
    ("POST", "/infra/jobs/{id}/trigger", None),
    ("POST", "/infra/jobs/{id}/retry", None),
]


async def test_another_projects_job_is_404(shared: Service, api: httpx.AsyncClient) -> None:
    job = await create(api, LATER)
    async with project_client(shared) as stranger:
        for method, path, body in OWNED:
            response = await send(stranger, method, path, body, job["id"])
            error_of(response, 404, "not_found")
        assert await job_ids(stranger) == []
    assert (await api.get(f"/infra/jobs/{job['id']}")).json() == job
    assert await job_ids(api) == [job["id"]]


# ----------------------------------------------------------------------------- routes


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("GET", "/infra/nope"), ("POST", "/infra/jobs/x/y/z"), ("GET", "/infra")],
)
async def test_unknown_route_is_404_in_the_error_shape(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    body = error_of(await api.request(method, path), 404, "not_found")
    assert set(body) <= {"code", "message", "details"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/infra/jobs"),
        ("DELETE", "/infra/jobs"),
        ("PUT", f"/infra/jobs/{UNKNOWN}"),
        ("GET", f"/infra/jobs/{UNKNOWN}/retry"),
        ("DELETE", "/infra/jobs/signing-secret/rotate"),
        ("POST", "/livez"),
    ],
)
async def test_wrong_method_is_405_in_the_error_shape(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    body = error_of(await api.request(method, path), 405, "method_not_allowed")
    assert set(body) <= {"code", "message", "details"}


# ----------------------------------------------------------------------------- signing secret


async def test_signing_secret_read_and_rotate(shared: Service, api: httpx.AsyncClient) -> None:
    first = await api.get("/infra/jobs/signing-secret")
    assert first.status_code == 200, first.text
    secret = first.json()["signing_secret"]
    assert isinstance(secret, str) and len(secret) >= 32
    assert (await api.get("/infra/jobs/signing-secret")).json() == {"signing_secret": secret}
    async with project_client(shared) as other:
        theirs = (await other.get("/infra/jobs/signing-secret")).json()["signing_secret"]
        assert theirs != secret
        rotated = await api.post("/infra/jobs/signing-secret/rotate")
        assert rotated.status_code == 200, rotated.text
        fresh = rotated.json()["signing_secret"]
        assert isinstance(fresh, str) and len(fresh) >= 32 and fresh != secret
        assert (await api.get("/infra/jobs/signing-secret")).json() == {"signing_secret": fresh}
        assert (await other.get("/infra/jobs/signing-secret")).json()["signing_secret"] == theirs


async def test_signing_secret_needs_jobs_write(shared: Service) -> None:
    async with shared.client_for(await new_key(shared, "secret-scopes", ["jobs:read"])) as reader:
        for method, path in (
            ("GET", "/infra/jobs/signing-secret"),
            ("POST", "/infra/jobs/signing-secret/rotate"),
        ):
            body = error_of(await reader.request(method, path), 403, "forbidden")
            assert "jobs:write" in body["message"]
    async with shared.client_for(await new_key(shared, "secret-scopes", ["jobs:write"])) as writer:
        assert (await writer.get("/infra/jobs/signing-secret")).status_code == 200


# ----------------------------------------------------------------------------- health


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz"])
async def test_health_answers_200_without_auth(shared: Service, path: str) -> None:
    async with shared.client_for(None) as anonymous:
        response = await anonymous.get(path)
    assert response.status_code == 200, response.text
