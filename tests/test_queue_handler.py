"""A push queue's default handler: `queue` jobs and steps without a handler of their own wait,
pending, until their queue has one, and are then delivered to it; the seed's own example
blueprint runs as printed."""

from pathlib import Path
from typing import Any

import anyio

from tests.conftest import Handler, Service, fresh_db, running_service
from tests.job_helpers import create_job, get_job, list_runs, wait_job
from tests.jobs_support import assert_invalid
from tests.workflow_support import create_blueprint, execution, step_of, trigger, wait_status

# The seed's example (workflows-api.txt, "Create Workflow Blueprint"), as it is printed.
ORDER_FULFILLMENT: dict[str, Any] = {
    "name": "order-fulfillment",
    "steps": [
        {
            "id": "charge",
            "job_trigger": {"trigger": {"type": "queue", "queue": "payments"}},
            "payload_template": {"order_id": "{{input.order_id}}"},
        },
        {
            "id": "ship",
            "depends_on": ["charge"],
            "job_trigger": {"trigger": {"type": "queue", "queue": "shipping"}},
            "payload_template": {
                "order_id": "{{input.order_id}}",
                "charge_id": "{{steps.charge.output.charge_id}}",
            },
        },
    ],
}


def queued(queue: str, **fields: Any) -> dict[str, Any]:
    return {"trigger": {"type": "queue", "queue": queue}, **fields}


async def put_queue(service: Service, name: str, **body: Any) -> dict[str, Any]:
    response = await service.client.put(f"/infra/queues/{name}", json=body)
    assert response.status_code == 200, response.text
    queue: dict[str, Any] = response.json()
    return queue


async def queue_view(service: Service, name: str) -> dict[str, Any]:
    response = await service.client.get("/infra/queues")
    assert response.status_code == 200, response.text
    [found] = [q for q in response.json()["queues"] if q["name"] == name]
    return dict(found)


async def settled(service: Service) -> None:
    """Let every delivery that could start, start (the handlers are in this process)."""
    await anyio.wait_all_tasks_blocked()


async def test_a_queue_handler_is_set_shown_and_cleared(service: Service, handler: Handler) -> None:
    url = handler.at("/default")
    assert (await queue_view_or_none(service, "mail")) is None
    shown = await put_queue(service, "mail", handler=url)
    assert shown["handler"] == url
    assert (await queue_view(service, "mail"))["handler"] == url
    # Other settings leave it alone; null clears it.
    assert (await put_queue(service, "mail", concurrency=2))["handler"] == url
    cleared = await put_queue(service, "mail", handler=None)
    assert cleared["handler"] is None and cleared["concurrency"] == 2


async def queue_view_or_none(service: Service, name: str) -> dict[str, Any] | None:
    response = await service.client.get("/infra/queues")
    found = [q for q in response.json()["queues"] if q["name"] == name]
    return dict(found[0]) if found else None


async def test_a_bad_queue_handler_is_400_and_changes_nothing(service: Service) -> None:
    await put_queue(service, "mail", handler="http://127.0.0.1:9/keep")
    for bad in ("ftp://files.example/x", "not a url", 7, "http://" + "a" * 2050):
        response = await service.client.put("/infra/queues/mail", json={"handler": bad})
        assert_invalid(response, "$.handler")
    assert (await queue_view(service, "mail"))["handler"] == "http://127.0.0.1:9/keep"


async def test_a_queue_job_without_handler_waits_until_its_queue_has_one(
    service: Service, handler: Handler
) -> None:
    job = await create_job(service, **queued("payments", payload={"n": 1}))
    assert job["handler"] is None and job["status"] == "pending"
    await settled(service)
    assert (await get_job(service, job["id"]))["status"] == "pending"
    view = await queue_view(service, "payments")
    assert view["depth"] == 1 and view["handler"] is None and view["running"] == 0
    assert await list_runs(service, job["id"]) == []
    # A job of the same queue with a handler of its own is not held up.
    own = await create_job(service, **queued("payments", handler=handler.at("/own")))
    await handler.wait_for("/own")
    await wait_job(service, own["id"], "completed")
    # Setting the queue's handler delivers the waiting job to it.
    url = handler.script("/payments", (200, {"charge_id": "ch_1"}, 0))
    await put_queue(service, "payments", handler=url)
    [delivery] = await handler.wait_for("/payments")
    assert delivery.json() == {"n": 1}
    assert delivery.headers["x-flowyard-job-id"] == job["id"]
    done = await wait_job(service, job["id"], "completed")
    assert done["result"] == {"charge_id": "ch_1"}
    assert done["handler"] is None  # the job still names none: the queue's is used
    assert (await queue_view(service, "payments"))["depth"] == 0


async def test_jobs_created_while_the_queue_has_a_handler_go_straight_to_it(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/mail", (200, {"sent": True}, 0))
    await put_queue(service, "mail", handler=url)
    job = await create_job(service, **queued("mail"))
    await handler.wait_for("/mail")
    assert (await wait_job(service, job["id"], "completed"))["result"] == {"sent": True}
    # Without it again, the next job waits.
    await put_queue(service, "mail", handler=None)
    waiting = await create_job(service, **queued("mail"))
    await settled(service)
    assert (await get_job(service, waiting["id"]))["status"] == "pending"
    assert len(handler.to("/mail")) == 1


async def test_the_queue_handler_survives_a_restart(tmp_path: Path, handler: Handler) -> None:
    url = handler.script("/later", (200, {"ok": 1}, 0))
    db = fresh_db(tmp_path)
    async with running_service(tmp_path, db=db) as service:
        await put_queue(service, "later", handler=url, paused=True)
        job = await create_job(service, **queued("later"))
    async with running_service(tmp_path, db=db) as service:
        assert (await queue_view(service, "later"))["handler"] == url
        await put_queue(service, "later", paused=False)
        await handler.wait_for("/later")
        await wait_job(service, job["id"], "completed")


async def test_the_seed_order_fulfillment_blueprint_runs_to_completed(
    service: Service, handler: Handler
) -> None:
    response = await service.client.post("/infra/workflows/blueprints", json=ORDER_FULFILLMENT)
    assert response.status_code == 200, response.text
    blueprint = response.json()
    started = await trigger(service.client, blueprint["id"], {"order_id": "o-42"})
    execution_id = started["execution_id"]
    # No queue handler yet: the first step's job waits, pending, in its queue.
    state = await execution(service.client, execution_id)
    charge_job = step_of(state, "charge")["job_id"]
    await settled(service)
    assert (await get_job(service, charge_job))["status"] == "pending"
    assert (await queue_view(service, "payments"))["depth"] == 1
    payments = handler.script("/payments", (200, {"charge_id": "ch_42"}, 0))
    shipping = handler.script("/shipping", (200, {"tracking_number": "PW-1"}, 0))
    await put_queue(service, "payments", handler=payments)
    await put_queue(service, "shipping", handler=shipping)
    done = await wait_status(service.client, execution_id, "completed")
    assert done["result"] == {
        "charge": {"charge_id": "ch_42"},
        "ship": {"tracking_number": "PW-1"},
    }
    [charge] = handler.to("/payments")
    [ship] = handler.to("/shipping")
    assert charge.json() == {"order_id": "o-42"}
    assert ship.json() == {"order_id": "o-42", "charge_id": "ch_42"}


async def test_a_step_with_its_own_handler_in_a_queue_keeps_it(
    service: Service, handler: Handler
) -> None:
    own = handler.script("/own", (200, {"v": 1}, 0))
    step = {"id": "a", "job_trigger": {**queued("q"), "handler": own}}
    blueprint = await create_blueprint(service.client, [step])
    await put_queue(service, "q", handler=handler.at("/default"))
    started = await trigger(service.client, blueprint["id"], {})
    await wait_status(service.client, started["execution_id"], "completed")
    assert len(handler.to("/own")) == 1 and handler.to("/default") == []
