"""X-Request-Id on the wire: echoed when sane, made fresh otherwise, on every answer, and sent
on to push handlers and webhook receivers."""

import contextlib
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowyard.http.limits import MAX_HEADER_FIELDS, MAX_TARGET
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import Handler, ServerProcess, Service, serve_app
from tests.job_helpers import wait_job
from tests.raw_http import Answer, exchange, request_head
from tests.webhook_support import create_webhook
from tests.workflow_support import claim_one, create_blueprint, pull_step

GENERATED = re.compile(r"^[0-9a-f]{12}-[0-9a-f]+$")


async def get(service: Service, target: str, *headers: str, method: str = "GET") -> Answer:
    auth = f"Authorization: Bearer {service.key}"
    return await exchange(service.url, request_head(method, target, auth, *headers))


async def test_a_sane_id_is_echoed_exactly(service: Service) -> None:
    for sent in ["abc-123", "x" * 128, "0f2e/trace:span=1+2@host_x.y"]:
        answer = await get(service, "/infra/jobs", f"X-Request-Id: {sent}")
        assert answer.status == 200
        assert answer.headers["x-request-id"] == sent


@pytest.mark.parametrize(
    "headers",
    [
        (),
        ("X-Request-Id: " + "x" * 129,),
        ("X-Request-Id: a\tb",),
        ("X-Request-Id: café",),
        ("X-Request-Id: a b",),
        ("X-Request-Id: one", "X-Request-Id: two"),
    ],
    ids=["missing", "too-long", "control", "non-ascii", "space", "twice"],
)
async def test_other_ids_get_a_fresh_one(service: Service, headers: tuple[str, ...]) -> None:
    first = await get(service, "/infra/jobs", *headers)
    second = await get(service, "/infra/jobs", *headers)
    assert first.status == second.status == 200
    assert GENERATED.match(first.headers["x-request-id"]), first.headers
    assert GENERATED.match(second.headers["x-request-id"]), second.headers
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_errors_carry_the_id_too(service: Service) -> None:
    not_found = await get(service, "/infra/nothing-here", "X-Request-Id: r-404")
    assert (not_found.status, not_found.headers["x-request-id"]) == (404, "r-404")
    unknown_job = await get(service, "/infra/jobs/job_nope", "X-Request-Id: r-404b")
    assert (unknown_job.status, unknown_job.headers["x-request-id"]) == (404, "r-404b")
    head = request_head("GET", "/infra/jobs", "Authorization: Bearer nope", "X-Request-Id: r-401")
    unauthorized = await exchange(service.url, head)
    assert (unauthorized.status, unauthorized.headers["x-request-id"]) == (401, "r-401")
    wrong_method = await get(service, "/infra/jobs", "X-Request-Id: r-405", method="DELETE")
    assert (wrong_method.status, wrong_method.headers["x-request-id"]) == (405, "r-405")


async def test_pipelined_requests_keep_their_own_ids(service: Service) -> None:
    auth = f"Authorization: Bearer {service.key}"
    host, _, port = service.url.removeprefix("http://").rpartition(":")
    received = b""
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(
            request_head("GET", "/infra/jobs", auth, "X-Request-Id: first")
            + request_head("GET", "/infra/jobs", auth)
            + request_head("GET", "/readyz", "X-Request-Id: third", "Connection: close")
        )
        with anyio.fail_after(10):
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    received += await stream.receive()
    ids = re.findall(rb"x-request-id: (\S+)\r\n", received)
    assert len(ids) == 3, received
    assert ids[0] == b"first" and GENERATED.match(ids[1].decode()) and ids[2] == b"third"


async def test_refusals_of_the_connection_carry_an_id(service: Service) -> None:
    too_long = await exchange(service.url, request_head("GET", "/" + "a" * (MAX_TARGET + 1)))
    assert too_long.status == 414
    assert GENERATED.match(too_long.headers["x-request-id"])
    fields = [f"X-Filler-{i}: x" for i in range(MAX_HEADER_FIELDS + 1)]
    too_many = await exchange(
        service.url, request_head("GET", "/readyz", "X-Request-Id: r-431", *fields)
    )
    assert (too_many.status, too_many.headers["x-request-id"]) == (431, "r-431")
    control = await exchange(service.url, request_head("GET", "/readyz", "X-Request-Id: a\x01b"))
    assert control.status == 400  # the parser's refusal: a new id, not the one sent
    assert GENERATED.match(control.headers["x-request-id"])
    garbage = await exchange(service.url, b"NOT HTTP AT ALL\r\n\r\n")
    assert garbage.status == 400
    assert GENERATED.match(garbage.headers["x-request-id"])


async def test_a_500_carries_the_id() -> None:
    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        raise RuntimeError("this app fails")

    async with serve_app(failing) as url:
        answer = await exchange(url, request_head("GET", "/", "X-Request-Id: r-500"))
    assert (answer.status, answer.headers["x-request-id"]) == (500, "r-500")


async def test_the_503_of_the_inflight_cap_carries_the_id(
    tmp_path: Path, server_process: Any
) -> None:
    db = str(tmp_path / "flowyard.db")
    key = create_key_sync(db, "cap", list(ALL_SCOPES)).key
    server: ServerProcess = await anyio.to_thread.run_sync(
        lambda: server_process(db, "--max-inflight", "1")
    )
    host, _, port = server.url.removeprefix("http://").rpartition(":")
    held = request_head(
        "POST",
        "/infra/jobs",
        f"Authorization: Bearer {key}",
        "Content-Type: application/json",
        "Content-Length: 100",
    )
    async with await anyio.connect_tcp(host, int(port)) as holder:
        await holder.send(held + b"{")  # the body never ends: the request holds the cap
        with anyio.fail_after(10):
            while True:
                second = await exchange(
                    server.url,
                    request_head(
                        "POST",
                        "/infra/jobs",
                        f"Authorization: Bearer {key}",
                        "X-Request-Id: r-503",
                        "Content-Length: 2",
                    )
                    + b"{}",
                )
                if second.status == 503:
                    break
                await anyio.sleep(0.05)  # the held request had not started yet
    assert second.headers["x-request-id"] == "r-503"


# ----------------------------------------------------------------------- propagation


async def test_a_push_handler_gets_the_creating_requests_id(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/fail-then-ok", (500, {"no": 1}, 0.0), (200, {"ok": True}, 0.0))
    body = {"trigger": {"type": "immediate"}, "handler": url, "max_attempts": 2}
    response = await service.client.post(
        "/infra/jobs", json=body, headers={"X-Request-Id": "create-1"}
    )
    assert response.status_code == 202, response.text
    assert response.headers["x-request-id"] == "create-1"
    first, second = await handler.wait_for("/fail-then-ok", 2)
    # Every attempt of the job sends the id of the request that created it.
    assert first.headers["x-request-id"] == second.headers["x-request-id"] == "create-1"
    await wait_job(service, response.json()["id"], "completed")
    assert service.supervisor.jobs.live.request_ids == {}  # forgotten with the ended job


async def test_a_push_step_gets_the_triggering_requests_id(
    service: Service, handler: Handler
) -> None:
    client = service.client
    url = handler.script("/step", (200, {"done": True}, 0.0))
    steps = [
        pull_step("A", "rid-a"),
        {
            "id": "B",
            "depends_on": ["A"],
            "job_trigger": {"trigger": {"type": "immediate"}, "handler": url},
        },
    ]
    blueprint = await create_blueprint(client, steps)
    triggered = await client.post(
        f"/infra/workflows/blueprints/{blueprint['id']}/trigger",
        json={"input_data": {}},
        headers={"X-Request-Id": "trigger-7"},
    )
    assert triggered.status_code in (200, 201, 202), triggered.text
    job_a = await claim_one(client, "rid-a")
    acked = await client.post(
        f"/infra/jobs/{job_a['id']}/ack",
        json={"status": "completed", "result": {}, "claim_token": job_a["claim_token"]},
        headers={"X-Request-Id": "ack-8"},
    )
    assert acked.status_code == 200, acked.text
    [delivery] = await handler.wait_for("/step")
    assert delivery.headers["x-request-id"] == "trigger-7"  # not the ack's


async def test_a_webhook_receiver_gets_a_request_id(service: Service, handler: Handler) -> None:
    client = service.client
    hook = await create_webhook(client, handler.at("/hook"), topics=["orders.*", "jobs.*"])
    # An event a request publishes: that request's id, on every attempt.
    published = await client.post(
        "/infra/webhooks/publish",
        json={"topic": "orders.shipped", "data": {"n": 1}},
        headers={"X-Request-Id": "publish-1"},
    )
    assert published.status_code in (200, 201, 202), published.text
    [delivery] = await handler.wait_for("/hook")
    assert delivery.headers["x-request-id"] == "publish-1"
    # An event an ack causes: the ack's id.
    created = await client.post("/infra/jobs", json={"trigger": {"type": "pull", "queue": "rh"}})
    assert created.status_code == 202, created.text
    job = await claim_one(client, "rh")
    acked = await client.post(
        f"/infra/jobs/{job['id']}/ack",
        json={"status": "completed", "result": {}, "claim_token": job["claim_token"]},
        headers={"X-Request-Id": "ack-2"},
    )
    assert acked.status_code == 200, acked.text
    completed = (await handler.wait_for("/hook", 2))[1]
    assert completed.json()["topic"] == "jobs.completed"
    assert completed.headers["x-request-id"] == "ack-2"
    # A test delivery is sent inside its own request: that request's id.
    tested = await client.post(
        f"/infra/webhooks/{hook['id']}/test", headers={"X-Request-Id": "testing-1"}
    )
    assert tested.status_code == 200, tested.text
    assert (await handler.wait_for("/hook", 3))[2].headers["x-request-id"] == "testing-1"
    with anyio.fail_after(5):  # forgotten once the outcomes are written
        while service.supervisor.outbox.request_ids:
            await anyio.sleep(0.01)
