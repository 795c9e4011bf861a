"""One claimed job: run its handler while the lease is renewed; an ack sent on its own."""

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import anyio.to_thread
import httpx
import msgspec

from flowyard.client import AsyncClient
from flowyard.client.errors import BadRequest, Conflict, FlowyardAPIError, PayloadTooLarge
from flowyard.client.models import AckAnswer, ClaimedJob
from flowyard.http.schemas import ExchangeAck
from flowyard.jobs.model import NULL

log = logging.getLogger("flowyard.worker")

HandlerFn = Callable[[ClaimedJob], Any] | Callable[[ClaimedJob], Awaitable[Any]]
"""A handler: takes the claimed job, returns its result (or an awaitable of it)."""

ACK_ATTEMPTS = 5
RETRY_BACKOFF = (0.5, 10.0)
"""First and largest pause after a failed claim or ack (doubling in between)."""


class PermanentError(Exception):
    """Raised by a handler: the job fails now, without its remaining attempts."""


@dataclass(frozen=True)
class Route:
    """What the worker does with one queue."""

    queue: str
    fn: HandlerFn
    is_async: bool
    concurrency: int | None
    visibility_timeout: int

    @classmethod
    def of(cls, queue: str, fn: HandlerFn, concurrency: int | None, visibility: int) -> "Route":
        call = getattr(fn, "__call__", None)  # noqa: B004 - objects with an async __call__
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
        return cls(queue, fn, is_async, concurrency, visibility)


@dataclass(frozen=True)
class Outcome:
    """What to ack."""

    status: Literal["completed", "failed"]
    result: msgspec.Raw | None = None
    error: str | None = None
    retryable: bool = True


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def run_job(
    client: AsyncClient, route: Route, job: ClaimedJob, threads: anyio.CapacityLimiter
) -> Outcome:
    """Run the handler with the lease kept alive; what to ack."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_heartbeat, client, route, job)
        outcome = await _call(route, job, threads)
        tg.cancel_scope.cancel()
    return outcome


def ack_item(job: ClaimedJob, outcome: Outcome) -> ExchangeAck:
    """The ack of ``job`` for an exchange."""
    assert job.claim_token is not None
    return ExchangeAck(
        job_id=job.id,
        claim_token=job.claim_token,
        status=outcome.status,
        result=NULL if outcome.result is None else outcome.result,
        error=outcome.error,
        retryable=outcome.retryable,
    )


def refused(job: ClaimedJob, outcome: Outcome, answer: AckAnswer) -> Outcome | None:
    """What to do about an ack an exchange refused: the outcome to send again (alone, after
    a pause), or None when it is final (logged here)."""
    error = answer.error
    assert error is not msgspec.UNSET
    if error.code == "payload_too_large" and outcome.status == "completed":
        return Outcome("failed", error=f"result too large: {error.message}")
    if error.code in {"unavailable", "rate_limited", "internal_error", "insufficient_tokens"}:
        return outcome
    if error.code == "conflict":
        log.warning("job %s: ack refused (%s)", job.id, error.message)
    else:
        log.error("job %s: ack refused (%s: %s)", job.id, error.code, error.message)
    return None


async def _call(route: Route, job: ClaimedJob, threads: anyio.CapacityLimiter) -> Outcome:
    try:
        if route.is_async:
            result = await route.fn(job)
        else:
            result = await anyio.to_thread.run_sync(route.fn, job, limiter=threads)
        if inspect.isawaitable(result):
            result = await result
        return Outcome("completed", msgspec.Raw(msgspec.json.encode(result)))
    except PermanentError as exc:
        log.info("job %s failed for good: %s", job.id, exc)
        return Outcome("failed", error=_error_text(exc), retryable=False)
    except Exception as exc:
        log.warning("job %s failed (attempt %d)", job.id, job.attempt, exc_info=True)
        return Outcome("failed", error=_error_text(exc))


async def _heartbeat(client: AsyncClient, route: Route, job: ClaimedJob) -> None:
    """Extend the lease every third of it, so that one lost heartbeat is survivable."""
    assert job.claim_token is not None
    every = route.visibility_timeout / 3
    while True:
        await anyio.sleep(every)
        try:
            await client.jobs.heartbeat(
                job.id, job.claim_token, visibility_timeout=route.visibility_timeout
            )
        except Conflict as exc:
            log.warning("job %s: lease lost (%s); its ack will be refused", job.id, exc)
            return
        except (FlowyardAPIError, httpx.HTTPError) as exc:
            log.warning("job %s: heartbeat failed (%s)", job.id, exc)


async def send_ack(client: AsyncClient, job: ClaimedJob, outcome: Outcome) -> None:
    """Ack on its own (an exchange that claims nothing), retrying what may pass later; a
    refusal (a conflict: the lease is gone) is final."""
    pause = RETRY_BACKOFF[0]
    for attempt in range(1, ACK_ATTEMPTS + 1):
        problem: object
        try:
            [answer] = (await client.jobs.exchange([ack_item(job, outcome)])).acks
        except (BadRequest, PayloadTooLarge) as exc:
            log.error("job %s: ack refused (%s)", job.id, exc)
            return
        except (FlowyardAPIError, httpx.HTTPError) as exc:
            problem = exc
        else:
            if answer.ok:
                return
            again = refused(job, outcome, answer)
            if again is None:
                return
            if again is not outcome:  # the same ack made smaller: sent at once
                outcome = again
                continue
            problem = getattr(answer.error, "message", answer.error)
        if attempt == ACK_ATTEMPTS:
            log.error(
                "job %s: ack failed %d times (%s); its lease will run out", job.id, attempt, problem
            )
            return
        log.warning("job %s: ack failed (%s); retrying in %.1f s", job.id, problem, pause)
        await anyio.sleep(pause)
        pause = min(pause * 2, RETRY_BACKOFF[1])
