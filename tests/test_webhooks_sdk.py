"""The SDK's webhook calls against the real service, with a real receiver on 127.0.0.1:
each answer decodes into its documented type, and a delivery verifies with ``flowyard.verify``.
"""

import anyio
import pytest

import flowyard
from flowyard.client import Conflict, NotFound
from tests.conftest import Handler
from tests.sdk_support import Api

pytestmark = pytest.mark.anyio


async def test_a_webhook_through_the_sdk(api: Api, handler: Handler) -> None:
    url = handler.at("/hook")
    hook = await api.webhooks.create(url, ["orders.*"], name="orders")
    assert (hook.name, hook.url, hook.topics, hook.enabled) == ("orders", url, ["orders.*"], True)
    assert len(hook.secret) >= 16
    assert (await api.webhooks.get(hook.id)) == hook
    assert [h.id for h in (await api.webhooks.list()).items] == [hook.id]

    tested = await api.webhooks.test(hook.id)
    assert (tested.status, tested.error) == (200, None)

    published = await api.webhooks.publish("orders.shipped", {"order": 7})
    assert published.deliveries == 1
    arrived = (await handler.wait_for("/hook", count=2))[-1]  # the test, then the event
    assert arrived.json()["data"] == {"order": 7}
    signature = arrived.headers["x-flowyard-signature"]
    assert flowyard.verify(hook.secret, arrived.body, signature)
    assert not flowyard.verify(hook.secret, arrived.body + b" ", signature)

    with anyio.fail_after(10):
        while True:
            [delivery] = (await api.webhooks.deliveries(hook.id)).items
            if delivery.status == "succeeded":
                break
            await anyio.sleep(0.02)
    assert (delivery.event_id, delivery.topic, delivery.http_status) == (
        published.event_id,
        "orders.shipped",
        200,
    )
    assert (await api.webhooks.delivery(hook.id, delivery.id)) == delivery
    with pytest.raises(Conflict):
        await api.webhooks.retry_delivery(hook.id, delivery.id)  # only a failed one

    changed = await api.webhooks.update(hook.id, enabled=False)
    assert changed.enabled is False
    assert (await api.webhooks.publish("orders.shipped", {})).deliveries == 0
    deleted = await api.webhooks.delete(hook.id)
    assert (deleted.id, deleted.deleted) == (hook.id, True)
    with pytest.raises(NotFound):
        await api.webhooks.get(hook.id)
