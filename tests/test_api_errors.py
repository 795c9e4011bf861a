"""What every route answers to bad requests (DESIGN §2): unknown routes, wrong methods, bad
bodies, odd path and query values. Always a JSON ``{code, message, details?}``, never a 500,
and nothing of a refused call is created.
"""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from flowyard.http.body import MAX_BODY_BYTES
from tests.api_surface import (
    ADMIN,
    IDS,
    PRESENT,
    WITH_BODY,
    Call,
    Owner,
    assert_error,
    new_owner,
    path_methods,
    send,
    served_methods,
    snapshot,
)
from tests.conftest import Service, running_service

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BODY_IDS = [call.id for call in WITH_BODY]
PARAM = re.compile(r"\{(\w+)\}")
WITH_PARAMS = [call for call in PRESENT if PARAM.search(call.path)]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    path: Path = tmp_path_factory.mktemp("api-errors")
    async with running_service(path) as service:
        yield service


@asynccontextmanager
async def caller(owner: Owner, call: Call) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the owner's project allowed to make ``call``."""
    created = await owner.key_for(admin=call.scope == ADMIN)
    async with owner.service.client_for(created.key) as client:
        yield client


# --------------------------------------------------------------------------- unknown routes


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/nope",
        "/infra",
        "/infra/",
        "/infra/jobs/",
        "/infra/jobs/job_1/",
        "/infra/workflows/blueprints/",
        "/infra/job",
        "/infra/jobs/job_1/runs/run_1",
        "/infra/jobs/job_1/nope",
        "/infra/workflows",
        "/infra/workflows/blueprints/wf_1/nope",
        "/infra/queues/q/nope",
        "/admin/nope",
        "/core/tokens",
        "/%00",
        "/\u00e9\u4e2d",
    ],
)
@pytest.mark.parametrize("method", METHODS)
async def test_an_unknown_route_is_404_json(shared: Service, path: str, method: str) -> None:
    for headers in ({}, {"Authorization": f"Bearer {shared.key}"}):
        async with httpx.AsyncClient(base_url=shared.url, headers=headers) as client:
            response = await client.request(method, path)
            assert_error(response, 404, "not_found")


# ---------------------------------------------------------------------------- wrong methods


def concrete(path: str) -> str:
    """A path template with every parameter replaced by a value no other route claims."""
    return PARAM.sub(lambda m: f"zz_{m[1]}_01JZZZZZZZZZZZZZZZZZZZZZZZ", path)


@pytest.mark.parametrize("path", sorted(path_methods()))
async def test_a_wrong_method_is_405_allowing_every_method_of_the_path(
    shared: Service, path: str
) -> None:
    url = concrete(path)
    accepted = served_methods(url)
    wrong = [method for method in METHODS if method not in accepted]
    assert wrong, accepted
    for method in wrong:
        for headers in ({}, {"Authorization": f"Bearer {shared.key}"}):
            async with httpx.AsyncClient(base_url=shared.url, headers=headers) as client:
                response = await client.request(method, url)
            assert_error(response, 405, "method_not_allowed")
            allow = {m.strip() for m in response.headers["allow"].split(",")}
            assert allow - {"HEAD"} == accepted, (method, url, response.headers["allow"])


async def test_allow_names_methods_of_every_route_on_a_shared_path(shared: Service) -> None:
    response = await shared.client.put("/infra/jobs")
    assert_error(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}
    response = await shared.client.post("/infra/jobs/job_x")
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "PATCH", "DELETE"}


# ------------------------------------------------------------------------------ bad bodies

BAD_JSON = [
    b"{",
    b"{not json}",
    b"\xff\xfe\x00",
    b'{"queue": "q"} trailing',
    b"null",
    b"[]",
    b"42",
    b'"text"',
    b'{"a": NaN}',
    b"[" * 100_000 + b"]" * 100_000,  # deeper than any decoder recurses
    b'{"payload": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
]
WRONG_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "text/json",
]


async def _over_a_mebibyte() -> AsyncIterator[bytes]:
    """A JSON body over 1 MiB, streamed without a Content-Length."""
    yield b'{"payload": "'
    for _ in range(MAX_BODY_BYTES // 65536 + 1):
        yield b"x" * 65536
    yield b'"}'


@pytest.mark.parametrize("call", WITH_BODY, ids=BODY_IDS)
async def test_bad_bodies_are_refused_and_change_nothing(shared: Service, call: Call) -> None:
    async with new_owner(shared) as owner, caller(owner, call) as client:
        prepared = await call.prepare(owner)
        before = await snapshot(owner)
        url = call.url(prepared)
        for raw in BAD_JSON:
            headers = {"Content-Type": "application/json"}
            response = await client.request(call.method, url, content=raw, headers=headers)
            assert_error(response, 400, "bad_request")
        for media in WRONG_TYPES:
            body = httpx.Request("POST", "/", json=prepared.body).content
            response = await client.request(
                call.method, url, content=body, headers={"Content-Type": media}
            )
            assert_error(response, 415, "unsupported_media_type")
        big = b'{"payload": "' + b"x" * MAX_BODY_BYTES + b'"}'
        response = await client.request(
            call.method, url, content=big, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 413, "payload_too_large")
        response = await client.request(
            call.method,
            url,
            content=_over_a_mebibyte(),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "payload_too_large")
        assert await snapshot(owner) == before


BODY_ON_OBJECT = [call for call in WITH_BODY if call.names_object]


@pytest.mark.parametrize("call", BODY_ON_OBJECT, ids=[call.id for call in BODY_ON_OBJECT])
async def test_an_unknown_object_is_404_before_its_body_is_read(
    shared: Service, call: Call
) -> None:
    async with new_owner(shared) as owner, caller(owner, call) as client:
        prepared = await call.prepare(owner)
        unknown = {name: f"{value[:-4]}ZZZZ" for name, value in prepared.params.items()}
        url = call.url(prepared, **unknown)
        for raw, media in [(b"{", "application/json"), (b"{}", "text/plain")]:
            response = await client.request(
                call.method, url, content=raw, headers={"Content-Type": media}
            )
            assert_error(response, 404, "not_found")


@pytest.mark.parametrize("call", WITH_BODY, ids=BODY_IDS)
async def test_a_valid_body_is_accepted_as_application_json_with_a_charset(
    shared: Service, call: Call
) -> None:
    async with new_owner(shared) as owner, caller(owner, call) as client:
        prepared = await call.prepare(owner)
        body = httpx.Request("POST", "/", json=prepared.body).content
        headers = {"Content-Type": "application/json; charset=utf-8"}
        response = await client.request(
            call.method, call.url(prepared), content=body, headers=headers
        )
        assert response.status_code == call.success, response.text


# --------------------------------------------------------------------- odd path and query

ODD_VALUES = [
    "x" * 5000,
    "x" * 60000,
    "\u00e9\u4e2d\U0001f600",
    "%00",
    "a%00b",
    "%FF%FE",
    "%2F",
    "..",
    "%2E%2E",
    "a%20b",
    "'; DROP TABLE jobs; --",
    "job_01JZZZZZZZZZZZZZZZZZZZZZZZ%0A",
    "%25",
    "-1",
    "9" * 40,
]


@pytest.mark.parametrize("call", WITH_PARAMS, ids=[call.id for call in WITH_PARAMS])
async def test_odd_path_values_never_cause_a_500(shared: Service, call: Call) -> None:
    async with new_owner(shared) as owner, caller(owner, call) as client:
        prepared = await call.prepare(owner)
        for value in ODD_VALUES:
            # One long value in all: two of 60000 characters are over the client's URL limit.
            override = {name: value for name in prepared.params}
            if len(value) > 5000:
                override = {name: value[:20] for name in prepared.params}
                override[next(iter(prepared.params))] = value
            response = await send(client, call, prepared, **override)
            assert response.status_code < 500, (value[:50], response.text)
            if response.status_code == 307:  # "%2F" made an empty segment: a trailing slash
                assert response.headers["location"].startswith(f"{shared.url}/"), value
                continue
            assert response.headers["content-type"].startswith("application/json")
            if response.status_code >= 400:
                assert_error(response, response.status_code, response.json()["code"])


ODD_QUERIES = [
    "limit=%00",
    "limit=",
    "limit=1e3",
    "limit=-1",
    "limit=0x10",
    "limit=" + "9" * 40,
    "limit=%EF%BC%91",  # a fullwidth digit
    "cursor=",
    "cursor=%00",
    "cursor=%FF%FE",
    "cursor=" + "A" * 4000,
    "cursor=\u00e9",
    "status=%00",
    "status=\u00e9",
    "queue=" + "q" * 4000,
    "blueprint_id=%00",
    "project_id=%00",
]
LISTS = [call for call in PRESENT if call.method == "GET" and "{" not in call.path]


@pytest.mark.parametrize("call", LISTS, ids=[call.id for call in LISTS])
async def test_odd_query_values_never_cause_a_500(shared: Service, call: Call) -> None:
    async with new_owner(shared) as owner, caller(owner, call) as client:
        prepared = await call.prepare(owner)
        for query in ODD_QUERIES:
            response = await client.get(f"{call.url(prepared)}?{query}")
            assert response.status_code < 500, (query[:50], response.text)
            if response.status_code >= 400:
                assert_error(response, response.status_code, response.json()["code"])


@pytest.mark.parametrize("call", PRESENT, ids=IDS)
async def test_a_valid_call_answers_json(shared: Service, call: Call) -> None:
    async with new_owner(shared) as owner, caller(owner, call) as client:
        prepared = await call.prepare(owner)
        response = await send(client, call, prepared)
        assert response.status_code == call.success, response.text
        assert response.headers["content-type"].startswith("application/json")
        response.json()
