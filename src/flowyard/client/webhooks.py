"""``client.webhooks``: subscriptions to events, custom events, and the delivery history.

A webhook receives the events whose topic matches one of its patterns as signed POSTs; the
receiver checks them with :func:`flowyard.verify` and deduplicates by event id (delivery is
at least once). Every call is described once here and run by either client.
"""

from collections.abc import Sequence
from typing import Any

import msgspec

from flowyard.client.core import Call, query, returns, returns_page, segment
from flowyard.client.models import (
    UNSET,
    DeliveryStatusName,
    Page,
    PublishedEvent,
    Unset,
    Webhook,
    WebhookDeleted,
    WebhookDelivery,
    WebhookTest,
)
from flowyard.client.namespace import Mode, Namespace, endpoint, paginate

ROOT = "/infra/webhooks"


def _path(webhook_id: str, *rest: str) -> str:
    return "/".join([ROOT, segment(webhook_id), *rest])


def _delivery_path(webhook_id: str, delivery_id: str, *rest: str) -> str:
    return _path(webhook_id, "deliveries", segment(delivery_id), *rest)


def _fields(**values: Any) -> dict[str, Any]:
    """A body without the fields left unset, so the server keeps or defaults them."""
    return {name: value for name, value in values.items() if value is not UNSET}


class Webhooks(Namespace[Mode]):
    """``/infra/webhooks``: webhooks, ``test``, ``publish``, deliveries and their retry."""

    @endpoint
    def create(
        self,
        url: str,
        topics: Sequence[str],
        *,
        name: str,
        secret: str | Unset = UNSET,
        enabled: bool | Unset = UNSET,
    ) -> Call[Webhook]:
        """Subscribe ``url`` to ``topics`` (exact topics, ``*`` or prefixes like ``jobs.*``).

        Left out, ``secret`` is generated and ``enabled`` is true; the answer holds the secret
        the receiver verifies with.
        """
        body = _fields(url=url, topics=list(topics), name=name, secret=secret, enabled=enabled)
        return Call("POST", ROOT, returns(Webhook), body=body)

    @endpoint
    def list(self, *, limit: int = 25, cursor: str | None = None) -> Call[Page[Webhook]]:
        """One page of the project's webhooks, newest first."""
        params = query(limit=limit, cursor=cursor)
        return Call("GET", ROOT, returns_page("webhooks", Webhook), params)

    iter = paginate(list)
    """Every webhook, newest first, following cursors."""

    @endpoint
    def get(self, webhook_id: str) -> Call[Webhook]:
        """One webhook, with its secret."""
        return Call("GET", _path(webhook_id), returns(Webhook))

    @endpoint
    def update(
        self,
        webhook_id: str,
        *,
        name: str | Unset = UNSET,
        url: str | Unset = UNSET,
        topics: Sequence[str] | Unset = UNSET,
        secret: str | Unset = UNSET,
        enabled: bool | Unset = UNSET,
    ) -> Call[Webhook]:
        """Change the fields given (PATCH); the others stay as they are."""
        listed: list[str] | Unset = UNSET
        if not isinstance(topics, msgspec.UnsetType):
            listed = list(topics)
        body = _fields(name=name, url=url, topics=listed, secret=secret, enabled=enabled)
        return Call("PATCH", _path(webhook_id), returns(Webhook), body=body)

    @endpoint
    def delete(self, webhook_id: str) -> Call[WebhookDeleted]:
        """Delete a webhook; its pending deliveries are dropped."""
        return Call("DELETE", _path(webhook_id), returns(WebhookDeleted))

    @endpoint
    def test(self, webhook_id: str) -> Call[WebhookTest]:
        """Send topic ``webhooks.test`` to the webhook now; the receiver's status (None on a
        connection error), how long it took and the start of its answer."""
        return Call("POST", _path(webhook_id, "test"), returns(WebhookTest))

    @endpoint
    def publish(self, topic: str, data: Any = None) -> Call[PublishedEvent]:
        """Publish an event of a custom topic (``[a-z0-9_.-]``, 1..128 characters, not under
        ``jobs.``, ``workflows.`` or ``webhooks.``) to every enabled webhook it matches."""
        body = {"topic": topic, "data": data}
        return Call("POST", f"{ROOT}/publish", returns(PublishedEvent), body=body)

    @endpoint
    def deliveries(
        self,
        webhook_id: str,
        *,
        status: DeliveryStatusName | None = None,
        limit: int = 25,
        cursor: str | None = None,
    ) -> Call[Page[WebhookDelivery]]:
        """One page of a webhook's deliveries, newest first (only those in ``status``)."""
        params = query(status=status, limit=limit, cursor=cursor)
        parse = returns_page("deliveries", WebhookDelivery)
        return Call("GET", _path(webhook_id, "deliveries"), parse, params)

    iter_deliveries = paginate(deliveries)
    """Every delivery of a webhook that matches, newest first."""

    @endpoint
    def delivery(self, webhook_id: str, delivery_id: str) -> Call[WebhookDelivery]:
        """One delivery, with its payload and the outcome of its latest attempt."""
        return Call("GET", _delivery_path(webhook_id, delivery_id), returns(WebhookDelivery))

    @endpoint
    def retry_delivery(self, webhook_id: str, delivery_id: str) -> Call[WebhookDelivery]:
        """Give a ``failed`` delivery one more round of attempts (409 unless failed)."""
        path = _delivery_path(webhook_id, delivery_id, "retry")
        return Call("POST", path, returns(WebhookDelivery))
