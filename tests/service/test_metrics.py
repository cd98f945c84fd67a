"""The service's Prometheus metrics (mainspring/service/metrics.py), on both stores: runs
submitted, run, failed and lost to an expired lease, then every series of CONTRACT
section 11 rendered with the right labels and values, in text Prometheus parses. Times
follow a ManualClock, so latencies and durations are exact."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from e2e.helpers import wait_for, wait_state  # tests/ is on sys.path (rootdir import)
from prometheus_client.parser import text_string_to_metric_families

import mainspring as ms
from mainspring.service import metrics as metrics_module
from mainspring.service.metrics import Metrics
from mainspring.testing import ManualClock

Labels = frozenset[tuple[str, str]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def app(store_url: str, clock: ManualClock) -> Iterator[ms.App]:
    app = ms.App(store_url, lease_seconds=2.0, clock=clock)
    try:
        yield app
        assert app.verify().ok
    finally:
        app.close()


def parse(body: bytes) -> tuple[dict[str, str], dict[tuple[str, Labels], float]]:
    """The families' types by name, and every sample's value by (sample name, labels)."""
    types: dict[str, str] = {}
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicated sample {key}"
            samples[key] = s.value
    return types, samples


def at(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_every_series_after_runs_that_succeed_fail_and_lose_their_lease(
    app: ms.App, clock: ManualClock
) -> None:
    gate = threading.Event()
    tries: list[int] = []

    @app.task
    def ok(x: int) -> int:
        return x

    @app.task
    def bad() -> None:
        raise ValueError("no")

    @app.task(max_attempts=3)
    def hang() -> str:
        tries.append(1)
        if len(tries) == 1:
            gate.wait(10)  # until its lease has expired: this attempt is lost
        return "done"

    m = Metrics()
    a = ok.submit(1)
    clock.advance(5)  # a waits 5 s ready before a worker takes it
    b = bad.submit()
    try:
        with app.worker() as w:
            w.run_until_idle(timeout=10)
            h = hang.submit()
            wait_state(h, ms.RunState.RUNNING)
            clock.advance(10)  # one jump past the lease: it expires, the attempt is lost
            wait_for(lambda: any(e.type == "lease.expired" for e in h.history()), what="the expiry")
            gate.set()
            w.run_until_idle(timeout=10)
            seen = app.log(limit=10_000)
            m.observe(seen)
            _, live = parse(m.render(app)[0])
            assert at(live, "mainspring_workers") == 1
    finally:
        gate.set()
    assert a.result(timeout=1) == 1 and h.result(timeout=1) == "done"
    assert b.status() == ms.RunState.FAILED
    waiting = ok.submit(2)  # no worker now: it stays ready
    clock.advance(3)
    m.observe(app.log(since=seen[-1].seq, limit=10_000))  # (as the service's follower would)

    body, content_type = m.render(app)
    assert content_type.startswith("text/plain; version=0.0.4")
    types, s = parse(body)
    assert types == {
        "mainspring_runs": "gauge",
        "mainspring_queue_depth": "gauge",
        "mainspring_queue_oldest_ready_seconds": "gauge",
        "mainspring_workers": "gauge",
        "mainspring_attempts": "counter",
        "mainspring_dispatch_latency_seconds": "histogram",
        "mainspring_run_duration_seconds": "histogram",
        "mainspring_lease_expiries": "counter",
    }
    q = "default"
    runs = {k: v for k, v in s.items() if k[0] == "mainspring_runs"}
    assert runs == {
        ("mainspring_runs", frozenset({"state": st, "task": t, "queue": q}.items())): 1.0
        for st, t in [
            ("completed", ok.name),
            ("ready", ok.name),
            ("failed", bad.name),
            ("completed", hang.name),
        ]
    }
    assert waiting.status() == ms.RunState.READY
    assert at(s, "mainspring_queue_depth", queue=q) == 1
    assert at(s, "mainspring_queue_oldest_ready_seconds", queue=q) == pytest.approx(3, abs=0.01)
    assert at(s, "mainspring_workers") == 0  # the worker left

    attempts = {
        dict(k[1])["task"].rsplit(".", 1)[-1] + "/" + dict(k[1])["result"]: v
        for k, v in s.items()
        if k[0] == "mainspring_attempts_total"
    }
    assert attempts == {"ok/success": 1, "bad/retryable": 1, "hang/lost": 1, "hang/success": 1}
    assert at(s, "mainspring_attempts_total", task=hang.name, result="lost") == 1
    assert at(s, "mainspring_lease_expiries_total") == 1

    # dispatch: a waited 5 s; b, and both attempts of hang (its retry after the loss is
    # at once), none
    assert at(s, "mainspring_dispatch_latency_seconds_count") == 4
    assert at(s, "mainspring_dispatch_latency_seconds_sum") == pytest.approx(5)
    assert at(s, "mainspring_dispatch_latency_seconds_bucket", le="1.0") == 3
    assert at(s, "mainspring_dispatch_latency_seconds_bucket", le="5.0") == 4
    # duration, from the first attempt's start to the end: hang took the 10 s of its lost
    # attempt; the others ended at once. The ready run has not ended: not counted
    for task, took in [(ok, 0.0), (bad, 0.0), (hang, 10.0)]:
        name = task.name
        assert at(s, "mainspring_run_duration_seconds_count", task=name) == 1
        assert at(s, "mainspring_run_duration_seconds_sum", task=name) == pytest.approx(took)


def test_a_service_started_mid_stream_finds_the_task_names_in_the_store(app: ms.App) -> None:
    @app.task
    def ok() -> str:
        return "ok"

    h = ok.submit()
    created = max(e.seq for e in app.log(limit=10_000))  # task.created ... ready: before
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    assert h.status() == ms.RunState.COMPLETED
    m = Metrics()
    m.observe(app.log(since=created, limit=10_000))
    _, s = parse(m.render(app)[0])
    assert at(s, "mainspring_attempts_total", task=ok.name, result="success") == 1
    # its dispatch began before the service saw it: no latency is made up
    assert at(s, "mainspring_dispatch_latency_seconds_count") == 0
    assert at(s, "mainspring_run_duration_seconds_count", task=ok.name) == 1


def test_metrics_keep_a_registry_of_their_own_and_bounded_bookkeeping(
    app: ms.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task
    def ok() -> None:
        pass

    ok.submit_many([{} for _ in range(20)])  # created and ready, never started
    monkeypatch.setattr(metrics_module, "MAX_RUNS", 5)
    one, two = Metrics(), Metrics()  # (the global registry would refuse the second)
    events = app.log(limit=10_000)
    one.observe(events)
    assert len(one._runs) == 5  # the oldest runs are forgotten
    _, s1 = parse(one.render(app)[0])
    _, s2 = parse(two.render(app)[0])
    assert at(s1, "mainspring_runs", state="ready", task=ok.name, queue="default") == 20
    assert s1 == s2  # nothing was counted but the runs' bookkeeping
