"""Helpers of the webhook tests: create a webhook, wait for deliveries of a webhook."""

from collections.abc import Callable
from typing import Any

import anyio
import httpx

Json = dict[str, Any]


async def create_webhook(client: httpx.AsyncClient, url: str, **body: Any) -> Json:
    """POST /infra/webhooks and insist on 201."""
    fields = {"name": "hook", "url": url, "topics": ["*"], **body}
    response = await client.post("/infra/webhooks", json=fields)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def deliveries(client: httpx.AsyncClient, webhook_id: str, **query: str) -> list[Json]:
    response = await client.get(f"/infra/webhooks/{webhook_id}/deliveries", params=query)
    assert response.status_code == 200, response.text
    found: list[Json] = response.json()["deliveries"]
    return found


async def wait_deliveries(
    client: httpx.AsyncClient,
    webhook_id: str,
    until: Callable[[list[Json]], bool],
    timeout: float = 10,
) -> list[Json]:
    """Poll the webhook's deliveries until ``until`` holds for them."""
    with anyio.fail_after(timeout):
        while True:
            found = await deliveries(client, webhook_id)
            if until(found):
                return found
            await anyio.sleep(0.01)
