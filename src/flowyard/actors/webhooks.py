"""The webhook commands the HTTP layer calls: create, change, delete, test, publish, retry.

Each write is committed before memory (the outbox's subscriptions) changes, and is charged
like a job write.
"""

from typing import Any

import msgspec

from flowyard.actors.accounts import Accounts
from flowyard.actors.dispatcher import Sent
from flowyard.actors.outbox import Outbox
from flowyard.billing import JOB_WRITE
from flowyard.errors import Conflict, Invalid, NotFound
from flowyard.ids import base62_token, new_id
from flowyard.jobs.spec import check_payload, check_url
from flowyard.storage import webhooks as store
from flowyard.storage.port import Store
from flowyard.webhooks.model import (
    Delivery,
    DeliveryStatus,
    Webhook,
    event_body,
    retried,
)
from flowyard.webhooks.topics import TEST_TOPIC, custom_topic_problem, pattern_problem

FAMILY = "infra/webhooks"
SECRET_LENGTH = 40

replace = msgspec.structs.replace


def check_webhook_fields(url: str | None, topics: list[str] | None) -> None:
    """400 naming every bad URL or topic pattern."""
    problems: list[dict[str, str]] = []
    if url is not None:
        problems += check_url(url, "$.url")
    for index, pattern in enumerate(topics or ()):
        why = pattern_problem(pattern)
        if why is not None:
            problems.append({"path": f"$.topics[{index}]", "message": why})
    if problems:
        raise Invalid("; ".join(f"{p['path']}: {p['message']}" for p in problems), problems)


MAX_WEBHOOKS = 100
"""Webhooks one project may hold: every event is written and sent once per matching one."""


class Webhooks:
    """Webhook commands over the outbox and the database."""

    def __init__(self, db: Store, outbox: Outbox, accounts: Accounts) -> None:
        self.db = db
        self.outbox = outbox
        self.accounts = accounts
        self.clock = outbox.clock

    async def require(self, project_id: str, webhook_id: str) -> Webhook:
        """The project's webhook, or 404."""
        webhook = await store.get_webhook(self.db, project_id, webhook_id)
        if webhook is None:
            raise NotFound(f"webhook {webhook_id} not found")
        return webhook

    async def create(
        self,
        project_id: str,
        name: str,
        url: str,
        topics: list[str],
        secret: str | None,
        enabled: bool,
    ) -> Webhook:
        check_webhook_fields(url, topics)
        webhooks = self.outbox.subscriptions.webhooks.values()
        held = sum(hook.project_id == project_id for hook in webhooks)
        if held >= MAX_WEBHOOKS:
            raise Conflict(f"a project has at most {MAX_WEBHOOKS} webhooks; delete one first")
        now = self.clock.now_ms()
        webhook = Webhook(
            id=new_id("whk"),
            project_id=project_id,
            name=name,
            url=url,
            topics=tuple(dict.fromkeys(topics)),
            secret=secret or base62_token(SECRET_LENGTH),
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
        with self.accounts.paying(project_id, JOB_WRITE, FAMILY):
            await self.db.commit([store.put_webhook(webhook)])
        self.outbox.changed(webhook, webhook.id)
        return webhook

    async def patch(self, webhook: Webhook, changes: dict[str, Any]) -> Webhook:
        check_webhook_fields(changes.get("url"), changes.get("topics"))
        if "topics" in changes:
            changes["topics"] = tuple(dict.fromkeys(changes["topics"]))
        new = replace(webhook, **changes, updated_at=self.clock.now_ms())
        with self.accounts.paying(webhook.project_id, JOB_WRITE, FAMILY):
            await self.db.commit([store.put_webhook(new)])
        self.outbox.changed(new, new.id)
        return new

    async def delete(self, webhook: Webhook) -> None:
        with self.accounts.paying(webhook.project_id, JOB_WRITE, FAMILY):
            await self.db.commit([store.delete_webhook(webhook.id)])
        self.outbox.changed(None, webhook.id)

    async def test(self, webhook: Webhook) -> Sent:
        """Send ``webhooks.test`` now, once (nothing stored, no retries)."""
        self.accounts.charge(webhook.project_id, JOB_WRITE, FAMILY)
        now = self.clock.now_ms()
        event_id = new_id("evt")
        data = {"webhook_id": webhook.id, "name": webhook.name}
        body = event_body(event_id, webhook.project_id, TEST_TOPIC, now, data)
        return await self.outbox.send(
            webhook.url, body, event_id, TEST_TOPIC, new_id("whd"), webhook.secret
        )

    async def publish(self, project_id: str, topic: str, data: msgspec.Raw) -> tuple[str, int]:
        """Record a custom event and its deliveries; the event's id and how many.

        ``data`` follows the rules of a job payload: at most 256 KiB (413), finite numbers.
        """
        why = custom_topic_problem(topic)
        if why is not None:
            raise Invalid(f"$.topic: {why}", [{"path": "$.topic", "message": why}])
        check_payload(data, "$.data")
        now = self.clock.now_ms()
        event_id, ops, deliveries = self.outbox.subscriptions.emit(project_id, topic, data, now)
        with self.accounts.paying(project_id, JOB_WRITE, FAMILY):
            await self.db.commit(ops)
        self.outbox.enqueue(deliveries)
        return event_id, len(deliveries)

    async def delivery(self, webhook: Webhook, delivery_id: str) -> Delivery:
        """A delivery of the webhook, or 404."""
        found = await store.get_delivery(self.db, webhook.id, delivery_id)
        if found is None:
            raise NotFound(f"delivery {delivery_id} not found")
        return found

    async def retry(self, webhook: Webhook, delivery_id: str) -> Delivery:
        """Give a failed delivery one more round of attempts (409 unless it failed)."""
        delivery = await self.delivery(webhook, delivery_id)
        if delivery.status is not DeliveryStatus.FAILED:
            raise Conflict(f"only a failed delivery can be retried; this one is {delivery.status}")
        again = retried(delivery, self.clock.now_ms())
        with self.accounts.paying(webhook.project_id, JOB_WRITE, FAMILY):
            await self.db.commit([store.update_delivery(again)])
        self.outbox.enqueue([again])
        return again
