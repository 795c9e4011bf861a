"""The webhook outbox: events written with the transitions that cause them, then delivered.

Emission is in the caller's transaction: :meth:`Outbox.emit` returns the delivery rows (each
holds its event's body) for the caller to commit with its own writes, and
:meth:`Outbox.enqueue` is called once that commit succeeded. A project without an enabled
webhook costs one dict lookup.

Delivery: pending deliveries that are due join the lane of their receiver (their webhook, or a
callback URL's host) together, every ``RELEASE_SECONDS``; one due later has a keyed timer
(:class:`DeliveryDue`) in the jobs engine's timer service. Each lane has at most
``LANE_CONCURRENCY`` senders, so a slow receiver holds only its own lane. A sender does not
wait for an attempt's outcome to be committed: the outcomes of a few milliseconds go to the
writer together, and the next attempt of a delivery is armed only once its outcome is
committed. On start every pending delivery is queued again (at-least-once after a crash).
"""

import asyncio
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
    Webhook,
    attempted,
    event_body,
)
from flowyard.webhooks.topics import matches_any
from flowyard.workflows.state import ExecutionState

log = logging.getLogger("flowyard.webhooks")

LANE_CONCURRENCY = 8
"""Attempts in flight at once to one receiver."""
TOTAL_CONCURRENCY = 256
"""Attempts in flight at once across receivers."""
RELEASE_SECONDS = 0.01
"""Deliveries that became due are released to their lanes together, at most this late: a
receiver then gets them in bursts, and waking an idle receiver's machine for each event
costs the sender two to three times the CPU of a request in a burst (``bench/README.md``)."""
OUTCOME_WRITE_SECONDS = 0.01
"""Attempt outcomes are gathered for this long and written together (one write request)."""
SENDER_IDLE_SECONDS = 1.0
"""How long a sender with nothing to send waits for more before it ends."""

NOTICE_TOPIC = "jobs.callback"
"""The topic header of a job's ``callback_url`` notice."""

Emitted = tuple[list[Op], list[Delivery]]
NOTHING: Emitted = ([], [])


class DeliveryDue(msgspec.Struct, frozen=True, gc=False):
    """A timer key: a pending delivery's next attempt is due."""

    delivery_id: str


class _Lane:
    """The deliveries due to one receiver, its senders, and those of them waiting for more."""

    __slots__ = ("idle", "senders", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[str] = deque()
        self.senders = 0
        self.idle: list[asyncio.Future[None]] = []

    async def wait(self, seconds: float) -> None:
        """Until a delivery joins the lane, or ``seconds`` passed."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.idle.append(waiter)
        timer = loop.call_later(seconds, self._expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if waiter in self.idle:
                self.idle.remove(waiter)

    def _expire(self, waiter: "asyncio.Future[None]") -> None:
        if not waiter.done():
            self.idle.remove(waiter)
            waiter.set_result(None)


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
        self._outcomes: list[tuple[Delivery, Delivery]] = []
        self._releasing: list[Delivery] = []
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
        self, project_id: str, topic: str, data: Any, now: int
    ) -> tuple[str, list[Op], list[Delivery]]:
        """A new event's id and its deliveries to every enabled webhook of the project whose
        topics match (rows to commit, deliveries to :meth:`enqueue` after the commit). The
        event lives in its deliveries: one that no webhook takes is not stored."""
        event_id = new_id("evt")
        targets = [w for w in self._enabled.get(project_id, ()) if matches_any(w.topics, topic)]
        if not targets:
            return event_id, [], []
        body = event_body(event_id, project_id, topic, now, data)
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
        return event_id, [*map(store.insert_delivery, deliveries)], deliveries

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
        """After a commit: queue each pending delivery that is due, arm the others' timers."""
        now = self.clock.now_ms()
        for delivery in deliveries:
            if delivery.status is DeliveryStatus.PENDING:
                self.pending[delivery.id] = delivery
                due = delivery.next_attempt_at or 0
                if due <= now:
                    if not self._releasing:
                        loop = asyncio.get_running_loop()
                        loop.call_later(RELEASE_SECONDS, self._release)
                    self._releasing.append(delivery)
                else:
                    self.jobs.timers.arm(due, DeliveryDue(delivery.id))

    # ----------------------------------------------------------------- delivery

    def _release(self) -> None:
        releasing, self._releasing = self._releasing, []
        for delivery in releasing:
            if self.pending.get(delivery.id) is delivery:
                self._queue(delivery)

    def _due(self, key: DeliveryDue) -> None:
        delivery = self.pending.get(key.delivery_id)
        if delivery is not None:
            self._queue(delivery)

    def _queue(self, delivery: Delivery) -> None:
        """Put the delivery in its receiver's lane, and wake or start a sender for it."""
        lane_key = self._lane_of(delivery)
        lane = self._lanes.get(lane_key)
        if lane is None:
            lane = self._lanes[lane_key] = _Lane()
        lane.waiting.append(delivery.id)
        if lane.idle:
            lane.idle.pop().set_result(None)
        elif lane.senders < LANE_CONCURRENCY and self._tg is not None:
            lane.senders += 1
            self._tg.start_soon(self._sender, lane_key, lane)

    def _lane_of(self, delivery: Delivery) -> str:
        if delivery.webhook_id is not None:
            return delivery.webhook_id
        return urlsplit(delivery.callback_url or "").netloc

    async def _sender(self, lane_key: str, lane: _Lane) -> None:
        """Send the lane's deliveries one after the other; wait a little for more when it has
        none (a busy receiver keeps its senders instead of starting a task per delivery)."""
        try:
            while True:
                async with self._limit:
                    while lane.waiting:
                        delivery_id = lane.waiting.popleft()
                        try:
                            await self._attempt(delivery_id)
                        except Exception:
                            log.exception("webhook delivery %s failed", delivery_id)
                await lane.wait(SENDER_IDLE_SECONDS)
                if not lane.waiting:
                    return
        finally:
            lane.senders -= 1
            if lane.senders == 0 and not lane.waiting:
                self._lanes.pop(lane_key, None)

    async def _attempt(self, delivery_id: str) -> None:
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
        new = attempted(
            delivery,
            status=sent.status,
            snippet=sent.snippet,
            error=sent.error,
            duration_ms=sent.duration_ms,
            now=self.clock.now_ms(),
            base_seconds=self.settings.webhook_retry_base_seconds,
            draw=random.random(),
        )
        self._record(delivery, new)

    def _record(self, old: Delivery, new: Delivery) -> None:
        """Write an attempt's outcome with the others of these milliseconds, without waiting:
        the sender goes on with the lane's next delivery meanwhile. The delivery stays in
        ``pending`` (and in no lane) until the outcome is committed."""
        if not self._outcomes:
            asyncio.get_running_loop().call_later(OUTCOME_WRITE_SECONDS, self._write_outcomes)
        self._outcomes.append((old, new))

    def _write_outcomes(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        try:
            request = self.db.submit([store.update_delivery(new) for _, new in outcomes])
        except Unavailable:
            self._written(outcomes, failed=True)
            return
        request.done.add_done_callback(
            lambda _: self._written(outcomes, failed=request.error is not None)
        )

    def _written(self, outcomes: list[tuple[Delivery, Delivery]], *, failed: bool) -> None:
        """After the outcomes' commit: arm the next attempts, forget the finished deliveries.
        When the commit failed, each delivery is attempted again a little later."""
        retry_at = self.clock.now_ms() + RETRY_MS
        for old, new in outcomes:
            if self.pending.get(old.id) is not old:
                continue  # dropped (its webhook deleted) while the attempt was in flight
            if failed:
                self.jobs.timers.arm(retry_at, DeliveryDue(old.id))
            elif new.status is DeliveryStatus.PENDING:
                self.enqueue([new])
            else:
                self.pending.pop(old.id, None)

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
