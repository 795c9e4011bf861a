"""Acks that wait for their queue's next claim, so that a busy worker sends one request per
batch (``POST /infra/jobs/exchange``) instead of a claim and then one ack per job.

A job that finishes while its queue's claim loop waits for a free slot hands its ack to the
loop, with its slot: the loop wakes and sends the ack with a claim that reuses that slot.
While the loop has a request in flight (a long-poll may take ``wait_seconds``) or has
stopped, the job sends its ack on its own at once: an ack never waits for a long-poll.
"""

import anyio

from flowyard.client.models import ClaimedJob
from flowyard.worker.job import Outcome

MAX_ACKS = 100
"""The most acks one exchange may carry (the API's limit)."""


class AckBox:
    """The acks handed to one queue's claim loop, and the wait they interrupt."""

    def __init__(self) -> None:
        self.pending: list[tuple[ClaimedJob, Outcome]] = []
        self.waiting: anyio.CancelScope | None = None
        """The loop's wait for a free slot, while it waits."""

    def offer(self, job: ClaimedJob, outcome: Outcome) -> bool:
        """Hand the ack (and the job's slot) to the loop if it is waiting; whether it took it."""
        if self.waiting is None or len(self.pending) >= MAX_ACKS:
            return False
        self.pending.append((job, outcome))
        self.waiting.cancel()
        return True

    def take(self) -> list[tuple[ClaimedJob, Outcome]]:
        """The acks handed over so far (at most ``MAX_ACKS``), oldest first."""
        taken, self.pending = self.pending[:MAX_ACKS], self.pending[MAX_ACKS:]
        return taken
