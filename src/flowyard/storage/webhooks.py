"""Webhook and delivery rows (the outbox: an event lives in its deliveries): the write
intents and the reads."""

import msgspec

from flowyard.storage.intents import DeleteWebhook, InsertDelivery, PutWebhook, UpdateDelivery
from flowyard.storage.pages import chunked, newest_first, page
from flowyard.storage.port import Store
from flowyard.webhooks.model import Delivery, Webhook

_webhook = msgspec.json.Decoder(Webhook)
_delivery_decoder = msgspec.json.Decoder(Delivery)


def _decode_delivery(data: bytes) -> Delivery:
    """A stored delivery; its ``Raw`` payload copied, so that it does not pin the row's whole
    buffer (pending deliveries stay in memory)."""
    delivery = _delivery_decoder.decode(data)
    return msgspec.structs.replace(delivery, payload=delivery.payload.copy())


def put_webhook(webhook: Webhook) -> PutWebhook:
    """Insert or update a webhook."""
    return PutWebhook(webhook)


def delete_webhook(webhook_id: str) -> DeleteWebhook:
    """Delete a webhook and drop its pending deliveries."""
    return DeleteWebhook(webhook_id)


def insert_delivery(delivery: Delivery) -> InsertDelivery:
    """Record a new delivery."""
    return InsertDelivery(delivery)


def update_delivery(delivery: Delivery) -> UpdateDelivery:
    """Record a delivery's progress (nothing if it was dropped meanwhile)."""
    return UpdateDelivery(delivery)


async def get_webhook(db: Store, project_id: str, webhook_id: str) -> Webhook | None:
    """A webhook of the project, or None."""
    row = await db.fetchone(
        "SELECT doc FROM webhooks WHERE id = ? AND project_id = ?", (webhook_id, project_id)
    )
    return _webhook.decode(row[0]) if row else None


async def list_webhooks(
    db: Store, project_id: str, *, cursor: str | None, limit: int
) -> tuple[list[Webhook], str | None]:
    """A page of the project's webhooks, newest first."""
    sql, params = newest_first(db.cursor_key, "webhooks", {"project_id": project_id}, cursor, limit)
    return page(db.cursor_key, "webhooks", await db.fetchall(sql, params), limit, _webhook.decode)


async def all_webhooks(db: Store) -> list[Webhook]:
    """Every webhook (the subscriptions kept in memory)."""
    return [_webhook.decode(doc) for (doc,) in await db.fetchall("SELECT doc FROM webhooks")]


async def get_delivery(db: Store, webhook_id: str, delivery_id: str) -> Delivery | None:
    """A delivery of the webhook, or None."""
    row = await db.fetchone(
        "SELECT doc FROM webhook_deliveries WHERE id = ? AND webhook_id = ?",
        (delivery_id, webhook_id),
    )
    return _decode_delivery(row[0]) if row else None


async def list_deliveries(
    db: Store, webhook_id: str, *, status: str | None, cursor: str | None, limit: int
) -> tuple[list[Delivery], str | None]:
    """A page of the webhook's deliveries, newest first."""
    filters = {"webhook_id": webhook_id, "status": status}
    scope = "webhook_deliveries"
    sql, params = newest_first(db.cursor_key, scope, filters, cursor, limit)
    return page(db.cursor_key, scope, await db.fetchall(sql, params), limit, _decode_delivery)


async def pending_deliveries(db: Store) -> list[Delivery]:
    """Every pending delivery (re-armed on start)."""
    sql = (
        "SELECT seq, doc FROM webhook_deliveries WHERE status = 'pending' AND seq > ?"
        " ORDER BY seq LIMIT ?"
    )
    return [_decode_delivery(doc) async for doc in chunked(db, sql, [])]
