"""``client.webhooks`` on both clients, against a fake transport that answers as DESIGN.md
section 7 documents: the method, path, query and body each call sends, and how the answers
decode."""

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest

from flowyard.client import AsyncClient, Client, Conflict, UnexpectedResponse
from flowyard.client.models import (
    PublishedEvent,
    Webhook,
    WebhookDeleted,
    WebhookDelivery,
    WebhookTest,
)
from tests.sdk_support import Api

HOOK = "whk_01JBWEBHOOK0000000000000000"
DELIVERY = "whd_01JBDELIVERY000000000000000"
WEBHOOK = {
    "id": HOOK,
    "name": "orders",
    "url": "https://example.com/hooks",
    "topics": ["jobs.*", "workflows.execution.completed"],
    "secret": "whsec_0123456789abcdef0123",
    "enabled": True,
    "created_at": "2026-11-23T10:00:00.000Z",
    "updated_at": "2026-11-23T10:00:00.000Z",
}
DELIVERY_VIEW = {
    "id": DELIVERY,
    "webhook_id": HOOK,
    "event_id": "evt_01JBEVENT0000000000000000",
    "topic": "jobs.completed",
    "payload": {
        "id": "evt_01JBEVENT0000000000000000",
        "topic": "jobs.completed",
        "created_at": "2026-11-23T10:00:00.000Z",
        "project_id": "proj_01JB",
        "data": {"job_id": "job_01JB", "name": None, "run_id": "run_01JB", "attempt": 1},
    },
    "status": "failed",
    "attempts": 8,
    "http_status": 500,
    "response_snippet": "oops",
    "error": "http_500",
    "duration_ms": 12,
    "next_attempt_at": None,
    "created_at": "2026-11-23T10:00:00.000Z",
    "updated_at": "2026-11-23T11:00:00.000Z",
}


class Fake:
    """A server that records each request and answers it with ``answer(request)``."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.answer(request)

    @property
    def last(self) -> tuple[str, str, dict[str, str], Any]:
        """Method, raw path, query and JSON body (None without one) of the last request."""
        request = self.seen[-1]
        body = json.loads(request.content) if request.content else None
        return (
            request.method,
            request.url.raw_path.decode().split("?")[0],
            dict(request.url.params),
            body,
        )


@pytest.fixture(params=["sync", "async"])
async def connect(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[[Callable[[httpx.Request], httpx.Response]], tuple[Api, Fake]]]:
    """``connect(answer)``: an :class:`Api` on either client, over a fake server."""
    opened: list[Any] = []

    def make(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[Api, Fake]:
        fake = Fake(answer)
        transport = httpx.MockTransport(fake)
        if request.param == "sync":
            client: Any = Client("http://flowyard.test", "sk_live_k", transport=transport)
        else:
            client = AsyncClient("http://flowyard.test", "sk_live_k", transport=transport)
        opened.append(client)
        return Api(client, request.param == "sync"), fake

    yield make
    for client in opened:
        if isinstance(client, Client):
            client.close()
        else:
            await client.aclose()


def always(status: int, body: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(status, json=body)


async def test_create_sends_only_the_fields_given(connect: Any) -> None:
    api, fake = connect(always(201, WEBHOOK))
    made = await api.webhooks.create("https://example.com/hooks", ("jobs.*",), name="orders")
    assert fake.last == (
        "POST",
        "/infra/webhooks",
        {},
        {"url": "https://example.com/hooks", "topics": ["jobs.*"], "name": "orders"},
    )
    assert made == msgspec.convert(WEBHOOK, Webhook)
    assert made.secret == WEBHOOK["secret"]

    await api.webhooks.create(
        "https://example.com/hooks", ["*"], name="all", secret="s" * 16, enabled=False
    )
    assert fake.last[3] == {
        "url": "https://example.com/hooks",
        "topics": ["*"],
        "name": "all",
        "secret": "s" * 16,
        "enabled": False,
    }


async def test_list_and_iter_follow_cursors(connect: Any) -> None:
    listed = {**WEBHOOK, "id": "whk_01JBSECOND000000000000000"}

    def pages(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("cursor") == "c2":
            return httpx.Response(200, json={"webhooks": [listed], "next_cursor": None})
        return httpx.Response(200, json={"webhooks": [WEBHOOK], "next_cursor": "c2"})

    api, fake = connect(pages)
    page = await api.webhooks.list(limit=1)
    assert fake.last[:3] == ("GET", "/infra/webhooks", {"limit": "1"})
    assert [hook.id for hook in page.items] == [HOOK] and page.next_cursor == "c2"
    every = await api.webhooks.iter()
    assert [dict(r.url.params) for r in fake.seen[1:]] == [
        {"limit": "100"},
        {"limit": "100", "cursor": "c2"},
    ]
    assert [hook.id for hook in every] == [HOOK, listed["id"]]


async def test_get_update_delete(connect: Any) -> None:
    api, fake = connect(always(200, WEBHOOK))
    assert (await api.webhooks.get(HOOK)).id == HOOK
    assert fake.last == ("GET", f"/infra/webhooks/{HOOK}", {}, None)

    await api.webhooks.update(HOOK, enabled=False, topics=("jobs.dead",))
    assert fake.last == (
        "PATCH",
        f"/infra/webhooks/{HOOK}",
        {},
        {"topics": ["jobs.dead"], "enabled": False},
    )

    api, fake = connect(always(200, {"id": HOOK, "deleted": True}))
    assert await api.webhooks.delete(HOOK) == WebhookDeleted(id=HOOK, deleted=True)
    assert fake.last[:2] == ("DELETE", f"/infra/webhooks/{HOOK}")


async def test_test_sends_nothing_and_reads_a_connection_error(connect: Any) -> None:
    answer = {"status": None, "duration_ms": 3, "response_snippet": None, "error": "refused"}
    api, fake = connect(always(200, answer))
    assert await api.webhooks.test(HOOK) == WebhookTest(None, 3, None, "refused")
    assert fake.last == ("POST", f"/infra/webhooks/{HOOK}/test", {}, None)


async def test_publish(connect: Any) -> None:
    api, fake = connect(always(202, {"event_id": "evt_01JB", "deliveries": 2}))
    event = await api.webhooks.publish("orders.shipped", {"order": 7})
    assert event == PublishedEvent(event_id="evt_01JB", deliveries=2)
    assert fake.last == (
        "POST",
        "/infra/webhooks/publish",
        {},
        {"topic": "orders.shipped", "data": {"order": 7}},
    )


async def test_deliveries_filter_page_and_iterate(connect: Any) -> None:
    api, fake = connect(always(200, {"deliveries": [DELIVERY_VIEW], "next_cursor": None}))
    page = await api.webhooks.deliveries(HOOK, status="failed", limit=5)
    assert fake.last[:3] == (
        "GET",
        f"/infra/webhooks/{HOOK}/deliveries",
        {"status": "failed", "limit": "5"},
    )
    assert page.items == [msgspec.convert(DELIVERY_VIEW, WebhookDelivery)]
    assert page.items[0].payload["data"]["job_id"] == "job_01JB"
    assert len(await api.webhooks.iter_deliveries(HOOK)) == 1
    assert fake.last[2] == {"limit": "100"}


async def test_one_delivery_and_its_retry(connect: Any) -> None:
    pending = {**DELIVERY_VIEW, "status": "pending", "next_attempt_at": "2026-11-23T11:00:01.000Z"}
    api, fake = connect(always(200, pending))
    assert (await api.webhooks.delivery(HOOK, DELIVERY)).status == "pending"
    assert fake.last[:2] == ("GET", f"/infra/webhooks/{HOOK}/deliveries/{DELIVERY}")
    retried = await api.webhooks.retry_delivery(HOOK, DELIVERY)
    assert fake.last == ("POST", f"/infra/webhooks/{HOOK}/deliveries/{DELIVERY}/retry", {}, None)
    assert retried.next_attempt_at == "2026-11-23T11:00:01.000Z"

    refused = {"code": "conflict", "message": f"delivery {DELIVERY} is not failed"}
    api, fake = connect(always(409, refused))
    with pytest.raises(Conflict, match="not failed"):
        await api.webhooks.retry_delivery(HOOK, DELIVERY)


async def test_ids_are_one_path_segment_and_answers_decode_exactly(connect: Any) -> None:
    api, fake = connect(always(200, {**WEBHOOK, "surprise": 1}))
    with pytest.raises(UnexpectedResponse, match="surprise"):
        await api.webhooks.get("../../admin")
    assert fake.last[1] == "/infra/webhooks/..%2F..%2Fadmin"
    with pytest.raises(UnexpectedResponse):
        await api.webhooks.delivery("whk_1", "a/b")
    assert fake.last[1] == "/infra/webhooks/whk_1/deliveries/a%2Fb"
