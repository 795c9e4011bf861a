"""Hostile input on every body route: non-finite numbers, duplicate keys, huge arrays, long and
odd strings, placeholders smuggled into data, SQL metacharacters, handlers aimed inward.

Always a 4xx ``{code, message, details}`` or correct handling, never a 500; a refused call
changes nothing, and the server stays up after every test. The malformed-body, media-type
and odd-path cases live in ``tests/test_api_errors.py``.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.api_surface import (
    ADMIN,
    BLUEPRINT,
    WITH_BODY,
    Call,
    Owner,
    assert_error,
    new_owner,
    snapshot,
)
from tests.conftest import Handler, Service, running_service
from tests.job_helpers import create_job, list_runs, wait_job
from tests.jobs_support import PULL, claim, create
from tests.workflow_support import (
    claim_one,
    create_blueprint,
    execution,
    pull_step,
    step_of,
    trigger,
    wait_step,
)

Json = dict[str, Any]
JSON = {"Content-Type": "application/json"}
BODY_IDS = [call.id for call in WITH_BODY]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    path: Path = tmp_path_factory.mktemp("abuse")
    async with running_service(path) as service:
        yield service


@pytest.fixture(autouse=True)
async def stays_up(shared: Service) -> AsyncIterator[None]:
    """After each test the server still answers, and a normal call still works."""
    yield
    async with httpx.AsyncClient(base_url=shared.url, timeout=30) as client:
        assert (await client.get("/livez")).status_code == 200
    created = await shared.client.post("/infra/jobs", json=PULL)
    assert created.status_code == 202, created.text
    assert (await shared.client.get(f"/infra/jobs/{created.json()['id']}")).status_code == 200


@asynccontextmanager
async def owner_of(service: Service) -> AsyncIterator[Owner]:
    async with new_owner(service, "abuse") as owner:
        yield owner


@asynccontextmanager
async def caller(owner: Owner, call: Call) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the owner's project allowed to make ``call``."""
    created = await owner.key_for(admin=call.scope == ADMIN)
    async with owner.service.client_for(created.key) as client:
        yield client


async def post_raw(client: httpx.AsyncClient, url: str, raw: str, method: str = "POST") -> Any:
    return await client.request(method, url, content=raw.encode(), headers=JSON)


def bad_request(response: httpx.Response, path: str | None = None) -> None:
    """A 400 in the contract's shape, naming ``path`` in its details when given."""
    body = assert_error(response, 400, "bad_request")
    if path is not None:
        assert path in [item["path"] for item in body.get("details", [])], body


# ------------------------------------------------------------------ non-finite numbers

NON_FINITE = ["NaN", "-NaN", "nan", "Infinity", "-Infinity", "inf", "1e999", "-1e999"]


TAKES_PAYLOAD = {"POST /infra/jobs", "PATCH /infra/jobs/{job_id}"}


@pytest.mark.parametrize("call", WITH_BODY, ids=BODY_IDS)
async def test_non_finite_numbers_in_any_field_are_400(shared: Service, call: Call) -> None:
    async with owner_of(shared) as owner, caller(owner, call) as client:
        prepared = await call.prepare(owner)
        before = await snapshot(owner)
        body = prepared.body if isinstance(prepared.body, dict) else {}
        for key in {*body, "payload"}:
            rest = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in body.items() if k != key]
            for literal in NON_FINITE:
                if "e" in literal and key not in body and call.id not in TAKES_PAYLOAD:
                    continue  # a well-formed number in a field the route ignores
                raw = "{" + ", ".join([*rest, f"{json.dumps(key)}: {literal}"]) + "}"
                response = await post_raw(client, call.url(prepared), raw, call.method)
                assert_error(response, 400, "bad_request")
        assert await snapshot(owner) == before


BIG = "1e999"


@pytest.mark.parametrize(
    "payload", [BIG, f'[1, {{"b": -{BIG}}}]', f'{{"a": {{"b": [{BIG}]}}}}', "1E400"]
)
async def test_a_payload_number_no_float_holds_is_400(shared: Service, payload: str) -> None:
    async with owner_of(shared) as owner:
        later = await create(owner.client, {"trigger": {"type": "pull", "queue": "big"}})
        before = await snapshot(owner)
        job = json.dumps(PULL)[:-1] + f', "payload": {payload}}}'
        bad_request(await post_raw(owner.client, "/infra/jobs", job), "$.payload")
        batch = '{"jobs": [' + json.dumps(PULL) + ", " + job + "]}"
        bad_request(await post_raw(owner.client, "/infra/jobs/batch", batch), "$.jobs[1].payload")
        url = f"/infra/jobs/{later['id']}"
        bad_request(await post_raw(owner.client, url, f'{{"payload": {payload}}}', "PATCH"))
        assert await snapshot(owner) == before


async def test_an_ack_result_no_float_holds_is_400_and_the_lease_stays(shared: Service) -> None:
    async with owner_of(shared) as owner:
        execution_id = await _started(owner, [pull_step("a", "inf"), _after("a", "inf-next")])
        job = await claim_one(owner.client, "inf")
        raw = f'{{"status": "completed", "claim_token": "{job["claim_token"]}", "result": [{BIG}]}}'
        bad_request(await post_raw(owner.client, f"/infra/jobs/{job['id']}/ack", raw), "$.result")
        assert step_of(await execution(owner.client, execution_id), "a")["status"] == "running"
        ok = raw.replace(BIG, "1e308")
        assert (await post_raw(owner.client, f"/infra/jobs/{job['id']}/ack", ok)).status_code == 200
        following = await claim_one(owner.client, "inf-next")
        assert following["payload"] == {"got": [1e308]}


async def test_a_callback_result_no_float_holds_is_400(shared: Service, handler: Handler) -> None:
    url = handler.script("/later", (202, {}, 0))
    job = await create_job(shared, trigger={"type": "immediate"}, handler=url)
    [delivery] = await handler.wait_for("/later")
    callback = delivery.headers["x-flowyard-callback-url"]
    async with httpx.AsyncClient(timeout=30) as anonymous:
        raw = f'{{"status": "completed", "result": {{"x": -{BIG}}}}}'
        bad_request(await post_raw(anonymous, callback, raw), "$.result")
        assert (await post_raw(anonymous, callback, raw.replace(BIG, "1"))).status_code == 200
    assert (await wait_job(shared, job["id"], "completed"))["result"] == {"x": -1}


async def test_workflow_values_no_float_holds_are_400(shared: Service) -> None:
    async with owner_of(shared) as owner:
        blueprint = json.dumps({**BLUEPRINT, "steps": [pull_step("a", "wf", "TEMPLATE")]})
        raw = blueprint.replace('"TEMPLATE"', f"[{BIG}]")
        bad_request(await post_raw(owner.client, "/infra/workflows/blueprints", raw))
        execution_id = await _started(owner, [pull_step("a", "wfinf")])
        blueprint_id = (await execution(owner.client, execution_id))["blueprint_id"]
        path = f"/infra/workflows/blueprints/{blueprint_id}"
        bad_request(
            await post_raw(owner.client, f"{path}/trigger", f'{{"input_data": {{"x": {BIG}}}}}')
        )
        await owner.client.post(f"/infra/workflows/executions/{execution_id}/pause")
        resume = f'{{"step_id": "a", "override_output": {{"x": {BIG}}}}}'
        url = f"/infra/workflows/executions/{execution_id}/resume"
        bad_request(await post_raw(owner.client, url, resume))
        assert (await execution(owner.client, execution_id))["status"] == "paused"


# ------------------------------------------------------------------------ duplicate keys


async def test_duplicate_keys_the_last_one_wins(shared: Service) -> None:
    async with owner_of(shared) as owner:
        raw = (
            '{"trigger": {"type": "pull", "queue": "dup-first"}, "name": "first",'
            ' "trigger": {"type": "pull", "queue": "dup-last"}, "name": "last"}'
        )
        response = await post_raw(owner.client, "/infra/jobs", raw)
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["name"] == "last" and job["trigger"]["queue"] == "dup-last"
        bp = await create_blueprint(owner.client, [pull_step("a", "dup-wf", "{{input.x}}")])
        raw = '{"input_data": {"x": "first", "x": "last"}}'
        response = await post_raw(
            owner.client, f"/infra/workflows/blueprints/{bp['id']}/trigger", raw
        )
        assert response.status_code == 200, response.text
        state = await execution(owner.client, response.json()["execution_id"])
        assert state["input_data"] == {"x": "last"}
        assert (await claim_one(owner.client, "dup-wf"))["payload"] == "last"


async def test_a_payload_with_duplicate_keys_is_kept_as_sent(
    shared: Service, handler: Handler
) -> None:
    url = handler.script("/dup", (200, {}, 0))
    payload = '{"a": 1, "a": 2}'
    raw = f'{{"trigger": {{"type": "immediate"}}, "handler": "{url}", "payload": {payload}}}'
    response = await post_raw(shared.client, "/infra/jobs", raw)
    assert response.status_code == 202, response.text
    assert '"payload":{"a": 1, "a": 2}' in response.text  # byte for byte
    [delivery] = await handler.wait_for("/dup")
    assert delivery.body == payload.encode()


# ------------------------------------------------------------------------ sizes

MIB = 1024 * 1024
KIB_256 = 256 * 1024


def zeros(count: int) -> str:
    return "[" + ",".join(["0"] * count) + "]"


async def test_huge_arrays_within_the_limits_are_accepted(shared: Service) -> None:
    async with owner_of(shared) as owner:
        within = zeros(KIB_256 // 2 - 2)  # 256 KiB minus a byte or two of JSON
        raw = json.dumps(PULL)[:-1] + f', "payload": {within}}}'
        response = await post_raw(owner.client, "/infra/jobs", raw)
        assert response.status_code == 202, response.text
        assert response.json()["payload"] == [0] * (KIB_256 // 2 - 2)
        batch = '{"jobs": [' + ", ".join([raw] * 3) + "]}"  # 768 KiB: under 1 MiB
        response = await post_raw(owner.client, "/infra/jobs/batch", batch)
        assert response.status_code == 202, response.text
        assert len(response.json()["jobs"]) == 3


async def test_huge_arrays_beyond_the_limits_are_413_or_400(shared: Service) -> None:
    async with owner_of(shared) as owner:
        before = await snapshot(owner)
        over = json.dumps(PULL)[:-1] + f', "payload": {zeros(KIB_256 // 2 + 1)}}}'
        assert_error(await post_raw(owner.client, "/infra/jobs", over), 413, "payload_too_large")
        batch = '{"jobs": [' + ", ".join([json.dumps(PULL)] * 101) + "]}"
        bad_request(await post_raw(owner.client, "/infra/jobs/batch", batch), "$.jobs")
        huge = '{"jobs": [' + ", ".join([over] * 5) + "]}"  # over 1 MiB
        assert_error(
            await post_raw(owner.client, "/infra/jobs/batch", huge), 413, "payload_too_large"
        )
        steps = [pull_step(f"s{i}", "q") for i in range(51)]
        response = await owner.client.post(
            "/infra/workflows/blueprints", json={**BLUEPRINT, "steps": steps}
        )
        bad_request(response, "$.steps")
        assert await snapshot(owner) == before


@pytest.mark.parametrize("call", WITH_BODY, ids=BODY_IDS)
async def test_an_array_over_a_mebibyte_is_413_on_every_body_route(
    shared: Service, call: Call
) -> None:
    async with owner_of(shared) as owner, caller(owner, call) as client:
        prepared = await call.prepare(owner)
        before = await snapshot(owner)
        raw = zeros(MIB // 2 + 1)
        response = await post_raw(client, call.url(prepared), raw, call.method)
        assert_error(response, 413, "payload_too_large")
        response = await post_raw(client, call.url(prepared), zeros(1000), call.method)
        assert_error(response, 400, "bad_request")  # an array where an object belongs
        assert await snapshot(owner) == before


async def test_a_rendered_step_payload_over_256_kib_fails_the_step(shared: Service) -> None:
    async with owner_of(shared) as owner:
        template = {"twice": ["{{input.text}}", "{{input.text}}"]}
        execution_id = await _started(
            owner, [pull_step("a", "render", template)], text="x" * 200_000
        )
        state = await wait_step(owner.client, execution_id, "a", "failed")
        assert step_of(state, "a")["error"]["code"] == "template_error"
        assert "over" in step_of(state, "a")["error"]["message"]
        assert state["status"] == "failed"


async def test_a_rendered_step_payload_nested_too_deeply_fails_the_step(shared: Service) -> None:
    async with owner_of(shared) as owner:
        template: Any = "{{input.deep}}"
        for _ in range(500):
            template = [template]
        deep: Any = 1
        for _ in range(500):
            deep = [deep]
        blueprint = await create_blueprint(owner.client, [pull_step("a", "deep", template)])
        triggered = await trigger(owner.client, blueprint["id"], {"deep": deep})
        state = await wait_step(owner.client, triggered["execution_id"], "a", "failed")
        assert step_of(state, "a")["error"]["code"] == "template_error"


# ------------------------------------------------------------------------ long strings

JOBS, BLUEPRINTS = "/infra/jobs", "/infra/workflows/blueprints"
LIMITS = [
    # (what, route, limit, path of the field, a body with that value)
    ("job name", JOBS, 256, "$.name", lambda v: {**PULL, "name": v}),
    ("idempotency key", JOBS, 128, "$.idempotency_key", lambda v: {**PULL, "idempotency_key": v}),
    ("queue", JOBS, 128, "$.trigger.queue", lambda v: {"trigger": {"type": "pull", "queue": v}}),
    ("blueprint name", BLUEPRINTS, 256, "$.name", lambda v: {**BLUEPRINT, "name": v}),
    ("description", BLUEPRINTS, 1000, "$.description", lambda v: {**BLUEPRINT, "description": v}),
    (
        "step id",
        BLUEPRINTS,
        128,
        "$.steps[0].id",
        lambda v: {**BLUEPRINT, "steps": [pull_step(v, "q")]},
    ),
]


@pytest.mark.parametrize(
    ("what", "route", "limit", "path", "body"), LIMITS, ids=[x[0] for x in LIMITS]
)
async def test_strings_up_to_their_limit_are_kept_and_longer_ones_are_400(
    shared: Service, what: str, route: str, limit: int, path: str, body: Any
) -> None:
    async with owner_of(shared) as owner:
        # Lengths count characters (code points): a step id must be ASCII, the rest may be emoji.
        char = "s" if what == "step id" else "\U0001f600"
        value = char * limit
        response = await owner.client.post(route, json=body(value))
        assert response.status_code < 300, response.text
        assert json.dumps(value) in json.dumps(response.json()), what
        before = await snapshot(owner)
        bad_request(await owner.client.post(route, json=body(value + char)), path)
        assert await snapshot(owner) == before


async def test_long_strings_elsewhere_are_400(shared: Service) -> None:
    async with owner_of(shared) as owner:
        bp = await create_blueprint(owner.client, [pull_step("a", "long")])
        url = f"/infra/workflows/blueprints/{bp['id']}/trigger"
        bad_request(
            await owner.client.post(url, json={"idempotency_key": "k" * 129}), "$.idempotency_key"
        )
        bad_request(
            await owner.client.post("/infra/jobs/claim", json={"queue": "q" * 129}), "$.queue"
        )
        await create(owner.client, PULL)
        job = await claim(owner.client)
        ack = {"status": "completed", "claim_token": "t" * 257}
        bad_request(
            await owner.client.post(f"/infra/jobs/{job['id']}/ack", json=ack), "$.claim_token"
        )
        bad_request(await owner.client.put("/infra/queues/" + "q" * 129, json={"paused": True}))
        bad_request(await owner.client.get("/infra/jobs?queue=" + "q" * 129))


# ------------------------------------------------------------------------ unicode

LONE = ["\\ud800", "\\udfff", "a\\ud83d", "\\ude00b"]  # JSON escapes of lone surrogates
ODD = [
    "a\u0000b",
    "\u202eevil\u202c",
    "\U0001f600\U0001f4a9",
    "e\u0301",
    "\u00e9",
    "\ufeffbom",
    "\u200b",
]


@pytest.mark.parametrize("lone", LONE)
async def test_lone_surrogates_are_400_in_every_string(shared: Service, lone: str) -> None:
    async with owner_of(shared) as owner:
        bp = await create_blueprint(owner.client, [pull_step("a", "lone")])
        before = await snapshot(owner)
        bad = f'"x{lone}"'
        job = json.dumps(PULL)[:-1]
        for raw in [
            f'{job}, "name": {bad}}}',
            f'{job}, "idempotency_key": {bad}}}',
            f'{job}, "payload": {{"k": {bad}}}}}',
            f'{job}, "payload": {{{bad}: 1}}}}',
            f'{{"trigger": {{"type": "pull", "queue": {bad}}}}}',
        ]:
            bad_request(await post_raw(owner.client, "/infra/jobs", raw))
        blueprint = json.dumps({**BLUEPRINT, "description": "DESC"})
        for target in ['"DESC"', '"surface"', '"a"']:
            raw = blueprint.replace(target, bad, 1)
            bad_request(await post_raw(owner.client, "/infra/workflows/blueprints", raw))
        url = f"/infra/workflows/blueprints/{bp['id']}/trigger"
        bad_request(await post_raw(owner.client, url, f'{{"input_data": {{"k": {bad}}}}}'))
        bad_request(await post_raw(owner.client, url, f'{{"idempotency_key": {bad}}}'))
        assert await snapshot(owner) == before


@pytest.mark.parametrize("text", ODD, ids=[t.encode("unicode_escape").decode() for t in ODD])
async def test_odd_unicode_is_kept_verbatim_and_matched_exactly(shared: Service, text: str) -> None:
    async with owner_of(shared) as owner:
        client = owner.client
        queue = f"q{text}"
        body = {
            "trigger": {"type": "pull", "queue": queue},
            "name": text,
            "idempotency_key": text,
            "payload": {text: [text]},
        }
        job = await create(client, body)
        assert (job["name"], job["idempotency_key"], job["trigger"]["queue"]) == (text, text, queue)
        assert job["payload"] == {text: [text]}
        again = await create(client, body)
        assert again["id"] == job["id"]  # the same key: the same job
        other = await create(client, {**body, "idempotency_key": f"{text}\u0000"})
        assert other["id"] != job["id"]
        await create(client, {**PULL, "trigger": {"type": "pull", "queue": "q"}})
        listed = (await client.get("/infra/jobs", params={"queue": queue})).json()["jobs"]
        assert {j["id"] for j in listed} == {job["id"], other["id"]}
        [claimed] = (await client.post("/infra/jobs/claim", json={"queue": queue})).json()
        assert claimed["payload"] == {text: [text]}
        queues = (await client.get("/infra/queues")).json()["queues"]
        assert queue in [q["name"] for q in queues]
        put = await client.put(f"/infra/queues/{quote(queue, safe='')}", json={"concurrency": 2})
        assert put.status_code == 200 and put.json()["name"] == queue, put.text
        blueprint = await create_blueprint(
            client, [pull_step("a", queue, {"v": "{{input.k}}"})], name=text, description=text
        )
        assert (blueprint["name"], blueprint["description"]) == (text, text)
        triggered = await trigger(client, blueprint["id"], {"k": text}, idempotency_key=text)
        state = await execution(client, triggered["execution_id"])
        assert state["input_data"] == {"k": text} and state["idempotency_key"] == text


@pytest.mark.parametrize("url", ["http://a\u0000b/", "http://a/\u0000", "http://a/\r\nX-Evil: 1"])
async def test_urls_with_control_characters_are_400(shared: Service, url: str) -> None:
    for field in ("handler", "callback_url"):
        body = {"trigger": {"type": "immediate"}, "handler": "http://127.0.0.1:9/", field: url}
        bad_request(await shared.client.post("/infra/jobs", json=body), f"$.{field}")


@pytest.mark.parametrize("step_id", ["\u00e9", "a b", "a\u0000", "\U0001f600", "a.b", "a{{b}}"])
async def test_step_ids_outside_the_allowed_characters_are_400(
    shared: Service, step_id: str
) -> None:
    body = {**BLUEPRINT, "steps": [pull_step(step_id, "q")]}
    bad_request(await shared.client.post("/infra/workflows/blueprints", json=body), "$.steps[0].id")


# ------------------------------------------------------------------------ placeholders in data

SMUGGLED = [
    "{{steps.a.output}}",
    "{{execution.id}}",
    "{{ execution.blueprint_id }}",
    "{{input.other}}",
    "{{failure.error}}",
    "\\{{input.other}}",
    "{{",
    "}}{{",
]


def _after(step_id: str, queue: str) -> Json:
    return pull_step("b", queue, {"got": f"{{{{steps.{step_id}.output}}}}"}, depends_on=[step_id])


async def _started(owner: Owner, steps: list[Json], **input_data: Any) -> str:
    blueprint = await create_blueprint(owner.client, steps)
    return str((await trigger(owner.client, blueprint["id"], input_data))["execution_id"])


async def test_placeholders_in_input_data_stay_literal(shared: Service) -> None:
    async with owner_of(shared) as owner:
        template = {"whole": "{{input.x}}", "inside": "<{{input.x}}>", "other": "{{input.other}}"}
        steps = [pull_step("a", "smuggle", template), _after("a", "smuggle-next")]
        for value in SMUGGLED:
            execution_id = await _started(owner, steps, x=value, other="SECRET")
            job = await claim_one(owner.client, "smuggle")
            assert job["payload"] == {"whole": value, "inside": f"<{value}>", "other": "SECRET"}
            # A step output holding placeholders is data too when the next step uses it.
            body = {"status": "completed", "claim_token": job["claim_token"], "result": value}
            assert (
                await owner.client.post(f"/infra/jobs/{job['id']}/ack", json=body)
            ).status_code == 200
            following = await claim_one(owner.client, "smuggle-next")
            assert following["payload"] == {"got": value}
            assert (await execution(owner.client, execution_id))["input_data"]["x"] == value


# ------------------------------------------------------------------------ handlers aimed inward

INWARD = [
    "http://127.0.0.1:{port}/livez",
    "http://localhost:{port}/",
    "http://127.1:{port}/",
    "http://2130706433:{port}/",  # 127.0.0.1 as one number
    "http://0.0.0.0:{port}/",
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # shared address space
    "http://[fd00::1]/",
]


async def test_handlers_aimed_inward_are_blocked_with_a_public_handler_network(
    service_with: Any, handler: Handler
) -> None:
    async with service_with(handler_network="public") as service:
        port = service.url.rsplit(":", 1)[1]
        urls = [url.format(port=port) for url in INWARD] + [handler.at("/inward")]
        jobs = [
            await create_job(service, trigger={"type": "immediate"}, handler=url, max_attempts=2)
            for url in urls
        ]
        for url, job in zip(urls, jobs, strict=True):
            failed = await wait_job(service, job["id"], "failed", timeout=30)
            assert failed["error"].startswith("handler_blocked"), (url, failed["error"])
            assert failed["attempt"] == 2
            runs = await list_runs(service, job["id"])
            assert all(r["error"].startswith("handler_blocked") for r in runs), url
            assert all(r["handler_status"] is None for r in runs), url
    assert handler.received == []


async def test_handlers_aimed_inward_are_delivered_with_the_default_network(
    shared: Service, handler: Handler
) -> None:
    own = await create_job(
        shared, trigger={"type": "immediate"}, handler=f"{shared.url}/livez", max_attempts=1
    )
    failed = await wait_job(shared, own["id"], "failed")
    assert failed["error"] == "handler returned HTTP 405"  # delivered: the route is GET only
    local = handler.at("/inward").replace("127.0.0.1", "localhost")
    job = await create_job(shared, trigger={"type": "immediate"}, handler=local)
    assert (await wait_job(shared, job["id"], "completed"))["result"] == {"ok": True}


# ------------------------------------------------------------------------ SQL metacharacters

SQLISH = ["'; DROP TABLE jobs; --", "%", "_", '"', "q%", "q_", "\\", "' OR '1'='1", "*", "[a]"]


async def test_sql_metacharacters_are_stored_verbatim_and_filters_match_exactly(
    shared: Service,
) -> None:
    async with owner_of(shared) as owner:
        client = owner.client
        created: dict[str, str] = {}
        for text in SQLISH:
            body = {
                "trigger": {"type": "pull", "queue": text},
                "name": text,
                "idempotency_key": text,
                "payload": {text: text},
            }
            job = await create(client, body)
            assert (job["name"], job["idempotency_key"], job["payload"]) == (
                text,
                text,
                {text: text},
            )
            created[text] = job["id"]
        for text in SQLISH:
            listed = (await client.get("/infra/jobs", params={"queue": text})).json()["jobs"]
            assert [j["id"] for j in listed] == [created[text]], text
            put = await client.put(f"/infra/queues/{quote(text, safe='')}", json={"paused": False})
            assert put.status_code == 200 and put.json()["name"] == text, put.text
            [claimed] = (await client.post("/infra/jobs/claim", json={"queue": text})).json()
            assert claimed["id"] == created[text]
            token = claimed["claim_token"]
            ack = {"status": "failed", "error": text, "retryable": False, "claim_token": token}
            acked = await client.post(f"/infra/jobs/{claimed['id']}/ack", json=ack)
            assert acked.status_code == 200 and acked.json()["error"] == text, acked.text
        names = sorted(
            q["name"] for q in (await client.get("/infra/queues?limit=100")).json()["queues"]
        )
        assert names == sorted(SQLISH)
        for query in ("status", "trigger_type", "queue", "cursor", "limit"):
            for text in SQLISH:
                response = await client.get("/infra/jobs", params={query: text})
                if response.status_code == 200:
                    assert query == "queue", (query, text)
                else:
                    bad_request(response)
        assert len((await client.get("/infra/jobs?limit=100")).json()["jobs"]) == len(SQLISH)


async def test_sql_metacharacters_in_workflows_are_stored_verbatim(shared: Service) -> None:
    async with owner_of(shared) as owner:
        client = owner.client
        text = SQLISH[0] + '%_"\\'
        blueprint = await create_blueprint(
            client, [pull_step("a", text, {"v": "{{input.k}}"})], name=text, description=text
        )
        assert (blueprint["name"], blueprint["description"]) == (text, text)
        triggered = await trigger(
            client, blueprint["id"], {"k": text, text: text}, idempotency_key=text
        )
        job = await claim_one(client, text)
        assert job["payload"] == {"v": text}
        execution_id = triggered["execution_id"]
        listed = await client.get(
            "/infra/workflows/executions", params={"blueprint_id": blueprint["id"]}
        )
        assert [e["id"] for e in listed.json()["executions"]] == [execution_id]
        for value in SQLISH:
            response = await client.get(
                "/infra/workflows/executions", params={"blueprint_id": value}
            )
            assert response.status_code == 200 and response.json()["executions"] == [], value
            bad_request(await client.get("/infra/workflows/executions", params={"status": value}))
        url = f"/infra/workflows/executions/{execution_id}"
        assert (await client.post(f"{url}/pause")).status_code == 200
        resumed = await client.post(f"{url}/resume", json={"reason": text})
        assert resumed.status_code == 200, resumed.text
        bad_request(await client.post(f"{url}/resume", json={"step_id": text}))
        state = await execution(client, execution_id)
        assert state["input_data"] == {"k": text, text: text} and state["idempotency_key"] == text
        events = (await client.get(f"{url}/events?limit=100")).json()["events"]
        assert [e["data"]["reason"] for e in events if e["type"] == "resumed"] == [text]
