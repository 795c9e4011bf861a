"""The webhooks in memory and the events a transition emits to them.

Emission is in the caller's transaction: :meth:`Subscriptions.emit` returns the delivery rows
(each holds its event's body) for the caller to commit with its own writes, and the outbox's
``enqueue`` is called once that commit succeeded. A project without an enabled webhook costs
one dict lookup.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from flowyard.clock import Clock
from flowyard.ids import new_id
from flowyard.jobs.model import TERMINAL, Job, Run
from flowyard.storage import webhooks as store
from flowyard.storage.intents import Intent
from flowyard.webhooks.emission import execution_events, job_event
from flowyard.webhooks.model import Delivery, Webhook, event_body
from flowyard.webhooks.topics import matches_any
from flowyard.workflows.state import ExecutionState

NOTICE_TOPIC = "jobs.callback"
"""The topic header of a job's ``callback_url`` notice."""

Emitted = tuple[list[Intent], list[Delivery]]
NOTHING: Emitted = ([], [])


class Subscriptions:
    """Every webhook, by id, and the enabled ones by project; what a change emits to them."""

    def __init__(self, clock: Clock, new_id: Callable[[str], str] = new_id) -> None:
        self.clock = clock
        self.new_id = new_id  # in a cluster, a delivery's id says which node sends it
        self.webhooks: dict[str, Webhook] = {}
        self._enabled: dict[str, list[Webhook]] = {}  # project -> its enabled webhooks

    def load(self, webhooks: Iterable[Webhook]) -> None:
        """The webhooks as stored (on start)."""
        self.webhooks = {webhook.id: webhook for webhook in webhooks}
        self._index()

    def changed(self, webhook: Webhook | None, webhook_id: str) -> None:
        """After a commit: a webhook was created, changed (or deleted, ``webhook`` None)."""
        if webhook is None:
            self.webhooks.pop(webhook_id, None)
        else:
            self.webhooks[webhook.id] = webhook
        self._index()

    def _index(self) -> None:
        enabled: dict[str, list[Webhook]] = {}
        for webhook in self.webhooks.values():
            if webhook.enabled:
                enabled.setdefault(webhook.project_id, []).append(webhook)
        self._enabled = enabled

    def emit(
        self, project_id: str, topic: str, data: Any, now: int
    ) -> tuple[str, list[Intent], list[Delivery]]:
        """A new event's id and its deliveries to every enabled webhook of the project whose
        topics match (rows to commit, deliveries to :meth:`enqueue` after the commit). The
        event lives in its deliveries: one that no webhook takes is not stored."""
        event_id = self.new_id("evt")
        targets = [w for w in self._enabled.get(project_id, ()) if matches_any(w.topics, topic)]
        if not targets:
            return event_id, [], []
        body = event_body(event_id, project_id, topic, now, data)
        deliveries = [
            Delivery(
                id=self.new_id("whd"),
                webhook_id=w.id,
                project_id=project_id,
                event_id=event_id,
                topic=topic,
                payload=body,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
            for w in targets
        ]
        return event_id, [*map(store.insert_delivery, deliveries)], deliveries

    def job_changes(
        self, changes: Sequence[tuple[Job | None, Job]], runs: Sequence[Run]
    ) -> Emitted:
        """The events of job changes about to be committed (attempts that ended), and the
        ``callback_url`` notices of jobs that ended."""
        enabled = self._enabled
        ops: list[Intent] = []
        deliveries: list[Delivery] = []
        for old, new in changes:
            ended = new.status in TERMINAL and (old is None or old.status not in TERMINAL)
            if ended and new.callback_url is not None:
                notice = self._notice(old, new)
                ops.append(store.insert_delivery(notice))
                deliveries.append(notice)
            if new.project_id not in enabled:
                continue
            found = job_event(old, new, runs)
            if found is not None:
                _, more_ops, more = self.emit(
                    new.project_id, found[0], found[1], self.clock.now_ms()
                )
                ops += more_ops
                deliveries += more
        return ops, deliveries

    def _notice(self, old: Job | None, new: Job) -> Delivery:
        """The delivery of a job's ``callback_url`` notice (signed with the project's secret)."""
        now = self.clock.now_ms()
        body = msgspec.json.encode(
            {
                "job_id": new.id,
                "run_id": old.run_id if old is not None else None,
                "status": new.status,
                "result": new.result,
                "error": new.error,
                "attempt": new.attempt,
            }
        )
        return Delivery(
            id=self.new_id("whd"),
            webhook_id=None,
            project_id=new.project_id,
            event_id=self.new_id("evt"),
            topic=NOTICE_TOPIC,
            payload=msgspec.Raw(body),
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
            callback_url=new.callback_url,
            job_id=new.id,
        )

    def execution_change(self, old: ExecutionState, new: ExecutionState) -> Emitted:
        """The events of an execution change to commit with it (its end, failed steps)."""
        if new.project_id not in self._enabled:
            return NOTHING
        ops: list[Intent] = []
        deliveries: list[Delivery] = []
        now = self.clock.now_ms()
        for topic, data in execution_events(old, new):
            _, more_ops, more = self.emit(new.project_id, topic, data, now)
            ops += more_ops
            deliveries += more
        return ops, deliveries
