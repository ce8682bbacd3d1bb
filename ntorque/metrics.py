"""The node's Prometheus metrics (prometheus-client): counters moved where
things happen (enqueue, settle, errors), and gauges read at scrape time
through one store query, cached so frequent scrapes stay cheap.

Each node has registries of its own, so several nodes in one Python process
(the tests) never collide. With `serve --processes N` every child writes its
figures to files in one directory (prometheus-client's multiprocess mode) and
any child's /metrics sums them all. Labels are bounded: queue names (at most
MAX_QUEUE_LABELS per process, the rest as "_other"), outcome and code classes;
never task ids, urls or applications.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .errors import StorageUnavailable
from .store.metrics import QueueFigures
from .tasks import UNFINISHED, Status

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own name for it
MAX_QUEUE_LABELS = 1000  # as many as the API lists at once: queues are settings, not data
OTHER_QUEUES = "_other"  # not a valid queue name, so never confused with one
FIGURES_CACHE_S = 1.0
# Hook calls last from milliseconds to their timeout (60 s by default, up to max_due_delay_s).
CALL_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OUTCOMES = {Status.COMPLETED: "success", Status.PENDING: "retried", Status.FAILED: "failed"}

Read = Callable[[float], Awaitable[list[QueueFigures]]]


class QueueLabels:
    """Queue names as label values: the first `limit` this process meets, then "_other"."""

    def __init__(self, limit: int = MAX_QUEUE_LABELS) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, name: str) -> str:
        if name in self.seen:
            return name
        if len(self.seen) >= self.limit:
            return OTHER_QUEUES
        self.seen.add(name)
        return name


def code_class(status_code: int | None) -> str:
    """2xx, 3xx, 4xx, 5xx; "none" when no answer came (timeout, refused, blocked)."""
    return "none" if status_code is None else f"{status_code // 100}xx"


def error_reason(status: int) -> str:
    """An enqueue's error answer as a class: the client's fault, or ours."""
    if status == 503:
        return "unavailable"
    return "rejected" if status < 500 else "error"


class Metrics:
    """The counters, histogram and process gauges of one node; each call is
    one label lookup and one increment (no allocation per task beyond it)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.queue_label = QueueLabels()
        self.enqueued = Counter(
            "ntorque_tasks_enqueued", "Tasks stored (enqueues, batches, schedule ticks, callbacks)",
            ["queue"], registry=registry,
        )  # fmt: skip
        self.attempts = Counter(
            "ntorque_attempts", "Hook calls settled, by what became of the task and the answer",
            ["queue", "outcome", "code"], registry=registry,
        )  # fmt: skip
        self.call_seconds = Histogram(
            "ntorque_hook_call_duration_seconds", "How long settled hook calls took",
            ["queue"], buckets=CALL_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.enqueue_errors = Counter(
            "ntorque_enqueue_errors", "Enqueue requests answered with an error, by class",
            ["reason"], registry=registry,
        )  # fmt: skip
        self.database_errors = Counter(
            "ntorque_database_errors", "Database statements that found it unreachable",
            registry=registry,
        )  # fmt: skip
        self.channel_errors = Counter(
            "ntorque_channel_errors", "Redis channel errors (answered by the local fallback)",
            registry=registry,
        )  # fmt: skip
        self.slots_in_use = Gauge(
            "ntorque_consumer_slots_in_use", "Hook calls in flight",
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.slots = Gauge(
            "ntorque_consumer_slots", "Hook calls that may be in flight at once (concurrency)",
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip

    def created(self, queue: str, count: int = 1) -> None:
        self.enqueued.labels(self.queue_label(queue)).inc(count)

    def settled(self, queue: str, status: Status, status_code: int | None, took_s: float) -> None:
        label = self.queue_label(queue)
        outcome = OUTCOMES.get(status, str(status))
        self.attempts.labels(label, outcome, code_class(status_code)).inc()
        self.call_seconds.labels(label).observe(took_s)

    def enqueue_failed(self, status: int) -> None:
        self.enqueue_errors.labels(error_reason(status)).inc()


class Figures(Collector):
    """The gauges read from the database: unfinished tasks by queue and
    status, the due backlog and the age of its oldest task, per queue."""

    def __init__(self, queue_label: Callable[[str], str]) -> None:
        self.queue_label = queue_label
        self.rows: Sequence[QueueFigures] | None = None  # None: the last read failed
        self.now = 0.0

    def collect(self) -> Iterable[Metric]:
        if self.rows is None:
            return []
        tasks = GaugeMetricFamily(
            "ntorque_tasks", "Unfinished tasks by queue and status", labels=["queue", "status"]
        )
        due = GaugeMetricFamily(
            "ntorque_tasks_due", "Tasks due now, not yet called", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "ntorque_oldest_due_age_seconds",
            "How long the oldest due task has waited",
            labels=["queue"],
        )
        counts: dict[tuple[str, str], int] = {}
        backlog: dict[str, int] = {}
        oldest: dict[str, float] = {}
        for row in self.rows:
            queue = self.queue_label(row.queue)
            for unfinished in UNFINISHED:  # both, so every queue's series stay continuous
                counts.setdefault((queue, str(unfinished)), 0)
            counts[queue, str(row.status)] += row.tasks
            backlog[queue] = backlog.get(queue, 0) + row.due
            if row.oldest_due is not None:
                oldest[queue] = min(oldest.get(queue, row.oldest_due), row.oldest_due)
        for (queue, status), count in counts.items():
            tasks.add_metric([queue, status], count)
        for queue, count in backlog.items():
            due.add_metric([queue], count)
            waited = self.now - oldest[queue] if queue in oldest else 0.0
            age.add_metric([queue], max(waited, 0.0))
        return [tasks, due, age]


class Scrape:
    """What GET /metrics answers. The database is read at most once per
    cache_s, however many scrapes come (and concurrent ones share the read)."""

    def __init__(
        self,
        metrics: Metrics,
        read: Read,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        cache_s: float = FIGURES_CACHE_S,
        multiprocess_dir: str = "",
    ) -> None:
        self.read = read
        self.clock = clock
        self.monotonic = monotonic
        self.cache_s = cache_s
        self.figures = Figures(metrics.queue_label)
        self.registry = CollectorRegistry()
        if multiprocess_dir:  # every process's counters, from their files
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self.registry, path=multiprocess_dir
            )
        else:
            self.registry.register(metrics.registry)
        self.registry.register(self.figures)
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def text(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)

    async def refresh(self) -> None:
        async with self._lock:
            if self._read_at is not None and self.monotonic() - self._read_at < self.cache_s:
                return
            now = self.clock()
            try:
                self.figures.rows = await self.read(now)
            except StorageUnavailable:  # counted as a database error; the counters still answer
                self.figures.rows = None
            self.figures.now = now
            self._read_at = self.monotonic()


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[str]:
    """For `serve --processes N`, in the parent before it forks: a fresh
    directory where every child's metrics are written, removed at the end.

    prometheus-client picks its value class when it is imported, which
    happened already (the parent imported the node's modules): it is chosen
    again here, before any child makes its metrics.
    """
    path = tempfile.mkdtemp(prefix="ntorque-metrics-")
    os.environ[MULTIPROC_ENV] = path
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    try:
        yield path
    finally:
        values.ValueClass = values.MutexValue
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def process_ended(pid: int, path: str) -> None:
    """A child is gone: its gauges leave the sums (its counters stay counted)."""
    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
