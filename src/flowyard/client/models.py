"""The typed answers of :class:`flowyard.client.Client`.

Every object is the response Struct the server's OpenAPI document is generated from
(``flowyard.http.api_types``), so the client and the documented schema cannot drift apart.
They decode exactly (an unknown field is an error), so use a client of the same Flowyard
version as the server. This module adds what only the client needs: ``Page``, the trigger
and signal answers with their replay flag, and the type names of request arguments.
"""

import functools
from collections.abc import Mapping
from typing import Any, Generic, Literal, TypeVar

import msgspec

from flowyard.http.api_admin_types import (
    Cluster,
    ClusterNode,
    CreatedKey,
    KeyRecord,
    Project,
    ProjectJob,
    ProjectStats,
    ShardCounts,
    Stats,
)
from flowyard.http.api_schedule_types import Schedule, ScheduleDeleted
from flowyard.http.api_types import (
    AckAnswer,
    AckError,
    Blueprint,
    BlueprintSummary,
    Cancelled,
    ClaimedJob,
    Event,
    Exchanged,
    Execution,
    ExecutionStarted,
    ExecutionStep,
    ItemCounts,
    Job,
    ParentStep,
    Paused,
    Queue,
    Resumed,
    Run,
    StepItem,
    TokenBalance,
    TokenUsage,
    WhoAmI,
)
from flowyard.http.api_webhook_types import Delivery as WebhookDelivery
from flowyard.http.api_webhook_types import Published as PublishedEvent
from flowyard.http.api_webhook_types import Webhook, WebhookDeleted, WebhookTest
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
    "AckAnswer",
    "AckError",
    "Blueprint",
    "BlueprintSummary",
    "Cancelled",
    "ClaimedJob",
    "Cluster",
    "ClusterNode",
    "CreatedKey",
    "Event",
    "Exchanged",
    "Execution",
    "ExecutionStarted",
    "ExecutionStep",
    "ItemCounts",
    "Job",
    "KeyRecord",
    "Page",
    "ParentStep",
    "Paused",
    "Project",
    "ProjectJob",
    "ProjectStats",
    "PublishedEvent",
    "Queue",
    "Resumed",
    "Run",
    "Schedule",
    "ScheduleDeleted",
    "ShardCounts",
    "Signalled",
    "Stats",
    "StepItem",
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


class Signalled(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a signal (``consumed_by``: the step it completed, None when it was kept);
    ``replayed`` when an idempotency key matched."""

    signal_id: str
    execution_id: str
    name: str
    consumed_by: str | None
    replayed: bool = False


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
