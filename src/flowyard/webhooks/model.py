"""Webhook, event and delivery records, their views, and what an attempt's answer means.

Records are frozen msgspec Structs stored as JSON (new fields need defaults). Pure: the time
and the backoff's random draw come in as arguments.
"""

from enum import StrEnum
from typing import Any

import msgspec
from msgspec import Raw

from flowyard.clock import rfc3339
from flowyard.jobs.backoff import retry_delay_seconds

MAX_ATTEMPTS = 8
"""Attempts per round; a manual retry of a failed delivery grants one more round."""
TIMEOUT_SECONDS = 10.0
SNIPPET_BYTES = 1024


class DeliveryStatus(StrEnum):
    """Where a delivery is."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Webhook(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A subscription: POST events whose topic matches one of ``topics`` to ``url``."""

    id: str
    project_id: str
    name: str
    url: str
    topics: tuple[str, ...]
    secret: str
    enabled: bool = True
    created_at: int
    updated_at: int


class Delivery(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One event on its way to one webhook (or, with ``callback_url``, a job's notice)."""

    id: str
    webhook_id: str | None
    project_id: str
    event_id: str
    topic: str
    payload: Raw
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    max_attempts: int = MAX_ATTEMPTS
    http_status: int | None = None
    response_snippet: str | None = None
    error: str | None = None
    duration_ms: int | None = None
    next_attempt_at: int | None = None
    created_at: int
    updated_at: int
    callback_url: str | None = None
    job_id: str | None = None  # the job a callback_url notice is about


def event_body(event_id: str, project_id: str, topic: str, created_at: int, data: Any) -> Raw:
    """The JSON every delivery of an event POSTs: ``{id, topic, created_at, project_id, data}``."""
    return Raw(
        msgspec.json.encode(
            {
                "id": event_id,
                "topic": topic,
                "created_at": rfc3339(created_at),
                "project_id": project_id,
                "data": data,
            }
        )
    )


def attempted(
    delivery: Delivery,
    *,
    status: int | None,
    snippet: str | None,
    error: str | None,
    duration_ms: int,
    now: int,
    base_seconds: float,
    draw: float,
) -> Delivery:
    """The delivery after one attempt: succeeded on a 2xx, else retried with exponential
    backoff (as jobs back off) until ``max_attempts``, then failed."""
    attempts = delivery.attempts + 1
    ok = status is not None and 200 <= status < 300
    if ok:
        outcome, next_at = DeliveryStatus.SUCCEEDED, None
    elif attempts >= delivery.max_attempts:
        outcome, next_at = DeliveryStatus.FAILED, None
    else:
        delay = retry_delay_seconds("exponential", attempts, base_seconds, draw)
        outcome, next_at = DeliveryStatus.PENDING, now + int(delay * 1000)
    return msgspec.structs.replace(
        delivery,
        status=outcome,
        attempts=attempts,
        http_status=status,
        response_snippet=snippet,
        error=None if ok else error or f"receiver answered HTTP {status}",
        duration_ms=duration_ms,
        next_attempt_at=next_at,
        updated_at=now,
    )


def retried(delivery: Delivery, now: int) -> Delivery:
    """A failed delivery given one more round of attempts, due now."""
    return msgspec.structs.replace(
        delivery,
        status=DeliveryStatus.PENDING,
        max_attempts=delivery.attempts + MAX_ATTEMPTS,
        next_attempt_at=now,
        updated_at=now,
    )


def webhook_view(webhook: Webhook) -> dict[str, Any]:
    """The webhook as the API shows it (its secret included, as create and get answer)."""
    return {
        "id": webhook.id,
        "name": webhook.name,
        "url": webhook.url,
        "topics": list(webhook.topics),
        "secret": webhook.secret,
        "enabled": webhook.enabled,
        "created_at": rfc3339(webhook.created_at),
        "updated_at": rfc3339(webhook.updated_at),
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    """The delivery as the API shows it."""
    return {
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event_id": delivery.event_id,
        "topic": delivery.topic,
        "payload": delivery.payload,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "http_status": delivery.http_status,
        "response_snippet": delivery.response_snippet,
        "error": delivery.error,
        "duration_ms": delivery.duration_ms,
        "next_attempt_at": rfc3339(delivery.next_attempt_at),
        "created_at": rfc3339(delivery.created_at),
        "updated_at": rfc3339(delivery.updated_at),
    }
