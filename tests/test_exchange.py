"""``POST /infra/jobs/exchange`` against the real server: acks and the next claim in one call."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

from flowyard.client import AsyncClient, job_ack
from flowyard.storage.projects import ALL_SCOPES, create_key_sync
from tests.conftest import ServerProcess, Service
from tests.job_helpers import claim, create_job, get_job, list_runs
from tests.workflow_support import (
    create_blueprint,
    pull_step,
    trigger,
    wait_status,
)

Json = dict[str, Any]


def ack_of(job: Json, **body: Any) -> Json:
    """One ack of an exchange for a claimed job (completed unless ``status`` says otherwise)."""
    return {"job_id": job["id"], "claim_token": job["claim_token"], "status": "completed", **body}


async def exchange(api: httpx.AsyncClient, body: Any, status: int = 200) -> Json:
    response = await api.post("/infra/jobs/exchange", json=body)
    assert response.status_code == status, response.text
    answer: Json = response.json()
    return answer


async def pull_jobs(service: Service, queue: str, count: int) -> list[Json]:
    return [
        await create_job(service, trigger={"type": "pull", "queue": queue}, payload=n)
        for n in range(count)
    ]


async def test_acks_several_jobs_and_claims_the_next_ones_in_one_call(service: Service) -> None:
    created = await pull_jobs(service, "ex", 5)
    held = await claim(service, "ex", count=3)
    answer = await exchange(
        service.client,
        {
            "acks": [ack_of(job, result={"n": job["payload"]}) for job in held],
            "claim": {"queue": "ex", "count": 10, "visibility_timeout": 60},
        },
    )
    assert answer["acks"] == [{"job_id": job["id"], "ok": True} for job in held]
    assert sorted(job["id"] for job in answer["jobs"]) == sorted(
        job["id"] for job in created if job["id"] not in {h["id"] for h in held}
    )
    for job in answer["jobs"]:  # exactly as claim answers them
        assert job["status"] == "running" and job["claim_token"] and job["claimed_until"]
    for job in held:
        stored = await get_job(service, job["id"])
        assert (stored["status"], stored["result"]) == ("completed", {"n": job["payload"]})


async def test_each_ack_has_its_own_outcome_and_a_refused_one_stops_nothing(
    service: Service,
) -> None:
    await pull_jobs(service, "mixed", 4)
    first, second, third = await claim(service, "mixed", count=3)
    await exchange(service.client, {"acks": [ack_of(first)]})
    answer = await exchange(
        service.client,
        {
            "acks": [
                ack_of(first),  # acked already
                {**ack_of(second), "claim_token": "wrong"},
                ack_of(second, result="two"),
                {**ack_of(third), "job_id": "job_00000000000000000000000000"},
                {**ack_of(third), "status": "done"},  # malformed: refused alone
                ack_of(second),  # acked earlier in this very call
                ack_of(third, status="failed", error={"why": "broken"}),
            ],
            "claim": {"queue": "mixed"},
        },
    )
    codes = [a["error"]["code"] if not a["ok"] else "ok" for a in answer["acks"]]
    assert codes == ["conflict", "conflict", "ok", "not_found", "invalid", "conflict", "ok"]
    assert [a["job_id"] for a in answer["acks"]] == [
        first["id"], second["id"], second["id"], "job_00000000000000000000000000",
        third["id"], second["id"], third["id"],
    ]  # fmt: skip
    invalid = answer["acks"][4]["error"]
    assert invalid["details"][0]["path"] == "$.acks[4].status"
    assert set(answer["acks"][0]["error"]) <= {"code", "message", "details"}
    assert len(answer["jobs"]) == 1  # the claim ran all the same
    assert (await get_job(service, second["id"]))["result"] == "two"
    stored = await get_job(service, third["id"])
    assert (stored["status"], stored["error"]) == ("pending", '{"why":"broken"}')


async def test_ack_only_and_claim_only_calls(service: Service) -> None:
    await pull_jobs(service, "halves", 2)
    got = await exchange(service.client, {"claim": {"queue": "halves"}})
    assert got["acks"] == [] and len(got["jobs"]) == 1  # count defaults to 1, as in claim
    [job] = got["jobs"]
    only = await exchange(service.client, {"acks": [ack_of(job)], "claim": {"queue": "halves",
                                                                          "count": 0}})  # fmt: skip
    assert only == {"acks": [{"job_id": job["id"], "ok": True}], "jobs": []}
    assert await exchange(service.client, {}) == {"acks": [], "jobs": []}
    assert len(await claim(service, "halves", count=5)) == 1  # count 0 claimed nothing


async def test_a_long_poll_returns_when_a_job_becomes_claimable(service: Service) -> None:
    answer: Json = {}

    async def wait() -> None:
        nonlocal answer
        answer = await exchange(service.client, {"claim": {"queue": "later", "wait_seconds": 10}})

    began = time.monotonic()
    with anyio.fail_after(8):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.3)
            [job] = await pull_jobs(service, "later", 1)
    assert [j["id"] for j in answer["jobs"]] == [job["id"]]
    assert time.monotonic() - began < 5


async def test_acks_that_make_steps_ready_are_claimed_in_the_same_call_without_waiting(
    service: Service,
) -> None:
    """A workflow diamond runs to its end on exchange calls alone, none of them waiting."""
    steps = [
        pull_step("A", "dia", {"n": "{{input.n}}"}),
        pull_step("B", "dia", {"a": "{{steps.A.output}}"}, ["A"]),
        pull_step("C", "dia", {"a": "{{steps.A.output}}"}, ["A"]),
        pull_step("D", "dia", {"b": "{{steps.B.output}}", "c": "{{steps.C.output}}"}, ["B", "C"]),
    ]
    blueprint = await create_blueprint(service.client, steps)
    started = await trigger(service.client, blueprint["id"], {"n": 1})
    values = {"A": lambda p: p["n"] + 1, "B": lambda p: p["a"] * 2, "C": lambda p: p["a"] * 3,
              "D": lambda p: p["b"] + p["c"]}  # fmt: skip
    held: list[Json] = []
    seen: list[str] = []
    for _ in range(4):
        acks = [
            ack_of(job, result=values[job["workflow"]["step_id"]](job["payload"])) for job in held
        ]
        began = time.monotonic()
        answer = await exchange(
            service.client, {"acks": acks, "claim": {"queue": "dia", "count": 5,
                                                     "wait_seconds": 10}},
        )  # fmt: skip
        assert time.monotonic() - began < 5  # ready steps end the wait at once
        assert all(a["ok"] for a in answer["acks"])
        held = answer["jobs"]
        seen.append("".join(sorted(j["workflow"]["step_id"] for j in held)))
        if seen[-1] == "D":
            break
    assert seen == ["A", "BC", "D"]  # B and C were acked in one call: one batch, one commit
    done = await exchange(service.client, {"acks": [ack_of(held[0], result=20)]})
    assert done["acks"][0]["ok"]
    state = await wait_status(service.client, started["execution_id"], "completed")
    assert state["result"] == {"A": 2, "B": 4, "C": 6, "D": 20}


async def test_a_failed_ack_that_is_not_retryable_ends_the_job_failed(service: Service) -> None:
    await create_job(service, trigger={"type": "pull", "queue": "dead"}, max_attempts=5)
    [job] = await claim(service, "dead")
    answer = await exchange(
        service.client,
        {"acks": [ack_of(job, status="failed", error="bad input", retryable=False)]},
    )
    assert answer["acks"] == [{"job_id": job["id"], "ok": True}]
    stored = await get_job(service, job["id"])
    assert (stored["status"], stored["attempt"], stored["error"]) == ("failed", 1, "bad input")
    assert [run["status"] for run in await list_runs(service, job["id"])] == ["failed"]


async def test_a_malformed_body_is_400_and_acks_nothing(service: Service) -> None:
    await pull_jobs(service, "bad", 1)
    [job] = await claim(service, "bad")
    good = ack_of(job)
    bodies: list[tuple[Any, str]] = [
        ([good], "$"),
        ({"acks": good}, "$.acks"),
        ({"acks": [good] * 101}, "$.acks"),
        ({"acks": [good], "claims": {"queue": "bad"}}, "$.claims"),
        ({"acks": [{**good, "reslt": 1}]}, "$.acks[0].reslt"),
        ({"acks": [good], "claim": {"queue": "bad", "count": 101}}, "$.claim.count"),
        ({"acks": [good], "claim": {"count": 1}}, "$.claim.queue"),
    ]
    for body, path in bodies:
        answer = await exchange(service.client, body, 400)
        assert answer["code"] == "bad_request" and answer["message"], answer
        assert answer["details"][0]["path"] == path, answer
    response = await service.client.post("/infra/jobs/exchange", content=b"{nope")
    assert response.status_code == 400 and response.json()["code"] == "bad_request"
    stored = await get_job(service, job["id"])
    assert (stored["status"], stored["claimed_until"]) == ("running", job["claimed_until"])
    assert (await exchange(service.client, {"acks": [good]}))["acks"][0]["ok"]


async def test_the_scope_is_jobs_write(service: Service) -> None:
    reader = service.new_key("test", ["jobs:read"])
    async with service.client_for(reader) as api:
        answer = await exchange(api, {"claim": {"queue": "q"}}, 403)
    assert answer["code"] == "forbidden"


async def test_every_ack_of_a_200_survives_kill9(
    tmp_path: Path, server_process: Callable[..., ServerProcess]
) -> None:
    db = str(tmp_path / "exchange.db")
    key = create_key_sync(db, "acks", list(ALL_SCOPES)).key
    server = await anyio.to_thread.run_sync(lambda: server_process(db))
    count = 40
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as api:
        jobs = [{"trigger": {"type": "pull", "queue": "work"}, "payload": n} for n in range(count)]
        assert (await api.post("/infra/jobs/batch", json={"jobs": jobs})).status_code == 202
        held = (await exchange(api, {"claim": {"queue": "work", "count": count}}))["jobs"]
        assert len(held) == count
        answer = await exchange(
            api, {"acks": [ack_of(job, result={"done": job["payload"]}) for job in held]}
        )
    server.kill9()  # right after the 200
    assert all(a["ok"] for a in answer["acks"]) and len(answer["acks"]) == count
    server = await anyio.to_thread.run_sync(lambda: server_process(db))
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as api:
        for job in held:
            stored = (await api.get(f"/infra/jobs/{job['id']}")).json()
            assert (stored["status"], stored["result"]) == ("completed", {"done": job["payload"]})
        assert (await exchange(api, {"claim": {"queue": "work", "count": 100}}))["jobs"] == []
    assert server.terminate() == 0


async def test_the_sdk_exchange_answers_typed_outcomes(service: Service) -> None:
    await pull_jobs(service, "sdk", 3)
    async with AsyncClient(service.url, service.key) as client:
        first = await client.jobs.exchange(queue="sdk", count=2, visibility_timeout=60)
        assert first.acks == [] and len(first.jobs) == 2
        a, b = first.jobs
        assert a.claim_token and b.claim_token
        second = await client.jobs.exchange(
            [
                job_ack(a.id, a.claim_token, result={"ok": 1}),
                job_ack(b.id, "stale", status="failed", error="nope"),
                {"job_id": b.id, "claim_token": b.claim_token, "status": "done"},
            ],
            queue="sdk",
            count=5,
        )  # fmt: skip
        assert [answer.ok for answer in second.acks] == [True, False, False]
        refused = [answer.error for answer in second.acks[1:]]
        assert [getattr(error, "code", None) for error in refused] == ["conflict", "invalid"]
        assert len(second.jobs) == 1
        assert (await client.jobs.get(a.id)).result == {"ok": 1}


async def test_one_executions_steps_acked_together_keep_their_own_outcomes(
    service: Service,
) -> None:
    steps = [
        pull_step("A", "pair", {"n": "{{input.n}}"}),
        pull_step("B", "pair", {"a": "{{steps.A.output}}"}, ["A"]),
        pull_step("C", "pair", {"a": "{{steps.A.output}}"}, ["A"], max_attempts=2),
    ]
    blueprint = await create_blueprint(service.client, steps)
    started = await trigger(service.client, blueprint["id"], {"n": 1})
    [a] = (await exchange(service.client, {"claim": {"queue": "pair"}}))["jobs"]
    got = await exchange(service.client, {"acks": [ack_of(a, result=1)],
                                          "claim": {"queue": "pair", "count": 2}})  # fmt: skip
    b, c = sorted(got["jobs"], key=lambda job: job["workflow"]["step_id"])
    answer = await exchange(
        service.client,
        {
            "acks": [
                ack_of(b, result="b"),
                {**ack_of(c), "claim_token": "stale"},
                ack_of(c, status="failed", error="once"),
                ack_of(b, result="again"),
            ],
            "claim": {"queue": "pair", "count": 2, "wait_seconds": 5},
        },
    )
    codes = [a["error"]["code"] if not a["ok"] else "ok" for a in answer["acks"]]
    assert codes == ["ok", "conflict", "ok", "conflict"]
    [retried] = answer["jobs"]  # C's second attempt, ready at once (retry base 0.05 s)
    assert (retried["workflow"]["step_id"], retried["attempt"]) == ("C", 2)
    assert (await get_job(service, b["id"]))["result"] == "b"
    await exchange(service.client, {"acks": [ack_of(retried, result="c")]})
    state = await wait_status(service.client, started["execution_id"], "completed")
    assert state["result"] == {"A": 1, "B": "b", "C": "c"}
