"""Workflows end to end over real HTTP: data flowing between steps, fan-out/in, catch, templates.

Every step's job is done by a real pull worker (claim and ack over HTTP) or a real push handler.
"""

from typing import Any

from tests.conftest import Handler, Service
from tests.workflow_support import (
    WorkFailed,
    ack,
    claim_one,
    events,
    execution,
    get_job,
    pull_step,
    queue_jobs,
    start,
    statuses,
    step_of,
    wait_status,
    wait_step,
    workers,
)

ORDER_STEPS: list[dict[str, Any]] = [
    pull_step("charge", "payments", {"order_id": "{{input.order_id}}"}),
    pull_step(
        "ship",
        "shipping",
        {"order_id": "{{input.order_id}}", "charge_id": "{{steps.charge.output.charge_id}}"},
        depends_on=["charge"],
    ),
]


async def test_order_fulfillment(service: Service) -> None:
    client = service.client
    seen: dict[str, list[dict[str, Any]]] = {"payments": [], "shipping": []}

    def charge(job: dict[str, Any]) -> Any:
        seen["payments"].append(job)
        return {"charge_id": f"ch_{job['payload']['order_id']}", "amount": 1999}

    def ship(job: dict[str, Any]) -> Any:
        seen["shipping"].append(job)
        return {"tracking": "TRK-1", "charge_seen": job["payload"]["charge_id"]}

    execution_id = await start(
        client, ORDER_STEPS, {"order_id": "ord_123"}, name="order-fulfillment"
    )
    async with workers(client, {"payments": charge, "shipping": ship}):
        state = await wait_status(client, execution_id, "completed")

    [charge_job] = seen["payments"]
    [ship_job] = seen["shipping"]
    assert charge_job["payload"] == {"order_id": "ord_123"}
    assert ship_job["payload"] == {"order_id": "ord_123", "charge_id": "ch_ord_123"}
    assert charge_job["workflow"] == {"execution_id": execution_id, "step_id": "charge"}
    assert ship_job["workflow"] == {"execution_id": execution_id, "step_id": "ship"}

    assert state["error"] is None
    assert state["input_data"] == {"order_id": "ord_123"}
    assert state["completed_at"] is not None
    assert state["result"] == {
        "charge": {"charge_id": "ch_ord_123", "amount": 1999},
        "ship": {"tracking": "TRK-1", "charge_seen": "ch_ord_123"},
    }
    assert [s["step_id"] for s in state["steps"]] == ["charge", "ship"]
    for step, job in (("charge", charge_job), ("ship", ship_job)):
        got = step_of(state, step)
        assert got["status"] == "completed"
        assert got["job_id"] == job["id"]
        assert got["attempt"] == 1
        assert got["output"] == state["result"][step]
        assert got["error"] is None and got["caught_by"] is None
        assert got["started_at"] is not None and got["completed_at"] is not None
        assert (await get_job(client, job["id"]))["status"] == "completed"


async def test_diamond_with_a_push_step(service: Service, handler: Handler) -> None:
    client = service.client
    url = handler.script("/b", (200, {"from": "b", "items": [1, 2]}, 0.0))
    steps = [
        pull_step("A", "dia-a", {"n": "{{input.n}}"}),
        {
            "id": "B",
            "depends_on": ["A"],
            "job_trigger": {"trigger": {"type": "immediate"}, "handler": url},
            "payload_template": {"a": "{{steps.A.output}}"},
        },
        pull_step("C", "dia-c", {"a_value": "{{steps.A.output.value}}"}, depends_on=["A"]),
        pull_step(
            "D",
            "dia-d",
            {"b": "{{steps.B.output}}", "c": "{{steps.C.output.c}}"},
            depends_on=["B", "C"],
        ),
    ]
    execution_id = await start(client, steps, {"n": 7})

    job_a = await claim_one(client, "dia-a")
    assert job_a["payload"] == {"n": 7}
    # Nothing downstream of A exists before A completes.
    assert await queue_jobs(client, "dia-c") == []
    assert handler.to("/b") == []
    await ack(client, job_a, {"value": 14})

    # A's completion fans out: B is pushed to the handler, C is claimable.
    [delivery] = await handler.wait_for("/b")
    assert delivery.json() == {"a": {"value": 14}}
    job_c = await claim_one(client, "dia-c")
    assert job_c["payload"] == {"a_value": 14}
    await wait_step(client, execution_id, "B", "completed")
    state = await execution(client, execution_id)
    assert delivery.headers["x-flowyard-job-id"] == step_of(state, "B")["job_id"]
    assert step_of(state, "B")["output"] == {"from": "b", "items": [1, 2]}
    # D waits for C as well.
    assert step_of(state, "D")["status"] == "pending"
    assert await queue_jobs(client, "dia-d") == []
    await ack(client, job_c, {"c": "sea"})

    job_d = await claim_one(client, "dia-d")
    assert job_d["payload"] == {"b": {"from": "b", "items": [1, 2]}, "c": "sea"}
    await ack(client, job_d, {"done": True})
    state = await wait_status(client, execution_id, "completed")
    assert set(state["result"]) == {"A", "B", "C", "D"}
    assert state["result"]["B"] == {"from": "b", "items": [1, 2]}
    assert len(handler.to("/b")) == 1
    assert len(await queue_jobs(client, "dia-d")) == 1  # D queued once, not once per parent
    log = await events(client, execution_id)
    assert [e["step_id"] for e in log if e["type"] == "step_queued"].count("D") == 1


async def test_shipment_failure_runs_the_refund(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("charge", "cat-pay", {"order_id": "{{input.order_id}}"}),
        pull_step(
            "ship",
            "cat-ship",
            {"charge_id": "{{steps.charge.output.charge_id}}"},
            depends_on=["charge"],
            catch="refund",
            max_attempts=1,
        ),
        pull_step("notify", "cat-notify", {"t": "{{steps.ship.output}}"}, depends_on=["ship"]),
        pull_step(
            "refund",
            "cat-refund",
            {
                "why": "refund because: {{failure.error}}",
                "failed_step": "{{failure.step_id}}",
                "code": "{{failure.code}}",
                "job": "{{failure.job_id}}",
                "attempt": "{{failure.attempt}}",
                "charge_id": "{{steps.charge.output.charge_id}}",
            },
        ),
    ]
    execution_id = await start(client, steps, {"order_id": "o9"})
    refunds: list[dict[str, Any]] = []

    def no_courier(job: dict[str, Any]) -> Any:
        raise WorkFailed("no courier available")

    def refund_it(job: dict[str, Any]) -> Any:
        refunds.append(job)
        return {"refunded": True}

    fns = {
        "cat-pay": lambda job: {"charge_id": "ch_9"},
        "cat-ship": no_courier,
        "cat-refund": refund_it,
    }
    async with workers(client, fns):
        state = await wait_status(client, execution_id, "compensated")

    ship = step_of(state, "ship")
    assert ship["status"] == "failed"
    assert ship["caught_by"] == "refund"
    assert ship["error"] == {"code": "job_failed", "message": "no courier available"}
    assert statuses(state) == {
        "charge": "completed",
        "ship": "failed",
        "notify": "skipped",
        "refund": "completed",
    }
    [refund] = refunds
    assert refund["payload"] == {
        "why": "refund because: no courier available",
        "failed_step": "ship",
        "code": "job_failed",
        "job": ship["job_id"],
        "attempt": 1,
        "charge_id": "ch_9",
    }
    assert state["error"] is None
    assert state["result"] == {"charge": {"charge_id": "ch_9"}, "refund": {"refunded": True}}
    assert await queue_jobs(client, "cat-notify") == []  # skipped: never got a job
    kinds = [(e["type"], e["step_id"]) for e in await events(client, execution_id)]
    assert ("caught", "ship") in kinds
    assert ("step_skipped", "notify") in kinds
    assert kinds[-1] == ("compensated", None)


async def test_templates_keep_types_interpolate_and_escape(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("emit", "tpl-emit"),
        pull_step(
            "use",
            "tpl-use",
            {
                "num": "{{steps.emit.output.n}}",
                "obj": "{{ steps.emit.output.obj }}",
                "second": "{{steps.emit.output.obj.b[1]}}",
                "flag": "{{steps.emit.output.flag}}",
                "text": "n={{steps.emit.output.n}} obj={{steps.emit.output.obj}} s={{input.s}}",
                "literal": "\\{{input.s}} is {{input.s}}",
                "nested": ["{{input.list}}", {"id": "{{execution.id}}"}],
                "fixed": 3,
            },
            depends_on=["emit"],
        ),
    ]
    execution_id = await start(client, steps, {"s": "hi", "list": [1, "two"]})
    emit = await claim_one(client, "tpl-emit")
    await ack(client, emit, {"n": 42, "obj": {"a": "x y", "b": [1, 2.5]}, "flag": False})
    use = await claim_one(client, "tpl-use")
    assert use["payload"] == {
        "num": 42,
        "obj": {"a": "x y", "b": [1, 2.5]},
        "second": 2.5,
        "flag": False,
        "text": 'n=42 obj={"a":"x y","b":[1,2.5]} s=hi',
        "literal": "{{input.s}} is hi",
        "nested": [[1, "two"], {"id": execution_id}],
        "fixed": 3,
    }
    await ack(client, use, None)
    state = await wait_status(client, execution_id, "completed")
    assert state["result"]["use"] is None


async def test_unresolvable_path_fails_the_step_with_template_error(service: Service) -> None:
    client = service.client
    steps = [
        pull_step("emit", "tpe-emit"),
        pull_step("bad", "tpe-bad", {"x": "{{steps.emit.output.missing.deep}}"}, ["emit"]),
        pull_step("after", "tpe-after", None, ["bad"]),
        pull_step("side", "tpe-side", {"n": "{{steps.emit.output.n}}"}, ["emit"]),
    ]
    execution_id = await start(client, steps)
    emit = await claim_one(client, "tpe-emit")
    await ack(client, emit, {"n": 1})
    # The independent branch still runs.
    side = await claim_one(client, "tpe-side")
    assert side["payload"] == {"n": 1}
    await ack(client, side, "ok")
    state = await wait_status(client, execution_id, "failed")
    bad = step_of(state, "bad")
    assert bad["status"] == "failed"
    assert bad["job_id"] is None
    assert bad["error"]["code"] == "template_error"
    assert "steps.emit.output.missing.deep" in bad["error"]["message"]
    assert state["error"]["code"] == "template_error"
    assert statuses(state) == {
        "emit": "completed",
        "bad": "failed",
        "after": "pending",
        "side": "completed",
    }
    assert await queue_jobs(client, "tpe-bad") == []
    assert await queue_jobs(client, "tpe-after") == []
