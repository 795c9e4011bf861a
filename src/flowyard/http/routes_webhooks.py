"""``/infra/webhooks``: subscriptions, their delivery history, tests, custom events, retries."""

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowyard.http.body import query_choice, query_int, query_str, read_json, read_no_fields
from flowyard.http.context import caller, charge_read
from flowyard.http.respond import json_response
from flowyard.http.schemas import PublishBody, WebhookBody, WebhookPatch
from flowyard.storage import webhooks as store
from flowyard.webhooks.model import DeliveryStatus, delivery_view, webhook_view

READ, WRITE = "webhooks:read", "webhooks:write"
STATUSES = frozenset(s.value for s in DeliveryStatus)


async def create_webhook(request: Request) -> Response:
    runtime, key = await caller(request, WRITE)
    body = await read_json(request, WebhookBody)
    webhook = await runtime.webhooks.create(
        key.project_id, body.name, body.url, body.topics, body.secret, body.enabled
    )
    return json_response(webhook_view(webhook), 201)


async def list_webhooks(request: Request) -> Response:
    runtime, key = await caller(request, READ)
    webhooks, next_cursor = await store.list_webhooks(
        runtime.db,
        key.project_id,
        cursor=query_str(request, "cursor", 512),
        limit=query_int(request, "limit", 25, 1, 100),
    )
    charge_read(request, runtime, key.project_id)
    return json_response(
        {"webhooks": [webhook_view(w) for w in webhooks], "next_cursor": next_cursor}
    )


async def get_webhook(request: Request) -> Response:
    runtime, key = await caller(request, READ)
    webhook = await runtime.webhooks.require(key.project_id, request.path_params["webhook_id"])
    charge_read(request, runtime, key.project_id)
    return json_response(webhook_view(webhook))


async def patch_webhook(request: Request) -> Response:
    runtime, key = await caller(request, WRITE)
    webhook = await runtime.webhooks.require(key.project_id, request.path_params["webhook_id"])
    patch = await read_json(request, WebhookPatch)
    changes = {
        field: value
        for field, value in msgspec.structs.asdict(patch).items()
        if value is not msgspec.UNSET
    }
    return json_response(webhook_view(await runtime.webhooks.patch(webhook, changes)))


async def delete_webhook(request: Request) -> Response:
    runtime, key = await caller(request, WRITE)
    webhook = await runtime.webhooks.require(key.project_id, request.path_params["webhook_id"])
    await runtime.webhooks.delete(webhook)
    return json_response({"id": webhook.id, "deleted": True})


async def test_webhook(request: Request) -> Response:
    runtime, key = await caller(request, WRITE)
    webhook = await runtime.webhooks.require(key.project_id, request.path_params["webhook_id"])
    await read_no_fields(request)
    sent = await runtime.webhooks.test(webhook)
    return json_response(
        {
            "status": sent.status,
            "duration_ms": sent.duration_ms,
            "response_snippet": sent.snippet,
            "error": sent.error,
        }
    )


async def publish(request: Request) -> Response:
    runtime, key = await caller(request, WRITE)
    body = await read_json(request, PublishBody)
    event_id, count = await runtime.webhooks.publish(key.project_id, body.topic, body.data)
    return json_response({"event_id": event_id, "deliveries": count}, 202)


async def list_deliveries(request: Request) -> Response:
    runtime, key = await caller(request, READ)
    webhook = await runtime.webhooks.require(key.project_id, request.path_params["webhook_id"])
    deliveries, next_cursor = await store.list_deliveries(
        runtime.db,
        webhook.id,
        status=query_choice(request, "status", STATUSES),
        cursor=query_str(request, "cursor", 512),
        limit=query_int(request, "limit", 25, 1, 100),
    )
    charge_read(request, runtime, key.project_id)
    return json_response(
        {"deliveries": [delivery_view(d) for d in deliveries], "next_cursor": next_cursor}
    )


async def get_delivery(request: Request) -> Response:
    runtime, key = await caller(request, READ)
    webhook = await runtime.webhooks.require(key.project_id, request.path_params["webhook_id"])
    delivery = await runtime.webhooks.delivery(webhook, request.path_params["delivery_id"])
    charge_read(request, runtime, key.project_id)
    return json_response(delivery_view(delivery))


async def retry_delivery(request: Request) -> Response:
    runtime, key = await caller(request, WRITE)
    webhook = await runtime.webhooks.require(key.project_id, request.path_params["webhook_id"])
    await runtime.webhooks.delivery(webhook, request.path_params["delivery_id"])  # 404 first
    await read_no_fields(request)
    delivery = await runtime.webhooks.retry(webhook, request.path_params["delivery_id"])
    return json_response(delivery_view(delivery))


_ONE = "/infra/webhooks/{webhook_id}"
routes = [
    Route("/infra/webhooks", create_webhook, methods=["POST"]),
    Route("/infra/webhooks", list_webhooks, methods=["GET"]),
    Route("/infra/webhooks/publish", publish, methods=["POST"]),
    Route(_ONE, get_webhook, methods=["GET"]),
    Route(_ONE, patch_webhook, methods=["PATCH"]),
    Route(_ONE, delete_webhook, methods=["DELETE"]),
    Route(f"{_ONE}/test", test_webhook, methods=["POST"]),
    Route(f"{_ONE}/deliveries", list_deliveries, methods=["GET"]),
    Route(f"{_ONE}/deliveries/{{delivery_id}}", get_delivery, methods=["GET"]),
    Route(f"{_ONE}/deliveries/{{delivery_id}}/retry", retry_delivery, methods=["POST"]),
]
