"""The service's Prometheus metrics (``GET /metrics``; docs/service.md, "Metrics").

Two sources, because they answer different questions:

- gauges (``mainspring_runs``, ``mainspring_queue_depth``,
  ``mainspring_queue_oldest_ready_seconds``, ``mainspring_workers``) describe the store
  now, so they are read at scrape time through a few grouped queries;
- counters and histograms (``mainspring_attempts_total``,
  ``mainspring_dispatch_latency_seconds``, ``mainspring_run_duration_seconds``,
  ``mainspring_lease_expiries_total``) count what happened, so they are fed the committed
  log events in order (``observe``) and count from when the service started, as Prometheus
  counters do (a restart resets them; ``rate()`` handles that).

Each ``Metrics`` has a registry of its own: several Apps (services) in one process do not
collide, and nothing lands in prometheus-client's global registry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core.states import TERMINAL

if TYPE_CHECKING:
    from .._records import LogEvent
    from ..app import App

__all__ = ["CONTENT_TYPE", "Metrics"]

#: Prometheus' text exposition format, version 0.0.4 (what every Prometheus scrapes)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: seconds; dispatch is usually milliseconds, but a backlog can hold runs for hours
DISPATCH_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0, 3600.0,
)  # fmt: skip
#: seconds; from sub-second handlers to workflows that sleep for days
DURATION_BUCKETS = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
    4 * 3600.0, 24 * 3600.0, 7 * 24 * 3600.0,
)  # fmt: skip

#: runs followed at once (ready time, first start); the oldest is forgotten beyond it
MAX_RUNS = 50_000
#: task ids whose names are kept (from task.created)
MAX_NAMES = 50_000
#: observations waiting for their task's name (resolved at the next render)
MAX_PENDING = 10_000
#: the task label when a task's name cannot be found (pruned, or too many pending)
UNKNOWN = "unknown"

_TERMINAL = frozenset(s.value for s in TERMINAL)


@dataclass(slots=True)
class _Run:
    """What is kept of a run between its events."""

    ready_at: float | None = None  # when it last became ready (dispatch latency)
    started_at: float | None = None  # when its first attempt started (run duration)


class Metrics:
    """Prometheus metrics of one App: ``observe`` is fed every committed log event, in
    order; ``render(app)`` returns the text exposition (and its content type) for a scrape.

    Thread-safe: ``observe`` (the log follower) and ``render`` (requests) may run at once.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._attempts = Counter(
            "mainspring_attempts",
            "Attempts that ended, by task and result (success, retryable, terminal, "
            "timeout, lost, suspended, ...).",
            ["task", "result"],
            registry=self.registry,
        )
        self._dispatch = Histogram(
            "mainspring_dispatch_latency_seconds",
            "Seconds from a run becoming ready to its attempt starting.",
            buckets=DISPATCH_BUCKETS,
            registry=self.registry,
        )
        self._duration = Histogram(
            "mainspring_run_duration_seconds",
            "Seconds from a run's first attempt starting to the run ending (completed, "
            "failed or canceled), by task.",
            ["task"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._expiries = Counter(
            "mainspring_lease_expiries",
            "Leases that ran out because their worker stopped renewing them.",
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._names: OrderedDict[str, str] = OrderedDict()
        # (task id, what to do with its name): runs the service did not see submitted
        self._pending: list[tuple[str, Callable[[str], None]]] = []

    # -- the log's events ------------------------------------------------------------------
    def observe(self, events: Iterable[LogEvent]) -> None:
        """Count these committed log events (in commit order, each once)."""
        with self._lock:
            for ev in events:
                self._observe(ev)

    def _observe(self, ev: LogEvent) -> None:
        t, d = ev.type, ev.data
        if t == "task.created" and ev.task_id is not None:
            self._names[ev.task_id] = str(d.get("name", UNKNOWN))
            if len(self._names) > MAX_NAMES:
                self._names.popitem(last=False)
        elif t == "lease.expired":
            self._expiries.inc()
        elif ev.run_id is None:
            return
        elif t == "run.state_changed":
            to = d.get("to")
            if to == "ready":
                self._run(ev.run_id).ready_at = ev.at.timestamp()
            elif to in _TERMINAL:
                run = self._runs.pop(ev.run_id, None)
                if run is not None and run.started_at is not None:
                    took = max(0.0, ev.at.timestamp() - run.started_at)
                    self._with_name(ev.task_id, lambda n: self._duration.labels(n).observe(took))
        elif t == "attempt.started":
            run = self._run(ev.run_id)
            at = ev.at.timestamp()
            if run.ready_at is not None:
                self._dispatch.observe(max(0.0, at - run.ready_at))
                run.ready_at = None
            if d.get("number") == 1:  # (a later first sighting would shorten the duration)
                run.started_at = at
        elif t == "attempt.finished":
            result = str(d.get("result"))
            self._with_name(ev.task_id, lambda n: self._attempts.labels(n, result).inc())
        elif t == "run.pruned":
            self._runs.pop(ev.run_id, None)

    def _run(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _Run()
            if len(self._runs) > MAX_RUNS:
                self._runs.popitem(last=False)  # (its latency and duration go unmeasured)
        return run

    def _with_name(self, task_id: str | None, apply: Callable[[str], None]) -> None:
        """``apply(name)`` now if the task's name is known, else at the next render."""
        name = self._names.get(task_id) if task_id is not None else UNKNOWN
        if name is not None:
            apply(name)
        elif len(self._pending) < MAX_PENDING:
            assert task_id is not None
            self._pending.append((task_id, apply))
        else:
            apply(UNKNOWN)

    def _resolve(self, app: App) -> None:
        """Look up the names of the tasks that pending observations wait for (tasks
        submitted before the service started), and apply them."""
        with self._lock:
            pending, self._pending = self._pending, []
            if not pending:
                return
            missing = {tid for tid, _ in pending if tid not in self._names}
            if missing:
                with app.store.read() as tx:
                    for tid in missing:
                        task = tx.get_task(tid)
                        self._names[tid] = task.name if task is not None else UNKNOWN
            for tid, apply in pending:
                apply(self._names.get(tid, UNKNOWN))

    # -- a scrape ------------------------------------------------------------------------------
    def render(self, app: App) -> tuple[bytes, str]:
        """The Prometheus text exposition of every series, and its content type."""
        self._resolve(app)
        return generate_latest(_Scrape(_gauges(app), self.registry)), CONTENT_TYPE


def _gauges(app: App) -> list[Metric]:
    """The gauges: the store as it is now."""
    runs = GaugeMetricFamily(
        "mainspring_runs",
        "Runs in the store, by state, task and queue.",
        labels=["state", "task", "queue"],
    )
    with app.store.read() as tx:
        for state, task, queue, n in sorted(tx.run_counts()):
            runs.add_metric([state, task, queue], n)
    depth = GaugeMetricFamily(
        "mainspring_queue_depth", "Runs ready and waiting for a worker, by queue.", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "mainspring_queue_oldest_ready_seconds",
        "Seconds the oldest ready run of the queue has been due (0: none is ready).",
        labels=["queue"],
    )
    for q in app.queues():
        depth.add_metric([q.name], q.counts.get("ready", 0))
        oldest.add_metric([q.name], q.oldest_ready_seconds or 0.0)
    workers = GaugeMetricFamily("mainspring_workers", "Live workers (registered and heartbeating).")
    workers.add_metric([], len(app.workers()))
    return [runs, depth, oldest, workers]


class _Scrape(Collector):
    """One scrape: the gauges just read, then the counters and histograms observed."""

    def __init__(self, gauges: list[Metric], registry: CollectorRegistry) -> None:
        self.gauges = gauges
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.gauges
        for family in self.registry.collect():
            # (``_created`` timestamps are OpenMetrics'; in this format they would be four
            # more gauge series that nothing reads)
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
