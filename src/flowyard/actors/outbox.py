"""The webhook outbox: deliveries committed with the transitions that cause them, then sent.

What a transition emits is :mod:`flowyard.actors.subscriptions`' part; once the transition
committed, :meth:`Outbox.enqueue` takes its deliveries. Pending deliveries that are due join
the lane of their receiver (their webhook, or a callback URL's host) together, every
``RELEASE_SECONDS``; one due later has a keyed timer (:class:`DeliveryDue`) in the jobs
engine's timer service. Each lane has at most ``LANE_CONCURRENCY`` senders, so a slow receiver
holds only its own lane. A sender does not wait for an attempt's outcome to be committed: the
outcomes of a few milliseconds go to the writer together, and the next attempt of a delivery
is armed only once its outcome is committed. On start every pending delivery is queued again
(at-least-once after a crash). Each attempt's outcome is counted in
``flowyard_webhook_deliveries_total`` (``succeeded``, ``retrying`` or ``failed``).

Each attempt sends ``X-Request-Id``: the id of the request whose commit made the delivery
(bound in :mod:`flowyard.logs` when it is first enqueued, kept in memory while it is pending),
else a fresh one per attempt (after a restart; for events no request caused, such as a timer's).
The attempt's log lines carry the same id.
"""

import asyncio
import logging
import random
from collections import deque
from collections.abc import Iterable
from contextlib import AbstractContextManager
from urllib.parse import urlsplit

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from flowyard import logs
from flowyard.actors.dispatcher import Dispatcher, Sent
from flowyard.actors.jobs import JobEngine
from flowyard.actors.subscriptions import Subscriptions
from flowyard.errors import Unavailable
from flowyard.logs import new_request_id
from flowyard.metrics import Metrics
from flowyard.settings import Settings
from flowyard.storage import webhooks as store
from flowyard.storage.port import Store
from flowyard.storage.sqlite import RETRY_MS
from flowyard.webhooks.model import (
    TIMEOUT_SECONDS,
    Delivery,
    DeliveryStatus,
    Webhook,
    attempted,
)

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
        self,
        db: Store,
        settings: Settings,
        dispatcher: Dispatcher,
        jobs: JobEngine,
        metrics: Metrics,
    ) -> None:
        self.db = db
        self.outcomes = metrics.webhook_deliveries_by  # status -> the attempts' counter
        self.settings = settings
        self.dispatcher = dispatcher
        self.jobs = jobs
        self.clock = jobs.clock
        self.subscriptions = Subscriptions(jobs.clock, jobs.placement.new_id)
        self.pending: dict[str, Delivery] = {}
        self.request_ids: dict[str, str] = {}
        """Pending deliveries -> the id of the request that caused them, when known."""
        self._lanes: dict[str, _Lane] = {}
        self._limit = anyio.CapacityLimiter(TOTAL_CONCURRENCY)
        self._outcomes: list[tuple[Delivery, Delivery]] = []
        self._releasing: list[Delivery] = []
        self._tg: TaskGroup | None = None
        jobs.timer_hooks[DeliveryDue] = self._due
        jobs.live.emit = self.subscriptions.job_changes
        jobs.live.emitted = self.enqueue

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the webhooks and re-arm every pending delivery, then send until cancelled."""
        self.subscriptions.load(await store.all_webhooks(self.db))
        holds = self.jobs.placement.holds
        pending = [d for d in await store.pending_deliveries(self.db) if holds(d.id)]
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self.enqueue(pending)
                log.info("re-armed %d pending webhook deliveries", len(pending))
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None  # a release timer firing later starts no sender on a closed group

    # ----------------------------------------------------------------- subscriptions

    def changed(self, webhook: Webhook | None, webhook_id: str) -> None:
        """After a commit: a webhook was created, changed (or deleted, ``webhook`` None: its
        pending deliveries are dropped)."""
        self.subscriptions.changed(webhook, webhook_id)
        if self.jobs.changed is not None:
            self.jobs.changed(f"webhook {webhook_id}")
        self._dropped(webhook, webhook_id)

    async def reload(self) -> None:
        """Another node of the cluster changed a webhook: take them all again."""
        webhooks = await store.all_webhooks(self.db)
        gone = set(self.subscriptions.webhooks) - {webhook.id for webhook in webhooks}
        self.subscriptions.load(webhooks)
        for webhook_id in gone:
            self._dropped(None, webhook_id)

    def _dropped(self, webhook: Webhook | None, webhook_id: str) -> None:
        if webhook is None:
            for delivery_id in [d.id for d in self.pending.values() if d.webhook_id == webhook_id]:
                self.pending.pop(delivery_id, None)
                self.request_ids.pop(delivery_id, None)
                self.jobs.timers.cancel(DeliveryDue(delivery_id))

    def enqueue(self, deliveries: Iterable[Delivery]) -> None:
        """After a commit: queue each pending delivery that is due, arm the others' timers."""
        now = self.clock.now_ms()
        request_id = logs.request_id.get()
        for delivery in deliveries:
            if delivery.status is DeliveryStatus.PENDING:
                if request_id is not None and delivery.id not in self.pending:
                    self.request_ids[delivery.id] = request_id
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
                        with self._bound(delivery_id):
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

    def _bound(self, delivery_id: str) -> AbstractContextManager[None]:
        """The ids of an attempt's log lines: its request's (the one that caused the
        delivery, else a fresh one), its project's and its job's."""
        delivery = self.pending.get(delivery_id)
        request_id = self.request_ids.get(delivery_id) or new_request_id()
        if delivery is None:
            return logs.bound(request=request_id)
        return logs.bound(request=request_id, project=delivery.project_id, job=delivery.job_id)

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
        status = new.status
        self.outcomes["retrying" if status is DeliveryStatus.PENDING else status].inc()
        if status is not DeliveryStatus.SUCCEEDED:
            log.info(  # the webhook's id, not its URL: a URL may hold a token
                "webhook delivery %s (attempt %d, %s) failed: %s",
                delivery.id,
                new.attempts,
                delivery.webhook_id or "a callback_url notice",
                sent.error or f"status {sent.status}",
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
                self.request_ids.pop(old.id, None)

    async def _target(self, delivery: Delivery) -> tuple[str, str] | None:
        """Where to send the delivery and the secret to sign it with."""
        if delivery.webhook_id is None:
            secret = await self.jobs.push.secret(delivery.project_id)
            return delivery.callback_url or "", secret
        webhook = self.subscriptions.webhooks.get(delivery.webhook_id)
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
        """One signed POST of an event's body, with the bound request id (a fresh one if
        none is bound)."""
        headers = {
            **(extra or {}),
            "X-Request-Id": logs.request_id.get() or new_request_id(),
            "X-Flowyard-Event-Id": event_id,
            "X-Flowyard-Topic": topic,
            "X-Flowyard-Delivery-Id": delivery_id,
        }
        return await self.dispatcher.send(url, bytes(body), headers, secret, TIMEOUT_SECONDS)
