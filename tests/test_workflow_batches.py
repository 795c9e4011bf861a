"""Job messages waiting in a busy execution's mailbox are committed as one batch; a message
that withdraws a job the batch itself created waits for the batch's commit."""

from flowyard.workflows.state import JobFinished, JobStarted
from tests.conftest import Service
from tests.workflow_support import claim, get_job, pull_step, start, wait_step


async def test_a_batch_commits_results_together_and_splits_before_a_withdrawal(
    service: Service,
) -> None:
    client = service.client
    step = {
        **pull_step("m", "batch-q", {"x": "{{item}}"}, max_attempts=1),
        "for_each": "{{input.xs}}",
        "max_concurrency": 2,
    }
    execution_id = await start(client, [step], {"xs": [0, 1, 2, 3]})
    await wait_step(client, execution_id, "m", "running")
    first, second = await claim(client, "batch-q", count=2)
    engine = service.supervisor.workflows
    actor = engine.actors[execution_id]

    # Two starts in one batch: one commit, both items running.
    starts = [
        (JobStarted("m", 1, job["id"], job["workflow"]["item_index"]), None)
        for job in (first, second)
    ]
    outcomes, done = await engine._results(actor, starts)
    assert done == 2 and all(o is actor.state for o in outcomes)
    assert [i.status for i in actor.items["m"]][:2] == ["running", "running"]

    # Item 0 completes (item 2 is queued in its place); item 1 fails for good, which
    # withdraws item 2's job: created by the same batch, so that message waits.
    completed = JobFinished("m", 1, first["id"], "completed", "zero", None, 1, 0)
    failed = JobFinished("m", 1, second["id"], "failed", None, "no", 1, 1)
    outcomes, done = await engine._results(actor, [(completed, None), (failed, None)])
    assert done == 1
    item2 = actor.items["m"][2]
    assert item2.status == "queued" and item2.job_id is not None
    outcomes, done = await engine._results(actor, [(failed, None)])
    assert done == 1
    assert [i.status for i in actor.items["m"]] == ["completed", "failed", "cancelled", "cancelled"]
    assert (await get_job(client, item2.job_id))["status"] == "cancelled"
    state = await wait_step(client, execution_id, "m", "failed")
    assert state["status"] == "failed"
