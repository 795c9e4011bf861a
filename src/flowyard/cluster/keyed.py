"""Requests whose idempotency key decides where they are served.

Two requests with one idempotency key must meet on one node, which sees every use of the key
and answers the second with the first's object: ``POST /infra/jobs`` (a project's job key)
and ``POST /infra/workflows/blueprints/{id}/trigger`` (a blueprint's execution key). Such a
request goes to the owner of the key's shard (``shards.key_shard``), and the owner makes the
object in that shard (``Placement.keyed``). The key is read from the body before anything
else: a body that is not JSON, has no key or is too large is served where it arrives, and
the handler answers it as usual (401 before 400, and so on).
"""

import re

import orjson
from starlette.types import Message, Receive

JOBS_SCOPE = "jobs"
"""A job key's scope: the key's shard does not depend on the project (unknown before the
request is authenticated), only its uses must meet."""
_TRIGGER = re.compile(r"^/infra/workflows/blueprints/(wf_[^/]+)/trigger$")


def key_scope(method: str, path: str) -> str | None:
    """The scope of the idempotency key a request may carry (None: it carries none)."""
    if method != "POST":
        return None
    if path == "/infra/jobs":
        return JOBS_SCOPE
    found = _TRIGGER.match(path)
    return found.group(1) if found else None


def idempotency_key(body: bytes) -> str | None:
    """The body's ``idempotency_key``, if it is a JSON object with a string one."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    key = value.get("idempotency_key") if isinstance(value, dict) else None
    return key if isinstance(key, str) and key else None


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` again (it was read already), then the client's."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again
