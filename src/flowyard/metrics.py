"""The service's Prometheus metrics (DESIGN §9), exposed with ``prometheus_client``.

Each server has a registry of its own (:class:`Metrics`, held by the supervisor and handed by
it to each part that moves a metric), so that servers started in one process (tests, the
demo) count apart. ``GET /metrics`` exposes it with ``prometheus_client.generate_latest``.

Counters and histograms move where the work happens, a few times per request and per job:
``prometheus_client``'s own ``Counter`` and ``Histogram`` take a lock and make several
Python calls per event, which came to some 4% of the instructions of a whole workflow
execution (``bench/README.md``). Their series here are plain numbers instead
(:class:`Count`, :class:`Distribution`): each is moved by one thread only (the event loop,
or the SQLite writer thread for the commit metrics), and a collector turns them into
``prometheus_client`` metric families when Prometheus scrapes, as it does for the gauges;
``tests/test_metrics_series.py`` checks that they expose what ``prometheus_client``'s would.
What is already held in memory (ready jobs per queue, live executions) is only read at the
scrape, through :meth:`Metrics.watch`.

No label holds an id: ``route`` is a route's template (or :data:`UNMATCHED`), ``queue`` a
queue's name (summed over the projects that use it), and every other label takes one of the
fixed values below. Labelled series are made once (here, or on first use for ``route``) and
looked up in dictionaries.
"""

import asyncio
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Seconds, for requests, commits and hand-offs: from half a millisecond (a read) to the
30 s of a long-poll claim."""

JOB_BUCKETS = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
)  # fmt: skip
"""Seconds, for a job's wait and run: a millisecond to the six hours of a long job."""

ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
"""Rows in one commit of the group-commit writer."""

UNMATCHED = "unmatched"
"""The ``route`` of a request that no route matched (404), or that was refused before routing
(the in-flight cap's 503)."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""The ``method`` labels; any other method is counted as ``OTHER``."""
OTHER = "OTHER"
TRIGGERS = ("immediate", "delayed", "scheduled", "queue", "pull", "workflow")
"""``trigger`` of ``flowyard_jobs_created_total``: a job's trigger type, or ``workflow`` for a
job a workflow step (or one of its ``for_each`` items) created, whatever its trigger."""
JOB_ENDS = ("completed", "failed", "cancelled")
EXECUTION_ENDS = ("completed", "failed", "compensated", "cancelled")
DELIVERY_OUTCOMES = ("succeeded", "retrying", "failed")
"""``status`` of ``flowyard_webhook_deliveries_total``, per attempt: the receiver answered
2xx; the attempt failed and another is due; it failed and it was the last one."""

SCRAPE_INTERVAL = 0.1
"""The least time between two builds of the exposition (see :class:`Exposition`)."""

Labels = tuple[str, ...]


class Count:
    """One series of a counter."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class Distribution:
    """One series of a histogram: a count per bucket (the last one is ``+Inf``), and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # the first bound >= amount
        self.sum += amount


class _Family:
    """A metric's name, help text, label names and series (by label values)."""

    def __init__(self, name: str, documentation: str, labels: Labels) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labels

    def collect(self) -> Metric:
        raise NotImplementedError


class CounterFamily(_Family):
    """A counter (exposed as ``<name>_total``)."""

    def __init__(self, name: str, documentation: str, labels: Labels = ()) -> None:
        super().__init__(name, documentation, labels)
        self.series: dict[Labels, Count] = {}

    def labels(self, *values: str) -> Count:
        """The series of these label values (made on first use)."""
        found = self.series.get(values)
        if found is None:
            found = self.series[values] = Count()
        return found

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, count in list(self.series.items()):
            family.add_metric(values, count.value)
        return family


class HistogramFamily(_Family):
    """A histogram with fixed buckets."""

    def __init__(
        self, name: str, documentation: str, bounds: Sequence[float], labels: Labels = ()
    ) -> None:
        super().__init__(name, documentation, labels)
        self.bounds = tuple(float(bound) for bound in bounds)
        names = [floatToGoString(bound) for bound in self.bounds]  # type: ignore[no-untyped-call]
        self._names = [*names, "+Inf"]
        self.series: dict[Labels, Distribution] = {}

    def labels(self, *values: str) -> Distribution:
        """The series of these label values (made on first use)."""
        found = self.series.get(values)
        if found is None:
            found = self.series[values] = Distribution(self.bounds)
        return found

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, series in list(self.series.items()):
            total, cumulative = series.sum, []
            running = 0
            for name, count in zip(self._names, list(series.counts), strict=True):
                running += count
                cumulative.append((name, float(running)))
            family.add_metric(values, cumulative, total)
        return family


class Metrics:
    """Every metric of DESIGN §9, in one registry.

    The attributes are what the hot paths move: a :class:`Count` or :class:`Distribution`
    for a metric without labels, a dictionary of them by label value otherwise.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.exposition = Exposition(self.registry)
        http_requests = CounterFamily(
            "flowyard_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
        )
        http_request_duration = HistogramFamily(
            "flowyard_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template.",
            LATENCY_BUCKETS,
            ("route",),
        )
        jobs_created = CounterFamily(
            "flowyard_jobs_created", "Jobs created, by what created them.", ("trigger",)
        )
        jobs_finished = CounterFamily(
            "flowyard_jobs_finished",
            "Jobs that reached a final status, by that status.",
            ("status",),
        )
        job_wait = HistogramFamily(
            "flowyard_job_wait_seconds",
            "Time from a job run being ready to its start (claimed or delivered).",
            JOB_BUCKETS,
        )
        job_run = HistogramFamily(
            "flowyard_job_run_seconds", "Time from a job run's start to its result.", JOB_BUCKETS
        )
        executions_started = CounterFamily(
            "flowyard_executions_started", "Workflow executions started."
        )
        executions_finished = CounterFamily(
            "flowyard_executions_finished",
            "Workflow executions that ended, by their final status.",
            ("status",),
        )
        step_handoff = HistogramFamily(
            "flowyard_step_handoff_seconds",
            "Time from a step's result arriving to its dependents' jobs being ready.",
            LATENCY_BUCKETS,
        )
        commit_batch_rows = HistogramFamily(
            "flowyard_commit_batch_rows",
            "Rows written by one commit of the group-commit writer.",
            ROW_BUCKETS,
        )
        commit_duration = HistogramFamily(
            "flowyard_commit_duration_seconds",
            "Time one commit of the group-commit writer takes, fsync included.",
            LATENCY_BUCKETS,
        )
        webhook_deliveries = CounterFamily(
            "flowyard_webhook_deliveries",
            "Webhook delivery attempts, by outcome.",
            ("status",),
        )
        mailbox_full = CounterFamily(
            "flowyard_mailbox_full",
            "Messages refused because an actor's mailbox (or the writer) was full (503).",
        )
        self._http_requests = http_requests
        self._http_request_duration = http_request_duration
        # (route, method, status) -> the series an answer moves: its count, its route's time
        self._answers: dict[tuple[str, str, int], tuple[Count, Distribution]] = {}
        self.jobs_created_by = {value: jobs_created.labels(value) for value in TRIGGERS}
        self.jobs_finished_by = {value: jobs_finished.labels(value) for value in JOB_ENDS}
        self.job_wait = job_wait.labels()
        self.job_run = job_run.labels()
        self.executions_started = executions_started.labels()
        self.executions_finished_by = {
            value: executions_finished.labels(value) for value in EXECUTION_ENDS
        }
        self.step_handoff = step_handoff.labels()
        self.commit_batch_rows = commit_batch_rows.labels()
        self.commit_duration = commit_duration.labels()
        self.webhook_deliveries_by = {
            value: webhook_deliveries.labels(value) for value in DELIVERY_OUTCOMES
        }
        self.mailbox_full = mailbox_full.labels()
        self.registry.register(
            _Families(
                [
                    http_requests,
                    http_request_duration,
                    jobs_created,
                    jobs_finished,
                    job_wait,
                    job_run,
                    executions_started,
                    executions_finished,
                    step_handoff,
                    commit_batch_rows,
                    commit_duration,
                    webhook_deliveries,
                    mailbox_full,
                ]
            )
        )

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count an HTTP answer: ``route`` is the matched route's template or
        :data:`UNMATCHED`, ``seconds`` the time from the request to the end of the answer."""
        key = (route, method, status)
        series = self._answers.get(key)
        if series is None:
            label = method if method in METHODS else OTHER
            series = self._answers[key] = (
                self._http_requests.labels(route, label, str(status)),
                self._http_request_duration.labels(route),
            )
        count, duration = series
        count.value += 1
        duration.observe(seconds)

    def committed(self, rows: int, seconds: float) -> None:
        """One transaction of the group-commit writer (any thread)."""
        self.commit_batch_rows.observe(rows)
        self.commit_duration.observe(seconds)

    def watch(
        self,
        queue_depths: Callable[[], Mapping[str, int]],
        executions_live: Callable[[], int],
    ) -> None:
        """Read the gauges from memory at each scrape: ready jobs per queue name, and the
        executions whose actors are live."""
        self.registry.register(_Gauges(queue_depths, executions_live))


class Exposition:
    """The text exposition of a registry, built at most once per :data:`SCRAPE_INTERVAL`.

    ``GET /metrics`` needs no API key and no cap on requests in flight applies to it, and a
    build takes milliseconds of the event loop (some 10 ms with every route answered).
    A request arriving within the interval of the last build waits for the next one, which
    every request waiting then shares: an answer is never older than its request, and a
    flood of scrapes costs at most one build per interval.
    """

    def __init__(self, registry: CollectorRegistry, interval: float = SCRAPE_INTERVAL) -> None:
        self._registry = registry
        self._interval = interval
        self._built_at = -interval
        self._next: asyncio.Future[bytes] | None = None  # the build waited for, if any
        self.builds = 0

    async def latest(self) -> bytes:
        """The exposition as of a build that began after this call."""
        due = self._built_at + self._interval - time.monotonic()
        if due <= 0 and self._next is None:
            return self._build()
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(due, self._build_next)
        # shield: a waiter whose client left must not cancel the others' build
        return await asyncio.shield(self._next)

    def _build_next(self) -> None:
        waiting, self._next = self._next, None
        assert waiting is not None
        try:
            waiting.set_result(self._build())
        except Exception as exc:  # a failing collector: each waiter's request answers 500
            waiting.set_exception(exc)

    def _build(self) -> bytes:
        self.builds += 1
        self._built_at = time.monotonic()
        return generate_latest(self._registry)


class _Families(Collector):
    """The counters and histograms, as metric families, when Prometheus scrapes."""

    def __init__(self, families: list[_Family]) -> None:
        self._families = families

    def describe(self) -> Iterable[Metric]:
        return ()  # nothing to check at registration; names are fixed above

    def collect(self) -> Iterable[Metric]:
        for family in self._families:
            yield family.collect()


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
