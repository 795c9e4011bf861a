"""The SDK on for_each steps: item counts on the step, the item list and its pages."""

from flowyard.client.models import ItemCounts, StepItem
from tests.sdk_support import Api


async def test_items_of_a_map_through_the_sdk(api: Api) -> None:
    step = {
        "id": "m",
        "job_trigger": {"trigger": {"type": "pull", "queue": "sdk-map"}},
        "for_each": "{{input.xs}}",
        "max_concurrency": 2,
        "payload_template": {"x": "{{item}}"},
    }
    blueprint = await api.workflows.create_blueprint({"name": "sdk-map", "steps": [step]})
    assert blueprint.steps[0].for_each == "{{input.xs}}"
    assert blueprint.steps[0].max_concurrency == 2
    started = await api.workflows.trigger(blueprint.id, {"xs": ["a", "b", "c"]})
    jobs = await api.jobs.claim("sdk-map", count=5, wait_seconds=2)
    assert [j.workflow.item_index for j in jobs if j.workflow] == [0, 1]
    for job in jobs:
        await api.jobs.ack(job.id, job.claim_token, result=job.payload["x"].upper())
    [last] = await api.jobs.claim("sdk-map", count=5, wait_seconds=2)
    await api.jobs.ack(last.id, last.claim_token, result="C")
    done = await api.workflows.wait_for_execution(started.execution_id, timeout=10)
    assert done.status == "completed" and done.result == {"m": ["A", "B", "C"]}
    [m] = done.steps
    assert m.items == ItemCounts(total=3, completed=3, failed=0, running=0, queued=0, cancelled=0)

    page = await api.workflows.items(started.execution_id, "m", limit=2)
    assert [i.index for i in page.items] == [0, 1] and page.next_cursor is not None
    assert all(isinstance(i, StepItem) for i in page.items)
    every = await api.workflows.iter_items(started.execution_id, "m", limit=2)
    assert [(i.index, i.status, i.output) for i in every] == [
        (0, "completed", "A"),
        (1, "completed", "B"),
        (2, "completed", "C"),
    ]
    assert [i.job_id for i in every] == [*(j.id for j in jobs), last.id]
