"""Typed write intents: what the service asks storage to write, free of any SQL dialect.

Engines and actors build intents (through the small constructors of ``storage/jobs.py``,
``storage/workflows.py`` and the others) and hand a list of them to ``Database.commit``, which
writes them in one transaction with every other caller's (group commit). Each storage adapter
turns an intent into its own statements: the SQLite adapter's are in
``storage/sqlite_statements.py``. An intent holds the records themselves (immutable structs),
so an adapter can encode them when and how it writes them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, get_args

import msgspec

if TYPE_CHECKING:
    from flowyard.jobs.model import Job, Run
    from flowyard.storage.jobs import QueueSettings
    from flowyard.storage.projects import ApiKey, Project
    from flowyard.storage.signals import Signal
    from flowyard.storage.workflows import Blueprint
    from flowyard.webhooks.model import Delivery, Webhook
    from flowyard.workflows.schedules import Schedule
    from flowyard.workflows.state import Event, ExecutionState, ItemState


class PutJob(msgspec.Struct, frozen=True, gc=False):
    """Insert or update a job."""

    job: Job


class PutRun(msgspec.Struct, frozen=True, gc=False):
    """Insert or update a run."""

    run: Run


class PutQueue(msgspec.Struct, frozen=True, gc=False):
    """Insert or update a queue's settings."""

    project_id: str
    name: str
    settings: QueueSettings


class PutProject(msgspec.Struct, frozen=True, gc=False):
    """Insert a project; nothing if its name is taken."""

    project: Project
    signing_secret: str


class PutKey(msgspec.Struct, frozen=True, gc=False):
    """Insert an API key, by the hash of its secret."""

    key: ApiKey
    key_hash: str


class RevokeKey(msgspec.Struct, frozen=True, gc=False):
    """Revoke a key (one revoked before keeps its first ``revoked_at``)."""

    key_id: str
    at: int


class TouchKey(msgspec.Struct, frozen=True, gc=False):
    """Record a use of a key (``last_used_at`` never moves backwards)."""

    key_id: str
    at: int


class SetSigningSecret(msgspec.Struct, frozen=True, gc=False):
    """Replace a project's push-signing secret."""

    project_id: str
    secret: str


class SetServerSecret(msgspec.Struct, frozen=True, gc=False):
    """Store the server's own secret, unless one is stored already."""

    secret: str


class Spend(msgspec.Struct, frozen=True, gc=False):
    """Take nanotokens from a limited balance (never below zero)."""

    project_id: str
    nanos: int


class SetBalance(msgspec.Struct, frozen=True, gc=False):
    """Set a balance in nanotokens (None: unlimited)."""

    project_id: str
    nanos: int | None


class SetRate(msgspec.Struct, frozen=True, gc=False):
    """Set a rate limit in requests per second (None: none)."""

    project_id: str
    rate: float | None


class AddUsage(msgspec.Struct, frozen=True, gc=False):
    """Add calls and nanotokens to a project's usage of one day in one route family."""

    project_id: str
    day: int
    family: str
    calls: int
    nanos: int


class PutBlueprint(msgspec.Struct, frozen=True, gc=False):
    """Insert a blueprint."""

    blueprint: Blueprint


class ArchiveBlueprint(msgspec.Struct, frozen=True, gc=False):
    """Record that a blueprint was archived (its ``archived_at`` is set)."""

    blueprint: Blueprint


class PutExecution(msgspec.Struct, frozen=True, gc=False):
    """Insert or update an execution."""

    state: ExecutionState
    active: bool  # needs an actor after a restart


class PutEvents(msgspec.Struct, frozen=True, gc=False):
    """Append an execution's events, numbered from ``first_seq``."""

    execution_id: str
    first_seq: int
    events: list[Event]


class PutItem(msgspec.Struct, frozen=True, gc=False):
    """Insert or update one item of a for_each step."""

    execution_id: str
    step_id: str
    item: ItemState


class InsertSignal(msgspec.Struct, frozen=True, gc=False):
    """Record a signal an execution accepted."""

    signal: Signal


class TakeSignal(msgspec.Struct, frozen=True, gc=False):
    """Record that a kept signal was taken by a step."""

    execution_id: str
    signal_id: str
    step_id: str


class PutWebhook(msgspec.Struct, frozen=True, gc=False):
    """Insert or update a webhook."""

    webhook: Webhook


class DeleteWebhook(msgspec.Struct, frozen=True, gc=False):
    """Delete a webhook and drop its pending deliveries."""

    webhook_id: str


class InsertDelivery(msgspec.Struct, frozen=True, gc=False):
    """Record a new delivery (it holds its event)."""

    delivery: Delivery


class UpdateDelivery(msgspec.Struct, frozen=True, gc=False):
    """Record a delivery's progress (nothing if it was dropped meanwhile)."""

    delivery: Delivery


class PutSchedule(msgspec.Struct, frozen=True, gc=False):
    """Insert or update a workflow schedule."""

    schedule: Schedule


class DeleteSchedule(msgspec.Struct, frozen=True, gc=False):
    """Delete a workflow schedule."""

    schedule_id: str


Intent = (
    PutJob
    | PutRun
    | PutQueue
    | PutProject
    | PutKey
    | RevokeKey
    | TouchKey
    | SetSigningSecret
    | SetServerSecret
    | Spend
    | SetBalance
    | SetRate
    | AddUsage
    | PutBlueprint
    | ArchiveBlueprint
    | PutExecution
    | PutEvents
    | PutItem
    | InsertSignal
    | TakeSignal
    | PutWebhook
    | DeleteWebhook
    | InsertDelivery
    | UpdateDelivery
    | PutSchedule
    | DeleteSchedule
)
"""Every write the service makes."""


Writer = Callable[[Any, list[Any]], None]
"""An adapter's way to write one intent: it appends the intent's statements to a list."""


def writers(namespace: Mapping[str, Any]) -> dict[type, Writer]:
    """Every intent's writer in an adapter module: the function named after it
    (``PutJob`` -> ``_put_job``). A module missing one fails when it is imported."""
    return {
        kind: namespace["_" + re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()]
        for kind in get_args(Intent)
    }


def statements_of(table: Mapping[type, Writer], intents: Sequence[Intent]) -> list[Any]:
    """The statements that carry out ``intents``, in order, by the writers of ``table``."""
    out: list[Any] = []
    for intent in intents:
        table[type(intent)](intent, out)
    return out
