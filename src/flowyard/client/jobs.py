"""``client.jobs`` and ``client.queues``: jobs, runs, the pull protocol, queue settings."""

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from flowyard.client.core import Call, query, returns, returns_field, returns_page, segment
from flowyard.client.models import (
    UNSET,
    Body,
    ClaimedJob,
    Exchanged,
    Job,
    JobStatusName,
    Page,
    Queue,
    Run,
    TriggerName,
    Unset,
)
from flowyard.client.namespace import Mode, Namespace, endpoint, paginate
from flowyard.http.schemas import (
    AckBody,
    ClaimBody,
    ExchangeAck,
    ExchangeClaim,
    HeartbeatBody,
    QueueBody,
)
from flowyard.jobs.model import NULL, Trigger
from flowyard.jobs.spec import JobPatch, JobSpec

JobList = list[Job]
ClaimedList = list[ClaimedJob]


def job_spec(trigger: Trigger, payload: Any = None, **options: Any) -> JobSpec:
    """A :class:`JobSpec` with ``payload`` given as any JSON-able value (not ``Raw``).

    ``job_spec(PullQueue("emails"), {"to": "ada@example.com"}, max_attempts=5)``
    """
    return JobSpec(trigger=trigger, payload=_raw(payload), **options)


def job_ack(
    job_id: str,
    claim_token: str,
    *,
    status: Literal["completed", "failed"] = "completed",
    result: Any = None,
    error: str | None = None,
    retryable: bool = True,
) -> ExchangeAck:
    """One ack for :meth:`Jobs.exchange`, with ``result`` given as any JSON-able value."""
    return ExchangeAck(
        job_id=job_id,
        claim_token=claim_token,
        status=status,
        result=NULL if result is None else _raw(result),
        error=error,
        retryable=retryable,
    )


def _raw(value: Any) -> msgspec.Raw:
    return value if isinstance(value, msgspec.Raw) else msgspec.Raw(msgspec.json.encode(value))


class Jobs(Namespace[Mode]):
    """``/infra/jobs``: jobs, their runs, the pull protocol and the signing secret."""

    @endpoint
    def create(self, job: JobSpec | Body) -> Call[Job]:
        """Create a job (``JobSpec`` or a dict of the same fields); the job, ``pending``."""
        return Call("POST", "/infra/jobs", returns(Job), body=job)

    @endpoint
    def create_batch(self, jobs: Sequence[JobSpec | Body]) -> Call[JobList]:
        """Create 1..100 jobs, all or none; the jobs in the order given."""
        return Call(
            "POST", "/infra/jobs/batch", returns_field("jobs", JobList), body={"jobs": jobs}
        )

    @endpoint
    def get(self, job_id: str) -> Call[Job]:
        """One job."""
        return Call("GET", f"/infra/jobs/{segment(job_id)}", returns(Job))

    @endpoint
    def list(
        self,
        *,
        status: JobStatusName | None = None,
        trigger_type: TriggerName | None = None,
        queue: str | None = None,
        limit: int = 25,
        cursor: str | None = None,
    ) -> Call[Page[Job]]:
        """One page of jobs, newest first."""
        params = query(
            status=status, trigger_type=trigger_type, queue=queue, limit=limit, cursor=cursor
        )
        return Call("GET", "/infra/jobs", returns_page("jobs", Job), params)

    iter = paginate(list)
    """Every job that matches, newest first, following cursors."""

    @endpoint
    def update(self, job_id: str, patch: JobPatch | Body) -> Call[Job]:
        """Change handler, payload, enabled or trigger timing before the job runs (else 409)."""
        return Call("PATCH", f"/infra/jobs/{segment(job_id)}", returns(Job), body=patch)

    @endpoint
    def cancel(self, job_id: str) -> Call[Job]:
        """Cancel a job that has not ended (409 if it has)."""
        return Call("DELETE", f"/infra/jobs/{segment(job_id)}", returns(Job))

    @endpoint
    def trigger(self, job_id: str) -> Call[Job]:
        """Fire a scheduled job now."""
        return Call("POST", f"/infra/jobs/{segment(job_id)}/trigger", returns(Job))

    @endpoint
    def retry(self, job_id: str) -> Call[Job]:
        """Put a failed job back to pending with fresh attempts (409 unless failed)."""
        return Call("POST", f"/infra/jobs/{segment(job_id)}/retry", returns(Job))

    @endpoint
    def runs(self, job_id: str, *, limit: int = 25, cursor: str | None = None) -> Call[Page[Run]]:
        """One page of a job's runs (deliveries or claims), newest first."""
        params = query(limit=limit, cursor=cursor)
        return Call("GET", f"/infra/jobs/{segment(job_id)}/runs", returns_page("runs", Run), params)

    iter_runs = paginate(runs)
    """Every run of a job, newest first."""

    @endpoint
    def claim(
        self,
        queue: str,
        *,
        count: int = 1,
        visibility_timeout: int = 30,
        wait_seconds: float = 0,
    ) -> Call[ClaimedList]:
        """Claim up to ``count`` jobs of a pull queue, long-polling up to ``wait_seconds``.

        Each job carries the ``claim_token`` that :meth:`ack` and :meth:`heartbeat` need; the
        lease lasts ``visibility_timeout`` seconds. An empty list when nothing came.
        """
        body = ClaimBody(
            queue=queue,
            count=count,
            visibility_timeout=visibility_timeout,
            wait_seconds=wait_seconds,
        )
        return Call(
            "POST", "/infra/jobs/claim", returns(ClaimedList), body=body, long_poll=wait_seconds
        )

    @endpoint
    def ack(
        self,
        job_id: str,
        claim_token: str | None,
        *,
        status: Literal["completed", "failed"] = "completed",
        result: Any = None,
        error: str | None = None,
        retryable: bool = True,
    ) -> Call[Job]:
        """Report a claimed job's outcome: ``result`` when completed, ``error`` when failed.

        A failed ack with ``retryable=False`` ends the job at once. 409 when the claim is no
        longer held (the lease ran out and the job was claimed again, or it was acked).
        """
        body = AckBody(
            status=status,
            claim_token=claim_token,  # type: ignore[arg-type]  # None: the server's 400
            result=NULL if result is None else _raw(result),
            error=error,
            retryable=retryable,
        )
        return Call("POST", f"/infra/jobs/{segment(job_id)}/ack", returns(Job), body=body)

    @endpoint
    def exchange(
        self,
        acks: Sequence[ExchangeAck | Body] = (),
        *,
        queue: str | None = None,
        count: int = 1,
        visibility_timeout: int = 30,
        wait_seconds: float = 0,
    ) -> Call[Exchanged]:
        """Ack finished jobs and claim the next ones of ``queue`` in one round trip.

        Each ack (:func:`job_ack`, or a dict of its fields) is applied as :meth:`ack` would
        apply it, in order; the answer's ``acks`` holds one :class:`AckAnswer` per ack
        (``ok``, or the ``error`` it was refused with: ``conflict``, ``not_found``,
        ``invalid`` ...), and ``jobs`` the jobs claimed, as :meth:`claim` returns them.
        Without ``queue`` (or with ``count=0``) nothing is claimed.
        """
        body: dict[str, Any] = {"acks": list(acks)}
        if queue is not None:
            body["claim"] = ExchangeClaim(
                queue=queue,
                count=count,
                visibility_timeout=visibility_timeout,
                wait_seconds=wait_seconds,
            )
        wait = wait_seconds if queue is not None and count else 0
        return Call("POST", "/infra/jobs/exchange", returns(Exchanged), body=body, long_poll=wait)

    @endpoint
    def heartbeat(
        self, job_id: str, claim_token: str | None, *, visibility_timeout: int = 30
    ) -> Call[ClaimedJob]:
        """Extend a claim's lease to ``visibility_timeout`` seconds from now."""
        body = HeartbeatBody(
            claim_token=claim_token,  # type: ignore[arg-type]  # None: the server's 400
            visibility_timeout=visibility_timeout,
        )
        path = f"/infra/jobs/{segment(job_id)}/heartbeat"
        return Call("POST", path, returns(ClaimedJob), body=body)

    @endpoint
    def signing_secret(self) -> Call[str]:
        """The project's push-signing secret (see :func:`flowyard.signing.verify`)."""
        return Call("GET", "/infra/jobs/signing-secret", returns_field("signing_secret", str))

    @endpoint
    def rotate_signing_secret(self) -> Call[str]:
        """Replace the project's signing secret; the new one."""
        parse = returns_field("signing_secret", str)
        return Call("POST", "/infra/jobs/signing-secret/rotate", parse)


class Queues(Namespace[Mode]):
    """``/infra/queues``: depth and settings of the project's named queues."""

    @endpoint
    def list(self, *, limit: int = 25, cursor: str | None = None) -> Call[Page[Queue]]:
        """One page of queues, by name."""
        params = query(limit=limit, cursor=cursor)
        return Call("GET", "/infra/queues", returns_page("queues", Queue), params)

    iter = paginate(list)
    """Every queue, by name."""

    @endpoint
    def put(
        self,
        name: str,
        *,
        concurrency: int | None | Unset = UNSET,
        rate_limit_per_second: float | None | Unset = UNSET,
        paused: bool | Unset = UNSET,
        handler: str | None | Unset = UNSET,
    ) -> Call[Queue]:
        """Change a queue's settings (None clears a limit or the default handler; left out:
        unchanged). ``handler`` receives the queue's jobs that name no handler of their own."""
        body = QueueBody(
            concurrency=concurrency,
            rate_limit_per_second=rate_limit_per_second,
            paused=paused,
            handler=handler,
        )
        return Call("PUT", f"/infra/queues/{segment(name)}", returns(Queue), body=body)
