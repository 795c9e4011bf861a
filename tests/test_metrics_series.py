"""The metrics' own series (``flowyard.metrics``) against ``prometheus_client``'s, which they
stand in for on the hot path: the same events give the same exposition, byte for byte; and the
exposition's builds, shared by the scrapes that arrive together."""

import random

import anyio
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from flowyard.metrics import JOB_BUCKETS, LATENCY_BUCKETS, ROW_BUCKETS, Exposition, Metrics

NAMES = (
    "flowyard_http_requests",
    "flowyard_http_request_duration_seconds",
    "flowyard_jobs_created",
    "flowyard_job_wait_seconds",
    "flowyard_commit_batch_rows",
)


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The lines of the metrics in ``NAMES``, sorted, without ``*_created`` series."""
    lines = generate_latest(registry).decode().splitlines()
    return sorted(
        line
        for line in lines
        if any(name in line for name in NAMES) and not _name(line).endswith("_created")
    )


def _name(line: str) -> str:
    """The metric a line of the exposition is about."""
    words = line.split(" ")
    return (words[2] if line.startswith("#") else words[0]).split("{")[0]


def test_the_same_events_give_prometheus_clients_exposition() -> None:
    ours = Metrics()
    reference = CollectorRegistry()
    requests = Counter(
        "flowyard_http_requests",
        "HTTP requests answered, by route template, method and status.",
        ["route", "method", "status"],
        registry=reference,
    )
    durations = Histogram(
        "flowyard_http_request_duration_seconds",
        "Time from a request's arrival to the end of its answer, by route template.",
        ["route"],
        buckets=LATENCY_BUCKETS,
        registry=reference,
    )
    created = Counter(
        "flowyard_jobs_created",
        "Jobs created, by what created them.",
        ["trigger"],
        registry=reference,
    )
    wait = Histogram(
        "flowyard_job_wait_seconds",
        "Time from a job run being ready to its start (claimed or delivered).",
        buckets=JOB_BUCKETS,
        registry=reference,
    )
    rows = Histogram(
        "flowyard_commit_batch_rows",
        "Rows written by one commit of the group-commit writer.",
        buckets=ROW_BUCKETS,
        registry=reference,
    )
    for trigger in ("immediate", "delayed", "scheduled", "queue", "pull", "workflow"):
        created.labels(trigger)  # ours makes every trigger's series up front
    draw = random.Random(7)
    routes = ["/infra/jobs", "/infra/jobs/{job_id}/ack", "unmatched"]
    for _ in range(2_000):
        route, status = draw.choice(routes), draw.choice([200, 201, 404, 409])
        # bounds themselves, and values on either side of them, land in the same buckets
        seconds = draw.choice([*LATENCY_BUCKETS, draw.expovariate(50), 0.0, 45.0])
        ours.answered(route, "POST", status, seconds)
        requests.labels(route, "POST", str(status)).inc()
        durations.labels(route).observe(seconds)
        trigger = draw.choice(["pull", "workflow"])
        ours.jobs_created_by[trigger].inc()
        created.labels(trigger).inc()
        waited = draw.choice([*JOB_BUCKETS, draw.expovariate(0.1)])
        ours.job_wait.observe(waited)
        wait.observe(waited)
        batch = draw.randint(1, 5_000)
        ours.committed(batch, seconds)
        rows.observe(batch)
    exposed = _exposition(ours.registry)
    assert len(exposed) > 60  # every series of the five metrics, buckets included
    assert exposed == _exposition(reference)


async def test_scrapes_at_once_share_one_build_and_none_is_older_than_its_request() -> None:
    metrics = Metrics()
    exposition = Exposition(metrics.registry, interval=0.2)
    first = await exposition.latest()  # idle: built at once
    assert exposition.builds == 1
    metrics.executions_started.inc()
    answers: list[bytes] = []

    async def scrape() -> None:
        answers.append(await exposition.latest())

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(scrape)
    assert exposition.builds == 2  # the 50 waited for one build, 0.2 s after the first
    assert len(answers) == 50 and len(set(answers)) == 1 and answers[0] != first
    assert b"flowyard_executions_started_total 1.0" in answers[0]
    metrics.executions_started.inc()  # a scrape right after sees it, though within 0.2 s
    assert b"flowyard_executions_started_total 2.0" in await exposition.latest()
    assert exposition.builds == 3


async def test_a_scrape_whose_client_left_does_not_cancel_the_others() -> None:
    metrics = Metrics()
    exposition = Exposition(metrics.registry, interval=0.2)
    await exposition.latest()
    answers: list[bytes] = []
    leaving = anyio.CancelScope()

    async def leaves() -> None:
        with leaving:
            await exposition.latest()

    async def stays() -> None:
        answers.append(await exposition.latest())

    async with anyio.create_task_group() as tg:
        tg.start_soon(leaves)
        tg.start_soon(stays)
        await anyio.sleep(0.01)
        leaving.cancel()
    assert leaving.cancelled_caught
    assert len(answers) == 1 and b"flowyard_executions_started_total" in answers[0]
    assert exposition.builds == 2
