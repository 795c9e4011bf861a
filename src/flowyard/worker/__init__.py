"""Pull workers: claim jobs from pull queues, run a handler on each, ack the outcome.

    from flowyard.worker import PermanentError, Worker

    worker = Worker("http://127.0.0.1:8080", api_key="sk_live_...", concurrency=8)

    @worker.handler("payments")
    def charge(job):                      # sync handlers run in worker threads
        if job.payload["amount"] <= 0:
            raise PermanentError("nothing to charge")   # failed, not retried
        return {"charge_id": "ch_123"}    # acked as the job's result

    worker.run()                          # blocks; SIGTERM/SIGINT drain, then it returns 0

A handler takes the claimed job (:class:`flowyard.client.models.ClaimedJob`) and returns its
result (any JSON value). An exception acks a failed attempt with the exception's text (retried
while attempts are left); :class:`PermanentError` fails the job for good. Handlers may be
``async def`` (run on the event loop) or plain functions (run in threads).

How it runs: one claim loop per queue long-polls (``wait_seconds``) for as many jobs as there
are free slots (``concurrency`` overall, and a queue's own limit if given), so the worker never
holds more jobs than it can run; with several queues one claim asks for at most an equal share
of the slots, so that an idle queue's long poll cannot hold them all. While a handler runs, its
lease is extended every third of the ``visibility_timeout``. Acks go over ``POST
/infra/jobs/exchange``: a job that finishes while its queue's loop waits for a free slot hands
its ack (and its slot) to the loop, which sends it with its next claim, so a busy worker sends
one request per batch; one that finishes while a claim is in flight acks on its own at once
(``worker/acks.py``). A stop (``stop()``, or SIGTERM or
SIGINT under :meth:`Worker.run`) lets each queue's claim in flight return (within
``wait_seconds``: a claim given up on would leave the jobs it got leased to nobody), claims
nothing more, and runs and acks every job held; then :meth:`Worker.run` returns 0. A second
signal (or ``shutdown_timeout``) cancels the async handlers still running (handlers in threads
cannot be interrupted and are waited for); their leases run out and their jobs are retried.
Everything is bounded: one claim in flight per queue, at most ``concurrency`` jobs and
threads, and a few ack retries per job.
"""

from flowyard.worker.job import HandlerFn, PermanentError
from flowyard.worker.runner import Worker

__all__ = ["HandlerFn", "PermanentError", "Worker"]
