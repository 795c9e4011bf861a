"""Helpers for tests of wait_for_signal steps and the signals endpoint."""

from typing import Any

import httpx

Json = dict[str, Any]


def wait_step(step_id: str, name: str, *, timeout: int | None = None, **fields: Any) -> Json:
    """A blueprint step that waits for the signal ``name``."""
    wait: Json = {"name": name}
    if timeout is not None:
        wait["timeout_sec"] = timeout
    return {"id": step_id, "wait_for_signal": wait, **fields}


async def post_signal(
    client: httpx.AsyncClient, execution_id: str, name: str, data: Any = None, **body: Any
) -> httpx.Response:
    """POST a signal; the response, whatever it is."""
    path = f"/infra/workflows/executions/{execution_id}/signals"
    return await client.post(path, json={"name": name, "data": data, **body})


async def send(
    client: httpx.AsyncClient, execution_id: str, name: str, data: Any = None, **body: Any
) -> Json:
    """POST a signal and insist on 200; the answer."""
    response = await post_signal(client, execution_id, name, data, **body)
    assert response.status_code == 200, response.text
    return dict(response.json())
