"""``/infra/webhooks`` over HTTP: create, list, read, change, delete, test, publish, and the
validation of each."""

import re
from typing import Any

import pytest

from flowyard.billing import JOB_WRITE, READ
from flowyard.signing import verify
from tests.accounts_support import balance_of, set_account, tokens
from tests.api_surface import assert_error
from tests.conftest import Handler, Service
from tests.jobs_support import TIMESTAMP
from tests.webhook_support import create_webhook, deliveries, wait_deliveries

WEBHOOK_ID = re.compile(r"^whk_[0-9A-HJKMNP-TV-Z]{26}$")
NEW = {"name": "a", "url": "http://x.io/a", "topics": ["*"]}
FIELDS = {"id", "name", "url", "topics", "secret", "enabled", "created_at", "updated_at"}


async def test_create_read_list_patch_delete(service: Service) -> None:
    client = service.client
    created = await create_webhook(
        client, "https://example.com/hook", name="orders", topics=["jobs.*", "orders.placed"]
    )
    assert set(created) == FIELDS
    assert WEBHOOK_ID.match(created["id"])
    assert created["enabled"] is True and created["topics"] == ["jobs.*", "orders.placed"]
    assert 16 <= len(created["secret"]) <= 256  # generated
    assert TIMESTAMP.match(created["created_at"]) and created["updated_at"] == created["created_at"]

    read = await client.get(f"/infra/webhooks/{created['id']}")
    assert read.status_code == 200 and read.json() == created  # the secret too

    chosen = await create_webhook(client, "http://example.com/b", secret="s" * 16)
    assert chosen["secret"] == "s" * 16
    listed = await client.get("/infra/webhooks", params={"limit": 1})
    assert listed.status_code == 200
    assert [w["id"] for w in listed.json()["webhooks"]] == [chosen["id"]]  # newest first
    rest = await client.get("/infra/webhooks", params={"cursor": listed.json()["next_cursor"]})
    assert [w["id"] for w in rest.json()["webhooks"]] == [created["id"]]
    assert rest.json()["next_cursor"] is None

    patched = await client.patch(
        f"/infra/webhooks/{created['id']}", json={"enabled": False, "topics": ["*"]}
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["enabled"] is False and body["topics"] == ["*"] and body["name"] == "orders"
    assert body["secret"] == created["secret"]

    deleted = await client.delete(f"/infra/webhooks/{created['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"id": created["id"], "deleted": True}
    gone = await client.get(f"/infra/webhooks/{created['id']}")
    assert_error(gone, 404, "not_found")
    assert_error(await client.delete(f"/infra/webhooks/{created['id']}"), 404, "not_found")


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"name": "", "url": "http://x.io", "topics": ["*"]}, "$.name"),
    ({"name": "n" * 129, "url": "http://x.io", "topics": ["*"]}, "$.name"),
    ({"name": "a", "url": "ftp://x.io", "topics": ["*"]}, "$.url"),
    ({"name": "a", "url": "not a url", "topics": ["*"]}, "$.url"),
    ({"name": "a", "url": "http://x.io", "topics": []}, "$.topics"),
    ({"name": "a", "url": "http://x.io", "topics": ["t"] * 51}, "$.topics"),
    ({"name": "a", "url": "http://x.io", "topics": ["jobs.*", "*.x"]}, "$.topics[1]"),
    ({"name": "a", "url": "http://x.io", "topics": ["Jobs"]}, "$.topics[0]"),
    ({"name": "a", "url": "http://x.io", "topics": ["*"], "secret": "short"}, "$.secret"),
    ({"name": "a", "url": "http://x.io", "topics": ["*"], "secret": "s" * 257}, "$.secret"),
    ({"name": "a", "url": "http://x.io", "topics": ["*"], "enabled": "yes"}, "$.enabled"),
    ({"name": "a", "url": "http://x.io", "topics": ["*"], "extra": 1}, "$.extra"),
    ({"url": "http://x.io", "topics": ["*"]}, "$"),
]


@pytest.mark.parametrize(("body", "path"), BAD_BODIES, ids=[p for _, p in BAD_BODIES])
async def test_invalid_webhooks_are_400_and_change_nothing(
    service: Service, body: dict[str, Any], path: str
) -> None:
    response = await service.client.post("/infra/webhooks", json=body)
    error = assert_error(response, 400, "bad_request")
    assert path in error["message"] or any(d["path"] == path for d in error.get("details", []))
    listed = await service.client.get("/infra/webhooks")
    assert listed.json()["webhooks"] == []


async def test_invalid_patches_are_400_and_change_nothing(service: Service) -> None:
    created = await create_webhook(service.client, "http://x.io/a")
    path = f"/infra/webhooks/{created['id']}"
    for body in ({"url": "gopher://x"}, {"topics": ["a**"]}, {"secret": "x"}, {"nope": 1}):
        assert_error(await service.client.patch(path, json=body), 400, "bad_request")
    assert (await service.client.get(path)).json() == created


async def test_another_projects_webhook_is_404(service: Service) -> None:
    created = await create_webhook(service.client, "http://x.io/a")
    async with service.client_for(service.new_key("elsewhere")) as other:
        for method in ("GET", "PATCH", "DELETE"):
            response = await other.request(method, f"/infra/webhooks/{created['id']}", json={})
            assert_error(response, 404, "not_found")
        path = f"/infra/webhooks/{created['id']}/deliveries"
        assert_error(await other.get(path), 404, "not_found")


async def test_the_test_route_delivers_webhooks_test_now(
    service: Service, handler: Handler
) -> None:
    url = handler.script("/hook", (299, {"pong": True}, 0))
    created = await create_webhook(service.client, url, topics=["jobs.completed"])
    response = await service.client.post(f"/infra/webhooks/{created['id']}/test")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == 299 and answer["response_snippet"] == '{"pong":true}'
    assert answer["duration_ms"] >= 0
    [received] = handler.to("/hook")
    assert received.headers["x-flowyard-topic"] == "webhooks.test"
    assert verify(created["secret"], received.body, received.headers["x-flowyard-signature"])
    assert received.json()["topic"] == "webhooks.test"
    assert await deliveries(service.client, created["id"]) == []  # nothing stored


async def test_the_test_route_reports_a_receiver_that_does_not_answer(service: Service) -> None:
    created = await create_webhook(service.client, "http://127.0.0.1:9/none")
    answer = (await service.client.post(f"/infra/webhooks/{created['id']}/test")).json()
    assert answer["status"] is None and answer["response_snippet"] is None
    assert answer["error"].startswith("connection_error")


async def test_publish_delivers_a_custom_event_to_matching_webhooks(
    service: Service, handler: Handler
) -> None:
    client = service.client
    taken = await create_webhook(client, handler.at("/orders"), topics=["orders.*"])
    await create_webhook(client, handler.at("/jobs"), topics=["jobs.*"])
    await create_webhook(client, handler.at("/off"), topics=["*"], enabled=False)
    response = await client.post(
        "/infra/webhooks/publish", json={"topic": "orders.placed", "data": {"order": 7}}
    )
    assert response.status_code == 202, response.text
    event_id, count = response.json()["event_id"], response.json()["deliveries"]
    assert event_id.startswith("evt_") and count == 1
    [received] = await handler.wait_for("/orders")
    body = received.json()
    assert set(body) == {"id", "topic", "created_at", "project_id", "data"}
    assert body["id"] == event_id and body["topic"] == "orders.placed"
    assert body["project_id"] == service.project_id and body["data"] == {"order": 7}
    assert TIMESTAMP.match(body["created_at"])
    headers = received.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-flowyard-event-id"] == event_id
    assert headers["x-flowyard-topic"] == "orders.placed"
    assert verify(taken["secret"], received.body, headers["x-flowyard-signature"])
    assert not verify("another secret 1234", received.body, headers["x-flowyard-signature"])
    [done] = await wait_deliveries(
        client, taken["id"], lambda found: found and found[0]["status"] == "succeeded"
    )
    assert headers["x-flowyard-delivery-id"] == done["id"]
    assert done["event_id"] == event_id and done["attempts"] == 1 and done["http_status"] == 200
    assert done["response_snippet"] == '{"ok":true}' and done["payload"] == body
    one = await client.get(f"/infra/webhooks/{taken['id']}/deliveries/{done['id']}")
    assert one.status_code == 200 and one.json() == done
    assert handler.to("/jobs") == [] and handler.to("/off") == []


@pytest.mark.parametrize(
    "body",
    [
        {"topic": "jobs.completed"},
        {"topic": "workflows.execution.failed"},
        {"topic": "webhooks.test"},
        {"topic": "Orders"},
        {"topic": ""},
        {"topic": "x" * 129},
        {"topic": "a", "extra": 1},
        {},
    ],
)
async def test_publish_refuses_reserved_and_malformed_topics(
    service: Service, body: dict[str, Any]
) -> None:
    assert_error(
        await service.client.post("/infra/webhooks/publish", json=body), 400, "bad_request"
    )


async def test_a_project_holds_at_most_100_webhooks(service: Service) -> None:
    for n in range(100):
        await create_webhook(service.client, f"http://x.io/{n}")
    refused = await service.client.post(
        "/infra/webhooks", json={"name": "one more", "url": "http://x.io/a", "topics": ["*"]}
    )
    assert_error(refused, 409, "conflict")
    listed = await service.client.get("/infra/webhooks", params={"limit": 100})
    assert len(listed.json()["webhooks"]) == 100 and listed.json()["next_cursor"] is None
    first = listed.json()["webhooks"][-1]["id"]
    assert (await service.client.delete(f"/infra/webhooks/{first}")).status_code == 200
    await create_webhook(service.client, "http://x.io/again")  # room again


async def test_published_data_follows_the_payload_rules(service: Service) -> None:
    await create_webhook(service.client, "http://x.io/a")
    big = {"topic": "orders.placed", "data": "x" * (256 * 1024)}
    assert_error(
        await service.client.post("/infra/webhooks/publish", json=big), 413, "payload_too_large"
    )
    infinite = b'{"topic": "orders.placed", "data": {"n": 1e999}}'
    headers = {"content-type": "application/json"}
    refused = await service.client.post(
        "/infra/webhooks/publish", content=infinite, headers=headers
    )
    assert_error(refused, 400, "bad_request")
    listed = (await service.client.get("/infra/webhooks")).json()["webhooks"]
    deliveries = await service.client.get(f"/infra/webhooks/{listed[0]['id']}/deliveries")
    assert deliveries.json()["deliveries"] == []  # nothing was recorded


async def test_delivery_queries_are_checked(service: Service) -> None:
    created = await create_webhook(service.client, "http://x.io/a")
    path = f"/infra/webhooks/{created['id']}/deliveries"
    for query in ({"status": "done"}, {"limit": "0"}, {"cursor": "bogus"}):
        assert_error(await service.client.get(path, params=query), 400, "bad_request")
    assert_error(await service.client.get(f"{path}/whd_nope"), 404, "not_found")
    assert_error(await service.client.post(f"{path}/whd_nope/retry"), 404, "not_found")


async def test_webhook_writes_cost_a_job_write_and_reads_a_read(service: Service) -> None:
    await set_account(service, balance=JOB_WRITE + READ)
    created = await create_webhook(service.client, "http://x.io/a")
    assert await balance_of(service.client) == tokens(READ)
    assert (await service.client.get(f"/infra/webhooks/{created['id']}")).status_code == 200
    assert await balance_of(service.client) == "0"
    refused = await service.client.post("/infra/webhooks/publish", json={"topic": "orders.placed"})
    assert_error(refused, 402, "insufficient_tokens")
    refused = await service.client.post("/infra/webhooks", json={**NEW, "name": "b"})
    assert_error(refused, 402, "insufficient_tokens")
    await set_account(service, balance=None)
    listed = (await service.client.get("/infra/webhooks")).json()["webhooks"]
    assert [w["id"] for w in listed] == [created["id"]]  # the refused one changed nothing
