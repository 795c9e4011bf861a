"""The vocabulary of a job's transitions: events (what happens to a job), the timer keys a job
arms, and effects (what a committed transition asks the shell to do).

Frozen, tagged msgspec Structs, so that they compare and hash by value (a timer armed again
with an equal key replaces the earlier one) and a ``match`` dispatches on them.
"""

import msgspec
from msgspec import Raw

from flowyard.jobs.model import Job, Run

# ----------------------------------------------------------------------------- events

# gc=False throughout: these hold no reference cycles, and several are made for every job.


class Claimed(msgspec.Struct, frozen=True, gc=False, tag="claimed"):
    """A worker claimed the job (pull)."""

    run_id: str
    claim_token: str
    visibility_seconds: int


class DeliveryStarted(msgspec.Struct, frozen=True, gc=False, tag="delivery_started"):
    """A push delivery of the job begins."""

    run_id: str


class HandlerAccepted(msgspec.Struct, frozen=True, gc=False, tag="handler_accepted"):
    """The handler answered 202: the result comes later, on the callback URL."""

    callback_deadline: int
    handler_status: int | None = None


class LeaseExtended(msgspec.Struct, frozen=True, gc=False, tag="lease_extended"):
    """The worker holding the job heartbeats."""

    visibility_seconds: int


class AttemptEnded(msgspec.Struct, frozen=True, gc=False, tag="attempt_ended"):
    """The current attempt ended: an answer, an ack, a callback, or a lease or window out."""

    completed: bool
    result: Raw | None = None
    error: str | None = None
    handler_status: int | None = None
    retryable: bool = True
    retry_base_seconds: float = 2.0
    draw: float = 1.0  # uniform in [0, 1): the exponential backoff's jitter


class Withdrawn(msgspec.Struct, frozen=True, gc=False, tag="withdrawn"):
    """A client cancelled the job, or its workflow withdrew it."""

    reason: str = "cancelled"


class Interrupted(msgspec.Struct, frozen=True, gc=False, tag="interrupted"):
    """A restart found a push delivery in flight: it is delivered again, uncounted."""


class RetryRequested(msgspec.Struct, frozen=True, gc=False, tag="retry_requested"):
    """A client sends a failed job back to pending with fresh attempts."""


class TriggerRequested(msgspec.Struct, frozen=True, gc=False, tag="trigger_requested"):
    """A client fires a scheduled job now, or makes a waiting job due now."""


class CronFired(msgspec.Struct, frozen=True, gc=False, tag="cron_fired"):
    """The cron slot ``due`` of a scheduled job has come."""

    due: int


JobEvent = (
    Claimed
    | DeliveryStarted
    | HandlerAccepted
    | LeaseExtended
    | AttemptEnded
    | Withdrawn
    | Interrupted
    | RetryRequested
    | TriggerRequested
    | CronFired
)


# ----------------------------------------------------------------------------- timers


class Due(msgspec.Struct, frozen=True, gc=False, tag="due"):
    """The job's ``run_at`` (a delay or a retry's backoff) has come."""

    job_id: str


class Fire(msgspec.Struct, frozen=True, gc=False, tag="fire"):
    """A scheduled job's cron slot ``at`` has come."""

    job_id: str
    at: int


class Lease(msgspec.Struct, frozen=True, gc=False, tag="lease"):
    """The lease ``claim_token`` of a claimed job runs out."""

    job_id: str
    claim_token: str | None


class Callback(msgspec.Struct, frozen=True, gc=False, tag="callback"):
    """The callback window of run ``run_id`` (answered 202) closes."""

    job_id: str
    run_id: str | None


JobTimer = Due | Fire | Lease | Callback
"""A job's timer keys: arming one again replaces it (frozen Structs hash by value)."""


# ----------------------------------------------------------------------------- effects


class ArmTimer(msgspec.Struct, frozen=True, gc=False, tag="arm_timer"):
    """Fire ``key`` at ``due`` (replacing the key's earlier due)."""

    due: int
    key: JobTimer


class CancelTimer(msgspec.Struct, frozen=True, gc=False, tag="cancel_timer"):
    """Forget the timer ``key``: what it watched for cannot happen any more."""

    key: JobTimer


class MakeReady(msgspec.Struct, frozen=True, gc=False, tag="make_ready"):
    """The job is due now: put it on its queue's ready heap, or hand it to push delivery."""


class NotifyEnded(msgspec.Struct, frozen=True, gc=False, tag="notify_ended"):
    """The job ended: tell its ``callback_url``."""


Effect = ArmTimer | CancelTimer | MakeReady | NotifyEnded


class Transition(msgspec.Struct, frozen=True, gc=False):
    """A job's new record, the runs it opened or closed, and the effects to run after commit."""

    job: Job
    runs: list[Run]
    effects: list[Effect]
