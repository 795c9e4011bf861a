"""Pull workers that misbehave: die holding leases, ack twice, ack late, ack someone else's job,
heartbeat after their lease ran out. A refused call is 409 ``conflict`` and changes nothing.
"""

from typing import Any

import anyio
import httpx

from tests.conftest import Service
from tests.job_helpers import ack, claim, create_job, get_job, list_runs, wait_job
from tests.workflow_support import (
    claim_one,
    events,
    execution,
    pull_step,
    start,
    step_of,
    wait_execution,
    wait_status,
)

Json = dict[str, Any]


def pull(queue: str, **fields: Any) -> Json:
    return {"trigger": {"type": "pull", "queue": queue}, **fields}


def assert_conflict(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == "conflict" and body["message"], body


async def state_of(service: Service, job_id: str) -> tuple[Json, list[Json]]:
    """The job and its runs: what a refused call must leave untouched."""
    return await get_job(service, job_id), await list_runs(service, job_id)


async def heartbeat(service: Service, job: Json, **body: Any) -> httpx.Response:
    payload = {"claim_token": job["claim_token"], **body}
    return await service.client.post(f"/infra/jobs/{job['id']}/heartbeat", json=payload)


# ------------------------------------------------------------------------ a worker dies


async def test_a_dead_workers_leases_expire_and_another_worker_finishes_the_jobs(
    service: Service,
) -> None:
    created = [await create_job(service, **pull("dies", max_attempts=3)) for _ in range(3)]
    held = await claim(service, "dies", count=3, visibility_timeout=1)
    assert {job["id"] for job in held} == {job["id"] for job in created}
    # The worker dies: no ack, no heartbeat. Another one long-polls and gets every job back.
    taken: list[Json] = []
    with anyio.fail_after(30):
        while len(taken) < 3:
            taken += await claim(service, "dies", count=3, wait_seconds=5)
    assert {job["id"] for job in taken} == {job["id"] for job in created}
    assert all(job["attempt"] == 2 for job in taken)
    assert not {job["claim_token"] for job in taken} & {job["claim_token"] for job in held}
    for job in taken:
        await ack(service, job, status="completed", result={"by": "second"})
    for job in held:  # the first worker comes back to life: too late
        assert_conflict(await ack(service, job, status="completed", result={"by": "first"}))
    for job in created:
        done = await get_job(service, job["id"])
        assert done["status"] == "completed" and done["result"] == {"by": "second"}
        assert done["attempt"] == 2 and done["error"] is None
        second, first = await list_runs(service, job["id"])
        assert first["status"] == "failed" and first["error"].startswith("lease_expired")
        assert second["status"] == "completed" and second["error"] is None


# ------------------------------------------------------------------------ acking twice


async def test_a_second_ack_is_409_and_the_first_result_stays(service: Service) -> None:
    job = await create_job(service, **pull("twice"))
    [claimed] = await claim(service, "twice")
    first = await ack(service, claimed, status="completed", result={"n": 1})
    assert first.status_code == 200, first.text
    before = await state_of(service, job["id"])
    for body in (
        {"status": "completed", "result": {"n": 1}},  # the very same ack, retried
        {"status": "completed", "result": {"n": 2}},
        {"status": "failed", "error": "changed my mind", "retryable": False},
    ):
        assert_conflict(await ack(service, claimed, **body))
    assert await state_of(service, job["id"]) == before
    assert before[0]["result"] == {"n": 1}


async def test_two_acks_at_once_only_one_wins(service: Service) -> None:
    job = await create_job(service, **pull("race", max_attempts=3))
    [claimed] = await claim(service, "race")
    answers: dict[str, httpx.Response] = {}

    async def send(status: str, **body: Any) -> None:
        answers[status] = await ack(service, claimed, status=status, **body)

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: send("completed", result="done"))
        tg.start_soon(lambda: send("failed", error="boom", retryable=False))
    codes = sorted(response.status_code for response in answers.values())
    assert codes == [200, 409], {k: v.text for k, v in answers.items()}
    winner = next(status for status, r in answers.items() if r.status_code == 200)
    stored, [run] = await state_of(service, job["id"])
    assert stored["status"] == run["status"] == winner
    assert stored["attempt"] == 1


# ------------------------------------------------------------------------ acking too late


async def test_an_ack_after_the_lease_ran_out_is_409_and_the_job_was_retried(
    service_with: Any,
) -> None:
    # A long backoff keeps the retried job pending while the late ack arrives.
    async with service_with(retry_base_seconds=60) as service:
        job = await create_job(service, **pull("late", max_attempts=2))
        [claimed] = await claim(service, "late", visibility_timeout=1)
        pending = await wait_job(service, job["id"], "pending", timeout=20)
        assert pending["attempt"] == 1 and pending["error"].startswith("lease_expired")
        before = await state_of(service, job["id"])
        assert_conflict(await ack(service, claimed, status="completed", result="late"))
        assert_conflict(await heartbeat(service, claimed, visibility_timeout=60))
        assert await state_of(service, job["id"]) == before
        [run] = before[1]
        assert run["status"] == "failed" and run["error"].startswith("lease_expired")


async def test_an_ack_after_the_last_lease_ran_out_leaves_the_job_failed(
    service: Service,
) -> None:
    job = await create_job(service, **pull("last", max_attempts=1))
    [claimed] = await claim(service, "last", visibility_timeout=1)
    failed = await wait_job(service, job["id"], "failed", timeout=20)
    assert failed["error"].startswith("lease_expired")
    before = await state_of(service, job["id"])
    assert_conflict(await ack(service, claimed, status="completed", result="late"))
    assert await state_of(service, job["id"]) == before
    assert await claim(service, "last") == []


async def test_a_heartbeat_after_expiry_does_not_revive_the_lease(service: Service) -> None:
    job = await create_job(service, **pull("hb-late", max_attempts=2))
    [first] = await claim(service, "hb-late", visibility_timeout=1)
    [second] = await claim(service, "hb-late", visibility_timeout=60, wait_seconds=10)
    assert second["id"] == job["id"] and second["attempt"] == 2
    before = await state_of(service, job["id"])
    assert_conflict(await heartbeat(service, first, visibility_timeout=3600))
    assert await state_of(service, job["id"]) == before
    assert before[0]["claimed_until"] == second["claimed_until"]
    # The current holder's heartbeat still works, and its ack decides the job.
    assert (await heartbeat(service, second, visibility_timeout=60)).status_code == 200
    assert (await ack(service, second, status="completed", result=2)).status_code == 200
    assert (await get_job(service, job["id"]))["result"] == 2


# ------------------------------------------------------------------------ someone else's job


async def test_acking_another_workers_job_is_409_and_changes_nothing(service: Service) -> None:
    one = await create_job(service, **pull("mine"))
    two = await create_job(service, **pull("mine"))
    [a] = await claim(service, "mine")
    [b] = await claim(service, "mine")
    assert {a["id"], b["id"]} == {one["id"], two["id"]}
    before = [await state_of(service, job["id"]) for job in (a, b)]
    crossed = {**b, "claim_token": a["claim_token"]}  # worker A acks B's job with its token
    assert_conflict(await ack(service, crossed, status="completed", result="stolen"))
    assert_conflict(await heartbeat(service, crossed, visibility_timeout=600))
    forged = {**b, "claim_token": "' OR 1=1; --"}
    assert_conflict(await ack(service, forged, status="completed"))
    empty = await ack(service, {**b, "claim_token": ""}, status="completed")
    assert empty.status_code == 400, empty.text  # not a token at all: a bad body
    assert [await state_of(service, job["id"]) for job in (a, b)] == before
    for job, result in ((a, "a"), (b, "b")):
        assert (await ack(service, job, status="completed", result=result)).status_code == 200
        assert (await get_job(service, job["id"]))["result"] == result


async def test_acking_another_projects_job_is_404(service: Service) -> None:
    job = await create_job(service, **pull("theirs"))
    [claimed] = await claim(service, "theirs")
    other_key = await anyio.to_thread.run_sync(lambda: service.new_key("faults-other"))
    async with service.client_for(other_key) as other:
        body = {"status": "completed", "claim_token": claimed["claim_token"]}
        response = await other.post(f"/infra/jobs/{job['id']}/ack", json=body)
    assert response.status_code == 404, response.text
    assert (await get_job(service, job["id"]))["status"] == "running"


# ------------------------------------------------------------------------ workflow steps


async def test_a_late_ack_of_a_superseded_step_attempt_changes_nothing(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("a", "wf-late", max_attempts=2),
        pull_step("b", "wf-late-next", {"from_a": "{{steps.a.output}}"}, depends_on=["a"]),
    ]
    execution_id = await start(client, steps)
    first = await claim_one(client, "wf-late", visibility_timeout=1)
    second = await claim_one(client, "wf-late", wait=10)  # after the first lease ran out
    assert second["id"] == first["id"] and second["attempt"] == 2
    # The superseded attempt answers before the current one: refused, the step still runs.
    assert_conflict(await ack(service, first, status="completed", result="stale"))
    running = await execution(client, execution_id)
    assert step_of(running, "a")["status"] == "running"
    assert step_of(running, "a")["output"] is None
    assert (await ack(service, second, status="completed", result="fresh")).status_code == 200
    following = await claim_one(client, "wf-late-next", wait=10)
    assert following["payload"] == {"from_a": "fresh"}
    # ... and after it: still refused, still nothing changes.
    history = await events(client, execution_id)
    assert_conflict(await ack(service, first, status="failed", error="stale", retryable=False))
    state = await execution(client, execution_id)
    assert step_of(state, "a")["status"] == "completed"
    assert step_of(state, "a")["output"] == "fresh"
    assert state["result"] == {"a": "fresh"}
    assert await events(client, execution_id) == history
    completed = [e for e in history if e["type"] == "step_completed" and e["step_id"] == "a"]
    assert len(completed) == 1


async def test_an_ack_of_a_step_job_replaced_by_resume_changes_nothing(service: Service) -> None:
    client = service.client
    execution_id = await start(client, [pull_step("a", "wf-resumed", max_attempts=1)])
    old = await claim_one(client, "wf-resumed")
    assert (await ack(service, old, status="failed", error="boom")).status_code == 200
    await wait_status(client, execution_id, "failed")
    resumed = await client.post(
        f"/infra/workflows/executions/{execution_id}/resume", json={"step_id": "a"}
    )
    assert resumed.status_code == 200, resumed.text
    new = await claim_one(client, "wf-resumed", wait=10)
    assert new["id"] != old["id"]
    history = await events(client, execution_id)
    assert_conflict(await ack(service, old, status="completed", result="from the old job"))
    state = await execution(client, execution_id)
    assert step_of(state, "a")["status"] == "running"
    assert step_of(state, "a")["job_id"] == new["id"]
    assert await events(client, execution_id) == history
    assert (await ack(service, new, status="completed", result="new")).status_code == 200
    done = await wait_execution(client, execution_id, lambda s: s["status"] == "completed")
    assert done["result"] == {"a": "new"}


# ------------------------------------------------------------------------ queue settings


async def test_configuring_a_pull_queue_leaves_its_waiting_jobs_to_workers(
    service: Service,
) -> None:
    """Unpausing or limiting a queue wakes push delivery: a pull job must not be posted."""
    job = await create_job(service, **pull("configured"))
    for settings in ({"concurrency": 2}, {"paused": True}, {"paused": False}):
        response = await service.client.put("/infra/queues/configured", json=settings)
        assert response.status_code == 200, response.text
    [claimed] = await claim(service, "configured", wait_seconds=5)
    assert claimed["id"] == job["id"] and claimed["attempt"] == 1
    [run] = await list_runs(service, job["id"])
    assert run["status"] == "running" and run["error"] is None


async def test_pull_and_push_jobs_sharing_a_queue_name_keep_to_their_own_side(
    service: Service,
) -> None:
    """A worker never claims a push job, and a waiting pull job never holds up a delivery."""
    pulled = await create_job(service, **pull("shared", priority=9))
    pushed = await create_job(
        service,
        trigger={"type": "queue", "queue": "shared"},
        handler="http://127.0.0.1:9/nobody-listens",
        max_attempts=1,
        priority=1,
    )
    claimed = await claim(service, "shared", count=10, wait_seconds=1)
    assert [job["id"] for job in claimed] == [pulled["id"]]
    delivered = await wait_job(service, pushed["id"], "failed")
    [run] = await list_runs(service, delivered["id"])
    assert run["status"] == "failed" and run["error"], run
    acked = await ack(service, claimed[0], status="completed")
    assert acked.status_code == 200 and acked.json()["status"] == "completed", acked.text
