"""The webhook outbox: events written with the transitions that cause them, then delivered.

Emission is in the caller's transaction: :meth:`Outbox.emit` returns the event and delivery
rows for the caller to commit with its own writes, and :meth:`Outbox.enqueue` is called once
that commit succeeded. A project without an enabled webhook costs one dict lookup.

Delivery: each pending delivery has a keyed timer (:class:`DeliveryDue`) in the jobs engine's
timer service. When it fires the delivery joins the lane of its receiver (its webhook, or a
callback URL's host), and each lane has at most ``LANE_CONCURRENCY`` attempts in flight, so a
slow receiver holds only its own lane. Every attempt's outcome is committed before the next
is armed; on start every pending delivery is armed again (at-least-once after a crash).
"""

import logging
import random
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from flowyard.actors.dispatcher import Dispatcher, Sent
from flowyard.actors.jobs import JobEngine
from flowyard.errors import Unavailable
from flowyard.ids import new_id
from flowyard.jobs.model import TERMINAL, Job, Run
from flowyard.settings import Settings
from flowyard.storage import webhooks as store
from flowyard.storage.sqlite import RETRY_MS, Database, Op
from flowyard.webhooks.emission import execution_events, job_event
from flowyard.webhooks.model import (
    TIMEOUT_SECONDS,
    Delivery,
    DeliveryStatus,
    Event,
    Webhook,
    attempted,
    event_body,
)
from flowyard.webhooks.topics import matches_any
from flowyard.workflows.state import ExecutionState

log = logging.getLogger("flowyard.webhooks")

LANE_CONCURRENCY = 4
"""Attempts in flight at once to one receiver."""
TOTAL_CONCURRENCY = 256
"""Attempts in flight at once across receivers."""

NOTICE_TOPIC = "jobs.callback"
"""The topic header of a job's ``callback_url`` notice."""

Emitted = tuple[list[Op], list[Delivery]]
NOTHING: Emitted = ([], [])


class DeliveryDue(msgspec.Struct, frozen=True, gc=False):
    """A timer key: a pending delivery's next attempt is due."""

    delivery_id: str


class _Lane:
    __slots__ = ("in_flight", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[str] = deque()
        self.in_flight = 0


class Outbox:
    """The webhooks in memory, the pending deliveries, and the tasks that send them."""

    def __init__(
        self, db: Database, settings: Settings, dispatcher: Dispatcher, jobs: JobEngine
    ) -> None:
        self.db = db
        self.settings = settings
        self.dispatcher = dispatcher
        self.jobs = jobs
        self.clock = jobs.clock
        self.webhooks: dict[str, Webhook] = {}
        self._enabled: dict[str, list[Webhook]] = {}  # project -> its enabled webhooks
        self.pending: dict[str, Delivery] = {}
        self._lanes: dict[str, _Lane] = {}
        self._limit = anyio.CapacityLimiter(TOTAL_CONCURRENCY)
        self._tg: TaskGroup | None = None
        jobs.timer_hooks[DeliveryDue] = self._due
        jobs.live.emit = self.job_changes
        jobs.live.emitted = self.enqueue

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the webhooks and re-arm every pending delivery, then send until cancelled."""
        for webhook in await store.all_webhooks(self.db):
            self.webhooks[webhook.id] = webhook
        self._index()
        pending = await store.pending_deliveries(self.db)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self.enqueue(pending)
            log.info("re-armed %d pending webhook deliveries", len(pending))
            task_status.started()
            await anyio.sleep_forever()

    # ----------------------------------------------------------------- subscriptions

    def changed(self, webhook: Webhook | None, webhook_id: str) -> None:
        """After a commit: a webhook was created, changed (or deleted, ``webhook`` None)."""
        if webhook is None:
            self.webhooks.pop(webhook_id, None)
            for delivery_id in [d.id for d in self.pending.values() if d.webhook_id == webhook_id]:
                self.pending.pop(delivery_id, None)
                self.jobs.timers.cancel(DeliveryDue(delivery_id))
        else:
            self.webhooks[webhook.id] = webhook
        self._index()

    def _index(self) -> None:
        enabled: dict[str, list[Webhook]] = {}
        for webhook in self.webhooks.values():
            if webhook.enabled:
                enabled.setdefault(webhook.project_id, []).append(webhook)
        self._enabled = enabled

    # ----------------------------------------------------------------- emission

    def emit(
        self, project_id: str, topic: str, data: Any, now: int, *, force: bool = False
    ) -> tuple[Event, list[Op], list[Delivery]]:
        """The event and its deliveries to every enabled webhook of the project whose topics
        match (rows to commit, deliveries to :meth:`enqueue` after the commit)."""
        event_id = new_id("evt")
        body = event_body(event_id, project_id, topic, now, data)
        event = Event(id=event_id, project_id=project_id, topic=topic, created_at=now, body=body)
        targets = [w for w in self._enabled.get(project_id, ()) if matches_any(w.topics, topic)]
        deliveries = [
            Delivery(
                id=new_id("whd"),
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
        if not deliveries and not force:
            return event, [], []
        return (
            event,
            [store.insert_event(event), *map(store.insert_delivery, deliveries)],
            deliveries,
        )

    def job_changes(
        self, changes: Sequence[tuple[Job | None, Job]], runs: Sequence[Run]
    ) -> Emitted:
        """The events of job changes about to be committed (attempts that ended), and the
        ``callback_url`` notices of jobs that ended."""
        enabled = self._enabled
        ops: list[Op] = []
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
            id=new_id("whd"),
            webhook_id=None,
            project_id=new.project_id,
            event_id=new_id("evt"),
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
        ops: list[Op] = []
        deliveries: list[Delivery] = []
        now = self.clock.now_ms()
        for topic, data in execution_events(old, new):
            _, more_ops, more = self.emit(new.project_id, topic, data, now)
            ops += more_ops
            deliveries += more
        return ops, deliveries

    def enqueue(self, deliveries: Iterable[Delivery]) -> None:
        """After a commit: arm each pending delivery's next attempt."""
        for delivery in deliveries:
            if delivery.status is DeliveryStatus.PENDING:
                self.pending[delivery.id] = delivery
                self.jobs.timers.arm(delivery.next_attempt_at or 0, DeliveryDue(delivery.id))

    # ----------------------------------------------------------------- delivery

    def _due(self, key: DeliveryDue) -> None:
        delivery = self.pending.get(key.delivery_id)
        if delivery is None:
            return
        lane_key = self._lane_of(delivery)
        lane = self._lanes.get(lane_key)
        if lane is None:
            lane = self._lanes[lane_key] = _Lane()
        lane.waiting.append(delivery.id)
        self._pump(lane_key, lane)

    def _lane_of(self, delivery: Delivery) -> str:
        if delivery.webhook_id is not None:
            return delivery.webhook_id
        return urlsplit(delivery.callback_url or "").netloc

    def _pump(self, lane_key: str, lane: _Lane) -> None:
        if self._tg is None:
            return
        while lane.waiting and lane.in_flight < LANE_CONCURRENCY:
            lane.in_flight += 1
            self._tg.start_soon(self._attempt, lane_key, lane, lane.waiting.popleft())

    async def _attempt(self, lane_key: str, lane: _Lane, delivery_id: str) -> None:
        try:
            async with self._limit:
                await self._attempt_once(delivery_id)
        except Exception:
            log.exception("webhook delivery %s failed", delivery_id)
        finally:
            lane.in_flight -= 1
            if lane.waiting:
                self._pump(lane_key, lane)
            elif lane.in_flight == 0:
                self._lanes.pop(lane_key, None)

    async def _attempt_once(self, delivery_id: str) -> None:
        delivery = self.pending.get(delivery_id)
        if delivery is None:
            return
        target = await self._target(delivery)
        if target is None:
            self.pending.pop(delivery_id, None)  # its webhook is gone
            return
        url, secret = target
        extra = {"X-Flowyard-Job-Id": delivery.job_id} if delivery.job_id else {}
        sent = await self.send(
            url, delivery.payload, delivery.event_id, delivery.topic, delivery.id, secret, extra
        )
        now = self.clock.now_ms()
        new = attempted(
            delivery,
            status=sent.status,
            snippet=sent.snippet,
            error=sent.error,
            duration_ms=sent.duration_ms,
            now=now,
            base_seconds=self.settings.webhook_retry_base_seconds,
            draw=random.random(),
        )
        try:
            await self.db.commit([store.update_delivery(new)])
        except Unavailable:
            self.jobs.timers.arm(now + RETRY_MS, DeliveryDue(delivery_id))  # attempt again
            return
        if self.pending.get(delivery_id) is not delivery:
            return  # dropped (its webhook deleted) while the attempt was in flight
        if new.status is DeliveryStatus.PENDING:
            self.enqueue([new])
        else:
            self.pending.pop(delivery_id, None)

    async def _target(self, delivery: Delivery) -> tuple[str, str] | None:
        """Where to send the delivery and the secret to sign it with."""
        if delivery.webhook_id is None:
            secret = await self.jobs.push.secret(delivery.project_id)
            return delivery.callback_url or "", secret
        webhook = self.webhooks.get(delivery.webhook_id)
        return None if webhook is None else (webhook.url, webhook.secret)

    async def send(
        self,
        url: str,
        body: bytes | msgspec.Raw,
        event_id: str,
        topic: str,
        delivery_id: str,
        secret: str,
        extra: dict[str, str] | None = None,
    ) -> Sent:
        """One signed POST of an event's body."""
        headers = {
            **(extra or {}),
            "X-Flowyard-Event-Id": event_id,
            "X-Flowyard-Topic": topic,
            "X-Flowyard-Delivery-Id": delivery_id,
        }
        return await self.dispatcher.send(url, bytes(body), headers, secret, TIMEOUT_SECONDS)
