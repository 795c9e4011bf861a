"""A first end-to-end check: create, claim, ack over real HTTP."""

from tests.conftest import Handler, Service


async def test_pull_roundtrip(service: Service) -> None:
    created = await service.client.post(
        "/infra/jobs", json={"trigger": {"type": "pull", "queue": "q"}, "payload": {"n": 1}}
    )
    assert created.status_code == 202, created.text
    claimed = (await service.client.post("/infra/jobs/claim", json={"queue": "q"})).json()
    assert [job["id"] for job in claimed] == [created.json()["id"]]
    ack = await service.client.post(
        f"/infra/jobs/{claimed[0]['id']}/ack",
        json={"status": "completed", "result": {"ok": 1}, "claim_token": claimed[0]["claim_token"]},
    )
    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "completed"
    assert ack.json()["result"] == {"ok": 1}


async def test_push_roundtrip(service: Service, handler: Handler) -> None:
    url = handler.script("/h", (200, {"done": True}, 0))
    created = await service.client.post(
        "/infra/jobs", json={"trigger": {"type": "immediate"}, "handler": url, "payload": [1]}
    )
    assert created.status_code == 202, created.text
    [delivery] = await handler.wait_for("/h")
    assert delivery.json() == [1]
    job_id = created.json()["id"]
    for _ in range(200):
        job = (await service.client.get(f"/infra/jobs/{job_id}")).json()
        if job["status"] == "completed":
            break
        import anyio

        await anyio.sleep(0.01)
    assert job["result"] == {"done": True}
