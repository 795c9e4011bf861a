"""A database written before events lived in their deliveries (schema 5) opens on the current
schema: its pending delivery is sent, its history keeps its order, the events table is gone."""

import sqlite3
from contextlib import closing
from pathlib import Path

import msgspec

from flowyard.ids import new_id
from flowyard.webhooks.model import Delivery, DeliveryStatus, Webhook, event_body
from tests.conftest import Handler, running_service
from tests.schema_support import older_database
from tests.webhook_support import wait_deliveries


def _schema5_database(path: Path, url: str) -> tuple[str, str, str, list[str]]:
    """A file at schema 5 holding one webhook, a succeeded and a pending delivery (each with
    its event row, as schema 5 wrote them); (path, key, webhook id, delivery ids oldest first).
    """
    db = str(path / "v5.db")
    with older_database(db, 5) as (conn, project, key):
        now = 1_700_000_000_000
        webhook = Webhook(
            id=new_id("whk"),
            project_id=project.id,
            name="old",
            url=url,
            topics=("*",),
            secret="s" * 32,
            enabled=True,
            created_at=now,
            updated_at=now,
        )
        conn.execute(
            "INSERT INTO webhooks (id, project_id, doc) VALUES (?, ?, ?)",
            (webhook.id, project.id, msgspec.json.encode(webhook)),
        )
        ids = []
        for number, status in enumerate((DeliveryStatus.SUCCEEDED, DeliveryStatus.PENDING)):
            event_id = new_id("evt")
            body = event_body(event_id, project.id, "old.topic", now, {"n": number})
            conn.execute(
                "INSERT INTO webhook_events (id, project_id, topic, doc) VALUES (?, ?, ?, ?)",
                (event_id, project.id, "old.topic", msgspec.json.encode({"body": body})),
            )
            delivery = Delivery(
                id=new_id("whd"),
                webhook_id=webhook.id,
                project_id=project.id,
                event_id=event_id,
                topic="old.topic",
                payload=body,
                status=status,
                attempts=1 if status is DeliveryStatus.SUCCEEDED else 0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
            conn.execute(
                "INSERT INTO webhook_deliveries (id, webhook_id, project_id, status, doc)"
                " VALUES (?, ?, ?, ?, ?)",
                (delivery.id, webhook.id, project.id, status.value, msgspec.json.encode(delivery)),
            )
            ids.append(delivery.id)
    return db, key, webhook.id, ids


async def test_a_schema5_database_delivers_its_pending_delivery_and_keeps_its_history(
    tmp_path: Path, handler: Handler
) -> None:
    db, key, webhook_id, (old, pending) = _schema5_database(tmp_path, handler.at("/old"))
    async with running_service(tmp_path, db=db) as service, service.client_for(key) as client:
        [received] = await handler.wait_for("/old")
        assert received.headers["x-flowyard-delivery-id"] == pending
        assert received.json()["data"] == {"n": 1}
        found = await wait_deliveries(
            client, webhook_id, lambda f: all(d["status"] == "succeeded" for d in f)
        )
        assert [d["id"] for d in found] == [pending, old]  # newest first, as before
        published = await client.post("/infra/webhooks/publish", json={"topic": "new.topic"})
        assert published.json()["deliveries"] == 1
        await handler.wait_for("/old", 2)
    with closing(sqlite3.connect(db)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        seqs = [seq for (seq,) in conn.execute("SELECT seq FROM webhook_deliveries ORDER BY seq")]
    assert "webhook_events" not in tables
    assert seqs == [1, 2, 3]  # the old rows kept theirs, the new one follows
