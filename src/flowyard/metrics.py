"""The service's Prometheus metrics (DESIGN §9), made with ``prometheus_client``.

Each server has a registry of its own (:class:`Metrics`, held by the supervisor), so that
servers started in one process (tests, the demo) count apart. ``GET /metrics`` exposes it.

Counters and histograms move where the work happens; what is already held in memory (ready
jobs per queue, live executions) is read when Prometheus scrapes, through :meth:`watch`, so
the hot path pays nothing for it. No label holds an id: ``route`` is a route's template,
``queue`` a queue's name (summed over the projects that use it).
"""

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Seconds, for requests, commits and hand-offs: from half a millisecond (a read) to the
30 s of a long-poll claim."""

JOB_BUCKETS = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
)  # fmt: skip
"""Seconds, for a job's wait and run: a millisecond to the six hours of a long job."""

disable_created_metrics()  # type: ignore[no-untyped-call]  # no ``*_created`` series: a counter's start time is the process's

ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
"""Rows in one commit of the group-commit writer."""


class Metrics:
    """Every metric of DESIGN §9, in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.http_requests = Counter(
            "flowyard_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_request_duration = Histogram(
            "flowyard_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.jobs_created = Counter(
            "flowyard_jobs_created",
            "Jobs created, by what created them.",
            ["trigger"],
            registry=registry,
        )
        self.jobs_finished = Counter(
            "flowyard_jobs_finished",
            "Jobs that reached a final status, by that status.",
            ["status"],
            registry=registry,
        )
        self.job_wait = Histogram(
            "flowyard_job_wait_seconds",
            "Time from a job run being ready to its start (claimed or delivered).",
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.job_run = Histogram(
            "flowyard_job_run_seconds",
            "Time from a job run's start to its result.",
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.executions_started = Counter(
            "flowyard_executions_started", "Workflow executions started.", registry=registry
        )
        self.executions_finished = Counter(
            "flowyard_executions_finished",
            "Workflow executions that ended, by their final status.",
            ["status"],
            registry=registry,
        )
        self.step_handoff = Histogram(
            "flowyard_step_handoff_seconds",
            "Time from a step's result arriving to its dependents' jobs being ready.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.commit_batch_rows = Histogram(
            "flowyard_commit_batch_rows",
            "Rows written by one commit of the group-commit writer.",
            buckets=ROW_BUCKETS,
            registry=registry,
        )
        self.commit_duration = Histogram(
            "flowyard_commit_duration_seconds",
            "Time one commit of the group-commit writer takes, fsync included.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "flowyard_webhook_deliveries",
            "Webhook delivery attempts, by outcome.",
            ["status"],
            registry=registry,
        )
        self.mailbox_full = Counter(
            "flowyard_mailbox_full",
            "Messages refused because an actor's mailbox was full (answered 503).",
            registry=registry,
        )

    def watch(
        self,
        queue_depths: Callable[[], Mapping[str, int]],
        executions_live: Callable[[], int],
    ) -> None:
        """Read the gauges from memory at each scrape: ready jobs per queue name, and the
        executions whose actors are live."""
        self.registry.register(_Gauges(queue_depths, executions_live))


class _Gauges(Collector):
    """The gauges read from memory when Prometheus scrapes."""

    def __init__(
        self,
        queue_depths: Callable[[], Mapping[str, int]],
        executions_live: Callable[[], int],
    ) -> None:
        self._queue_depths = queue_depths
        self._executions_live = executions_live

    def describe(self) -> Iterable[Metric]:
        return ()  # nothing to check at registration; names are fixed above

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "flowyard_job_queue_depth",
            "Jobs pending, by queue name (depth in GET /infra/queues).",
            labels=["queue"],
        )
        for queue, count in sorted(self._queue_depths().items()):
            depth.add_metric([queue], count)
        yield depth
        yield GaugeMetricFamily(
            "flowyard_executions_live",
            "Workflow executions running or paused (their actors are live).",
            value=self._executions_live(),
        )
