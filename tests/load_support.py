"""Load-test helpers: every answer sorted into what the contract allows and what it forbids.

Under load, at shutdown or in a flood, a request may end in exactly three acceptable ways: a
2xx with its JSON object, a JSON ``503 unavailable`` / ``429 rate_limited`` with
``Retry-After``, or the connection closing (or being refused) before any part of an answer.
Everything else (a 500, another status, a body cut short, a non-JSON error) is a fault.
"""

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

# Failures that happen before any byte of an answer: the request was not answered at all.
NOT_ANSWERED = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


@dataclass
class Answer:
    """What one request got: a status and JSON body, or ``status == 0`` for no answer."""

    status: int
    body: Any = None
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """Turned away on purpose: a JSON 503 or 429."""
        return self.status in (503, 429)


@dataclass
class Tally:
    """Counts of outcomes, and a description of every fault seen."""

    kinds: Counter[str] = field(default_factory=Counter)
    faults: list[str] = field(default_factory=list)

    def record(self, answer: Answer) -> None:
        kind = "closed" if answer.status == 0 else str(answer.status)
        self.kinds[kind] += 1


async def call(
    client: httpx.AsyncClient, method: str, path: str, tally: Tally, body: Any = None
) -> Answer:
    """Send one request and classify its outcome; a fault is added to ``tally.faults``."""
    started = time.monotonic()
    try:
        request = client.build_request(method, path, json=body)
        response = await client.send(request, stream=True)
    except NOT_ANSWERED:
        answer = Answer(0, seconds=time.monotonic() - started)
        tally.record(answer)
        return answer
    try:
        content = await response.aread()
    except httpx.HTTPError as exc:  # the head arrived, the body did not: truncated
        tally.faults.append(f"{method} {path}: body cut short after {response.status_code}: {exc}")
        return Answer(0, seconds=time.monotonic() - started)
    finally:
        await response.aclose()
    answer = Answer(response.status_code, None, response.headers, time.monotonic() - started)
    tally.record(answer)
    problem = _problem(answer, content)
    if problem:
        tally.faults.append(f"{method} {path}: {problem}")
    return answer


def _problem(answer: Answer, content: bytes) -> str | None:
    """Why an answer breaks the contract, or None."""
    try:
        answer.body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return f"{answer.status} with a body that is not JSON: {content[:200]!r}"
    if answer.ok:
        return None
    expected = {503: "unavailable", 429: "rate_limited"}.get(answer.status)
    body = answer.body if isinstance(answer.body, dict) else {}
    if expected is None:
        return f"unexpected {answer.status}: {content[:300]!r}"
    if body.get("code") != expected or not isinstance(body.get("message"), str):
        return f"{answer.status} without the error shape: {content[:300]!r}"
    if not answer.headers.get("retry-after", "").isdigit():
        return f"{answer.status} without a Retry-After header"
    return None
