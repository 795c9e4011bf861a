"""Helpers for the workflow tests over real HTTP: blueprints, executions and pull workers."""

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

Json = dict[str, Any]
WorkFn = Callable[[Json], Any | Awaitable[Any]]


class WorkFailed(Exception):
    """Raised by a worker function: the job is acked ``failed`` with this text."""

    def __init__(self, error: str, retryable: bool = True) -> None:
        super().__init__(error)
        self.error = error
        self.retryable = retryable


def pull_step(
    step_id: str,
    queue: str,
    template: Any = None,
    depends_on: list[str] | None = None,
    catch: str | None = None,
    **job: Any,
) -> Json:
    """A blueprint step whose job is on pull queue ``queue``."""
    step: Json = {
        "id": step_id,
        "job_trigger": {"trigger": {"type": "pull", "queue": queue}, **job},
        "payload_template": template,
    }
    if depends_on:
        step["depends_on"] = depends_on
    if catch:
        step["catch"] = catch
    return step


async def create_blueprint(client: httpx.AsyncClient, steps: list[Json], **fields: Any) -> Json:
    """POST a blueprint and insist on 200."""
    body = {"name": fields.pop("name", "bp"), "steps": steps, **fields}
    response = await client.post("/infra/workflows/blueprints", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def trigger(
    client: httpx.AsyncClient, blueprint_id: str, input_data: Json | None = None, **body: Any
) -> Json:
    """Trigger an execution and insist on 200; the trigger answer."""
    response = await client.post(
        f"/infra/workflows/blueprints/{blueprint_id}/trigger",
        json={"input_data": input_data or {}, **body},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def start(
    client: httpx.AsyncClient, steps: list[Json], input_data: Json | None = None, **fields: Any
) -> str:
    """Create a blueprint, trigger it once; the execution id."""
    blueprint = await create_blueprint(client, steps, **fields)
    return str((await trigger(client, blueprint["id"], input_data))["execution_id"])


async def execution(client: httpx.AsyncClient, execution_id: str) -> Json:
    response = await client.get(f"/infra/workflows/executions/{execution_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def step_of(state: Json, step_id: str) -> Json:
    """One step of an execution object."""
    [step] = [s for s in state["steps"] if s["step_id"] == step_id]
    return dict(step)


def statuses(state: Json) -> dict[str, str]:
    """Step id -> step status."""
    return {s["step_id"]: s["status"] for s in state["steps"]}


async def wait_execution(
    client: httpx.AsyncClient,
    execution_id: str,
    predicate: Callable[[Json], Any],
    timeout: float = 10,
) -> Json:
    """Poll the execution until ``predicate`` holds (bounded by ``timeout``)."""
    state: Json = {}
    try:
        with anyio.fail_after(timeout):
            while True:
                state = await execution(client, execution_id)
                if predicate(state):
                    return state
                await anyio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"condition never held; last state: {state}") from None


async def wait_status(
    client: httpx.AsyncClient, execution_id: str, status: str, timeout: float = 10
) -> Json:
    return await wait_execution(client, execution_id, lambda s: s["status"] == status, timeout)


async def wait_step(
    client: httpx.AsyncClient, execution_id: str, step_id: str, status: str, timeout: float = 10
) -> Json:
    """Poll until the step has ``status``; the execution."""
    return await wait_execution(
        client, execution_id, lambda s: step_of(s, step_id)["status"] == status, timeout
    )


async def events(client: httpx.AsyncClient, execution_id: str) -> list[Json]:
    """Every event of an execution, following cursors."""
    found: list[Json] = []
    cursor = None
    while True:
        query = f"?limit=100&cursor={cursor}" if cursor else "?limit=100"
        response = await client.get(f"/infra/workflows/executions/{execution_id}/events{query}")
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["events"]
        cursor = body["next_cursor"]
        if cursor is None:
            return found


async def get_job(client: httpx.AsyncClient, job_id: str) -> Json:
    response = await client.get(f"/infra/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def queue_jobs(client: httpx.AsyncClient, queue: str) -> list[Json]:
    """Every job (any status) on a queue, following cursors."""
    found: list[Json] = []
    cursor = None
    while True:
        query = f"queue={queue}&limit=100" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(f"/infra/jobs?{query}")
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["jobs"]
        cursor = body["next_cursor"]
        if cursor is None:
            return found


async def claim(
    client: httpx.AsyncClient, queue: str, wait: float = 5, **options: Any
) -> list[Json]:
    """Claim (long-polling up to ``wait`` seconds) from a pull queue."""
    response = await client.post(
        "/infra/jobs/claim", json={"queue": queue, "wait_seconds": wait, **options}
    )
    assert response.status_code == 200, response.text
    return list(response.json())


async def claim_one(client: httpx.AsyncClient, queue: str, wait: float = 5, **options: Any) -> Json:
    """Claim exactly one job from a queue."""
    jobs = await claim(client, queue, wait, **options)
    assert len(jobs) == 1, jobs
    return jobs[0]


async def ack(
    client: httpx.AsyncClient,
    job: Json,
    result: Any = None,
    *,
    error: Any = None,
    retryable: bool = True,
) -> Json:
    """Ack a claimed job: completed with ``result``, or failed when ``error`` is given."""
    body: Json = {"claim_token": job["claim_token"], "retryable": retryable}
    if error is None:
        body |= {"status": "completed", "result": result}
    else:
        body |= {"status": "failed", "error": error}
    response = await client.post(f"/infra/jobs/{job['id']}/ack", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def run_worker(
    client: httpx.AsyncClient,
    queue: str,
    fn: WorkFn,
    stop: anyio.Event,
    seen: list[Json] | None = None,
) -> None:
    """A pull worker: long-poll claims on ``queue``, ack each job with ``fn(job)``.

    ``fn`` returns the result (or an awaitable of it); raising :class:`WorkFailed` acks the
    job failed. Every job handled is appended to ``seen``. Runs until ``stop`` is set.
    """
    while not stop.is_set():
        for job in await claim(client, queue, wait=0.5, count=10):
            if seen is not None:
                seen.append(job)
            try:
                result = fn(job)
                if inspect.isawaitable(result):
                    result = await result
            except WorkFailed as failure:
                await ack(client, job, error=failure.error, retryable=failure.retryable)
            else:
                await ack(client, job, result)


@asynccontextmanager
async def workers(client: httpx.AsyncClient, fns: Mapping[str, WorkFn]) -> AsyncIterator[None]:
    """Pull workers (one per queue) for the duration of the block."""
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        for queue, fn in fns.items():
            tg.start_soon(run_worker, client, queue, fn, stop)
        try:
            yield
        finally:
            stop.set()
