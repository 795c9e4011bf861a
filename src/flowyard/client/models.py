"""The typed answers of :class:`flowyard.client.Client`.

Every object is the response Struct the server's OpenAPI document is generated from
(``flowyard.http.api_types``), so the client and the documented schema cannot drift apart.
They decode exactly (an unknown field is an error), so use a client of the same Flowyard
version as the server. This module adds what only the client needs: ``Page``, the trigger
answer with its replay flag, the type names of request arguments, and the webhook answers
(written from the contract, DESIGN.md section 7, field for field, on the same exact base).
"""

import functools
from collections.abc import Mapping
from typing import Any, Generic, Literal, TypeVar

import msgspec

from flowyard.http.api_types import (
    Blueprint,
    BlueprintSummary,
    Cancelled,
    ClaimedJob,
    CreatedKey,
    Event,
    Execution,
    ExecutionStarted,
    ExecutionStep,
    Job,
    KeyRecord,
    Paused,
    Project,
    ProjectJob,
    ProjectStats,
    Queue,
    Resumed,
    Run,
    Stats,
    TokenBalance,
    TokenUsage,
    View,
    WhoAmI,
)
from flowyard.workflows.state import ExecutionStatus

T = TypeVar("T")

UNSET = msgspec.UNSET
"""Leave a field out of a PUT, PATCH or resume body (None sends null, e.g. to clear a limit)."""
Unset = msgspec.UnsetType
Body = Mapping[str, Any]
"""A request body given as a plain dict."""
JobStatusName = Literal["pending", "running", "completed", "failed", "cancelled", "scheduled"]
TriggerName = Literal["immediate", "delayed", "scheduled", "queue", "pull"]
ExecutionStatusName = Literal[
    "running", "paused", "completed", "failed", "compensated", "cancelled"
]
DeliveryStatusName = Literal["pending", "succeeded", "failed"]

__all__ = [
    "Blueprint",
    "BlueprintSummary",
    "Cancelled",
    "ClaimedJob",
    "CreatedKey",
    "Event",
    "Execution",
    "ExecutionStarted",
    "ExecutionStep",
    "Job",
    "KeyRecord",
    "Page",
    "Paused",
    "Project",
    "ProjectJob",
    "ProjectStats",
    "PublishedEvent",
    "Queue",
    "Resumed",
    "Run",
    "Stats",
    "TokenBalance",
    "TokenUsage",
    "Triggered",
    "Webhook",
    "WebhookDeleted",
    "WebhookDelivery",
    "WebhookTest",
    "WhoAmI",
]


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a list: its items and the cursor of the next page (None: the last page)."""

    items: list[T]
    next_cursor: str | None = None


class Triggered(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a workflow trigger; ``replayed`` when an idempotency key matched."""

    execution_id: str
    blueprint_id: str
    status: ExecutionStatus
    started_at: str
    replayed: bool = False


class Webhook(View, frozen=True):
    """A subscription: events whose topic matches one of ``topics`` are POSTed to ``url``,
    signed with ``secret`` (see :func:`flowyard.verify`)."""

    id: str
    name: str
    url: str
    topics: list[str]
    """Exact topics, ``*``, or prefixes ending in ``.*`` such as ``jobs.*``."""
    enabled: bool
    created_at: str
    updated_at: str
    secret: str | msgspec.UnsetType = msgspec.UNSET
    """Returned by create and get; an answer that leaves it out leaves it unset."""


class WebhookDeleted(View, frozen=True):
    """The answer to a delete; the webhook's pending deliveries are dropped with it."""

    id: str
    deleted: bool


class WebhookDelivery(View, frozen=True):
    """One event sent to one webhook, with the outcome of its latest attempt."""

    id: str
    webhook_id: str
    event_id: str
    topic: str
    payload: Any
    """The body POSTed: ``{id, topic, created_at, project_id, data}``."""
    status: DeliveryStatusName
    attempts: int
    http_status: int | None
    """The receiver's status of the latest attempt; None before one, or when none came."""
    response_snippet: str | None
    """The first 1 KiB of the receiver's latest answer."""
    duration_ms: int | None
    next_attempt_at: str | None
    created_at: str
    updated_at: str


class WebhookTest(View, frozen=True):
    """The outcome of sending topic ``webhooks.test`` to a webhook now."""

    status: int | None
    """The receiver's HTTP status; None when no answer came (a connection error)."""
    duration_ms: int
    response_snippet: str | None


class PublishedEvent(View, frozen=True):
    """The answer to a publish: the event's id and how many deliveries it was given (one per
    enabled webhook whose topics match)."""

    event_id: str
    deliveries: int


def page_type(key: str, item: Any) -> type[msgspec.Struct]:
    """A Struct that decodes ``{"<key>": [item...], "next_cursor": ...}`` (other keys ignored)."""
    return _page_type(key, item)


@functools.cache
def _page_type(key: str, item: Any) -> type[msgspec.Struct]:
    return msgspec.defstruct(
        f"{key.title()}Page",
        [(key, list[item]), ("next_cursor", str | None, None)],
        frozen=True,
    )
