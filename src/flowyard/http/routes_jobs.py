"""``/infra/jobs``: create, list, inspect, change, and the pull and callback protocols."""

from typing import get_args

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowyard.actors.dispatcher import Outcome
from flowyard.billing import JOB_WRITE
from flowyard.errors import NotFound
from flowyard.http.body import query_choice, query_int, query_str, read_json, read_no_fields
from flowyard.http.context import caller, charge_read, context_of, peers
from flowyard.http.job_exchange import exchange_jobs
from flowyard.http.respond import json_response
from flowyard.http.schemas import (
    AckBody,
    BatchBody,
    CallbackBody,
    ClaimBody,
    HeartbeatBody,
    error_text,
)
from flowyard.jobs.model import JobStatus, TriggerType, claimed_views, job_view, run_view
from flowyard.jobs.spec import JobPatch, JobSpec, check_payload
from flowyard.storage import jobs as store
from flowyard.storage.projects import new_signing_secret, set_signing_secret, signing_secret

STATUSES = frozenset(s.value for s in JobStatus)
TRIGGER_TYPES = frozenset(get_args(TriggerType))


async def create_job(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    spec = await read_json(request, JobSpec)
    [job] = await runtime.jobs.create(key.project_id, [spec])
    return json_response(job_view(job), 202)


async def create_batch(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    body = await read_json(request, BatchBody)
    jobs = await runtime.jobs.create(key.project_id, body.jobs, batch=True)
    return json_response({"jobs": [job_view(job) for job in jobs]}, 202)


async def list_jobs(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:read")
    jobs, next_cursor = await store.list_jobs(
        runtime.db,
        project_id=key.project_id,
        status=query_choice(request, "status", STATUSES),
        trigger_type=query_choice(request, "trigger_type", TRIGGER_TYPES),
        queue=query_str(request, "queue", 128),
        cursor=query_str(request, "cursor", 512),
        limit=query_int(request, "limit", 25, 1, 100),
    )
    charge_read(request, runtime, key.project_id)
    return json_response({"jobs": [job_view(job) for job in jobs], "next_cursor": next_cursor})


async def get_job(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:read")
    # Read what is committed: memory may hold a transition whose commit is still in flight.
    job = await store.get_job(runtime.db, key.project_id, request.path_params["job_id"])
    if job is None:
        raise NotFound(f"job {request.path_params['job_id']} not found")
    charge_read(request, runtime, key.project_id)
    return json_response(job_view(job))


async def patch_job(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    job = await runtime.jobs.require(key.project_id, request.path_params["job_id"])
    patch = await read_json(request, JobPatch)
    return json_response(job_view(await runtime.jobs.patch(key.project_id, job.id, patch)))


async def cancel_job(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    job = await runtime.jobs.cancel(key.project_id, request.path_params["job_id"])
    return json_response(job_view(job))


async def trigger_job(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    job = await runtime.jobs.require(key.project_id, request.path_params["job_id"])
    await read_no_fields(request)
    job = await runtime.jobs.trigger(key.project_id, job.id)
    return json_response(job_view(job), 202)


async def retry_job(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    job = await runtime.jobs.require(key.project_id, request.path_params["job_id"])
    await read_no_fields(request)
    job = await runtime.jobs.retry(key.project_id, job.id)
    return json_response(job_view(job))


async def list_runs(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:read")
    job = await runtime.jobs.require(key.project_id, request.path_params["job_id"])
    runs, next_cursor = await store.list_runs(
        runtime.db,
        job.id,
        cursor=query_str(request, "cursor", 512),
        limit=query_int(request, "limit", 25, 1, 100),
    )
    charge_read(request, runtime, key.project_id)
    return json_response({"runs": [run_view(run) for run in runs], "next_cursor": next_cursor})


async def claim_jobs(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    body = await read_json(request, ClaimBody)
    others = peers(request)
    jobs = await runtime.jobs.claim(
        key.project_id,
        body.queue,
        body.count,
        body.visibility_timeout,
        body.wait_seconds,
        others.claims(key.project_id, body.queue, body.visibility_timeout) if others else None,
    )
    return json_response(claimed_views(jobs))


async def ack_job(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    job = await runtime.jobs.require(key.project_id, request.path_params["job_id"])
    body = await read_json(request, AckBody)
    check_payload(body.result, "$.result")
    updated = await runtime.jobs.ack(
        job,
        body.claim_token,
        completed=body.status == "completed",
        result=body.result,
        error=error_text(body.error),
        retryable=body.retryable,
    )
    return json_response(job_view(updated))


async def heartbeat_job(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    job = await runtime.jobs.require(key.project_id, request.path_params["job_id"])
    body = await read_json(request, HeartbeatBody)
    updated = await runtime.jobs.heartbeat(job, body.claim_token, body.visibility_timeout)
    return json_response(job_view(updated, claim_token=True))


async def run_callback(request: Request) -> Response:
    """A handler's deferred result; authorised by the URL's signature, not by a key.

    The signature is checked before the body is read: a caller without it is answered at
    once, whatever body it announces.
    """
    runtime = context_of(request).runtime
    runtime.check_ready()
    job_id, run_id = request.path_params["job_id"], request.path_params["run_id"]
    sig = request.query_params.get("sig", "")
    runtime.jobs.push.check_callback(job_id, run_id, sig)
    body = await read_json(request, CallbackBody)
    check_payload(body.result, "$.result")
    if body.status == "completed":
        outcome = Outcome("completed", result=body.result)
    else:
        outcome = Outcome("failed", error=error_text(body.error) or "failed")
    job = await runtime.jobs.push.callback(job_id, run_id, sig, outcome)
    return json_response(job_view(job))


async def get_signing_secret(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    secret = await signing_secret(runtime.db, key.project_id)
    charge_read(request, runtime, key.project_id)
    return json_response({"signing_secret": secret})


async def rotate_signing_secret(request: Request) -> Response:
    runtime, key = await caller(request, "jobs:write")
    await read_no_fields(request)
    secret = new_signing_secret()
    with runtime.accounts.paying(key.project_id, JOB_WRITE, "infra/jobs"):
        await runtime.db.commit([set_signing_secret(key.project_id, secret)])
    runtime.jobs.push.forget_secret(key.project_id)
    return json_response({"signing_secret": secret})


routes = [
    Route("/infra/jobs/claim", claim_jobs, methods=["POST"]),
    Route("/infra/jobs/exchange", exchange_jobs, methods=["POST"]),
    Route("/infra/jobs/{job_id}/ack", ack_job, methods=["POST"]),
    Route("/infra/jobs", create_job, methods=["POST"]),
    Route("/infra/jobs", list_jobs, methods=["GET"]),
    Route("/infra/jobs/batch", create_batch, methods=["POST"]),
    Route("/infra/jobs/signing-secret", get_signing_secret, methods=["GET"]),
    Route("/infra/jobs/signing-secret/rotate", rotate_signing_secret, methods=["POST"]),
    Route("/infra/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/infra/jobs/{job_id}", patch_job, methods=["PATCH"]),
    Route("/infra/jobs/{job_id}", cancel_job, methods=["DELETE"]),
    Route("/infra/jobs/{job_id}/trigger", trigger_job, methods=["POST"]),
    Route("/infra/jobs/{job_id}/retry", retry_job, methods=["POST"]),
    Route("/infra/jobs/{job_id}/runs", list_runs, methods=["GET"]),
    Route("/infra/jobs/{job_id}/heartbeat", heartbeat_job, methods=["POST"]),
    Route("/infra/jobs/{job_id}/runs/{run_id}/callback", run_callback, methods=["POST"]),
]
