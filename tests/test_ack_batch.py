"""``POST /infra/jobs/ack``: several acks in one call, each settled as if posted alone."""

from typing import Any

import msgspec

from flowyard.http.api_types import AckResults
from tests.conftest import Service
from tests.job_helpers import claim, create_job, get_job, list_runs
from tests.workflow_support import claim_one, start, wait_status

Json = dict[str, Any]


def pull(queue: str, **fields: Any) -> Json:
    return {"trigger": {"type": "pull", "queue": queue}, **fields}


async def ack_many(service: Service, *acks: Json) -> list[Json]:
    response = await service.client.post("/infra/jobs/ack", json={"acks": list(acks)})
    assert response.status_code == 200, response.text
    msgspec.json.decode(response.content, type=AckResults)  # the documented shape
    results: list[Json] = response.json()["results"]
    assert len(results) == len(acks)
    return results


def outcome(job: Json, status: str = "completed", **fields: Any) -> Json:
    return {"job_id": job["id"], "claim_token": job["claim_token"], "status": status, **fields}


async def test_each_ack_of_a_batch_is_recorded(service: Service) -> None:
    for index in range(3):
        await create_job(service, **pull("batch", payload=index))
    first, second, third = await claim(service, "batch", count=3)
    results = await ack_many(
        service,
        outcome(first, result={"n": 1}),
        outcome(second, "failed", error="boom", retryable=False),
        outcome(third, result=[3]),
    )
    assert [r["status"] for r in results] == [200, 200, 200]
    assert all(r["error"] is None for r in results)
    assert results[0]["job"]["status"] == "completed" and results[0]["job"]["result"] == {"n": 1}
    assert results[1]["job"]["status"] == "failed" and results[1]["job"]["error"] == "boom"
    assert (await get_job(service, third["id"]))["result"] == [3]
    [run] = await list_runs(service, second["id"])
    assert run["status"] == "failed" and run["error"] == "boom"


async def test_a_refused_ack_does_not_hold_back_the_others(service: Service) -> None:
    await create_job(service, **pull("mixed"))
    await create_job(service, **pull("mixed"))
    good, stale = await claim(service, "mixed", count=2)
    results = await ack_many(
        service,
        {**outcome(stale), "claim_token": "not-the-token"},
        outcome(good, result="ok"),
        {**outcome(good), "job_id": "job_00000000000000000000000000"},
    )
    assert [r["status"] for r in results] == [409, 200, 404]
    assert results[0]["error"]["code"] == "conflict" and results[0]["job"] is None
    assert results[2]["error"]["code"] == "not_found"
    assert (await get_job(service, good["id"]))["status"] == "completed"
    assert (await get_job(service, stale["id"]))["status"] == "running"
    again = await ack_many(service, outcome(good))  # acked already: as a single ack would be
    assert again[0]["status"] == 409


async def test_a_bad_batch_is_refused_whole(service: Service) -> None:
    await create_job(service, **pull("whole"))
    [job] = await claim(service, "whole")
    bodies: list[Any] = [
        {"acks": []},
        {"acks": [outcome(job)] * 101},
        {"acks": [{**outcome(job), "status": "done"}]},
        {"acks": [outcome(job), {"claim_token": "x", "status": "completed"}]},
        {"acks": [outcome(job), {**outcome(job), "job_id": ""}]},
    ]
    for body in bodies:
        response = await service.client.post("/infra/jobs/ack", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["code"] == "bad_request"
    too_big = outcome(job, result="x" * (256 * 1024))
    response = await service.client.post("/infra/jobs/ack", json={"acks": [too_big]})
    assert response.status_code == 413, response.text
    assert response.json()["details"][0]["path"] == "$.acks[0].result"
    assert (await get_job(service, job["id"]))["status"] == "running"


async def test_a_batch_of_step_acks_moves_each_execution_on(service: Service) -> None:
    steps = [
        {"id": "a", "job_trigger": {"trigger": {"type": "pull", "queue": "wf-batch"}}},
        {
            "id": "b",
            "depends_on": ["a"],
            "job_trigger": {"trigger": {"type": "pull", "queue": "wf-batch"}},
            "payload_template": {"from_a": "{{steps.a.output.n}}"},
        },
    ]
    executions = [await start(service.client, steps, {}) for _ in range(3)]
    firsts = [await claim_one(service.client, "wf-batch") for _ in executions]
    results = await ack_many(service, *(outcome(j, result={"n": i}) for i, j in enumerate(firsts)))
    assert [r["status"] for r in results] == [200, 200, 200]
    seconds = [await claim_one(service.client, "wf-batch") for _ in executions]
    assert sorted(j["payload"]["from_a"] for j in seconds) == [0, 1, 2]
    await ack_many(service, *(outcome(j, result="done") for j in seconds))
    for execution_id in executions:
        done = await wait_status(service.client, execution_id, "completed")
        assert done["result"]["b"] == "done"
