"""The receiver example of ``docs/webhooks.md``, run as written: it accepts a signed delivery,
does an event's work once however often it comes, and refuses what ``flowyard.verify``
refuses."""

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowyard.signing import signature_header

DOC = Path(__file__).resolve().parents[1] / "docs" / "webhooks.md"
SECRET = "whsec_receiver_example_secret"
URL = "http://receiver.test/hooks/flowyard"


def receiver(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The namespace of the doc's Starlette example, its ``handle`` recording events."""
    examples = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    source = next(code for code in examples if "Starlette(" in code)
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    namespace: dict[str, Any] = {"__name__": "receiver"}
    exec(compile(source, str(DOC), "exec"), namespace)
    namespace["done"] = []
    namespace["handle"] = namespace["done"].append
    return namespace


def delivery(event_id: str, secret: str = SECRET, at: int | None = None) -> dict[str, Any]:
    body = json.dumps(
        {
            "id": event_id,
            "topic": "jobs.dead",
            "created_at": "2026-11-23T10:00:00.000Z",
            "project_id": "proj_01JB",
            "data": {"job_id": "job_01JB", "error": "boom"},
        }
    ).encode()
    headers = {
        "content-type": "application/json",
        "x-flowyard-event-id": event_id,
        "x-flowyard-signature": signature_header(secret, body, at),
    }
    return {"content": body, "headers": headers}


async def test_the_receiver_verifies_and_deduplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    example = receiver(monkeypatch)
    transport = httpx.ASGITransport(app=example["app"])
    async with httpx.AsyncClient(transport=transport) as http:
        first = await http.post(URL, **delivery("evt_1"))
        again = await http.post(URL, **delivery("evt_1"))
        other = await http.post(URL, **delivery("evt_2"))
        assert [first.status_code, again.status_code, other.status_code] == [204, 204, 204]
        assert [event["id"] for event in example["done"]] == ["evt_1", "evt_2"]

        forged = await http.post(URL, **delivery("evt_3", secret="whsec_not_the_secret"))
        stale = await http.post(URL, **delivery("evt_4", at=int(time.time()) - 3600))
        unsigned = await http.post(URL, content=b"{}")
        tampered = delivery("evt_5")
        tampered["content"] = tampered["content"].replace(b"boom", b"fine")
        changed = await http.post(URL, **tampered)
        statuses = [r.status_code for r in (forged, stale, unsigned, changed)]
        assert statuses == [401, 401, 401, 401]
        assert len(example["done"]) == 2
