"""The response bodies of the webhooks API (``/infra/webhooks``), for ``/openapi.json``; the
rules of ``http/api_types.py`` hold here too."""

from typing import Any, Literal

from flowyard.http.api_types import Cursor, Timestamp, View


class Webhook(View, frozen=True):
    """A subscription: events whose topic matches one of `topics` are POSTed to `url`,
    signed with `secret`."""

    id: str
    name: str
    url: str
    topics: list[str]
    secret: str
    enabled: bool
    created_at: Timestamp
    updated_at: Timestamp


class WebhookList(View, frozen=True):
    """A page of webhooks, newest first."""

    webhooks: list[Webhook]
    next_cursor: Cursor


class WebhookDeleted(View, frozen=True):
    """A webhook deleted, its pending deliveries dropped."""

    id: str
    deleted: Literal[True]


class WebhookTest(View, frozen=True):
    """What the receiver answered `webhooks.test`: `status` null when it did not answer."""

    status: int | None
    duration_ms: int
    response_snippet: str | None
    error: str | None


class Published(View, frozen=True):
    """A custom event recorded, and how many deliveries it got."""

    event_id: str
    deliveries: int


class Delivery(View, frozen=True):
    """One event on its way to one webhook, with its last attempt's outcome."""

    id: str
    webhook_id: str | None
    event_id: str
    topic: str
    payload: Any
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    http_status: int | None
    response_snippet: str | None
    error: str | None
    duration_ms: int | None
    next_attempt_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class DeliveryList(View, frozen=True):
    """A page of deliveries, newest first."""

    deliveries: list[Delivery]
    next_cursor: Cursor
