"""Crash recovery with real worker processes killed by SIGKILL.

Every test runs once per store (``store_url``: a SQLite file, a PostgreSQL schema of its
own). Each test writes a small app module into tmp_path and starts it with
``sys.executable`` (``app.run_worker``, see ``procs.Workers``), so nothing here depends on
the CLI. Handlers append one line per execution to a file (O_APPEND, one write per line) so
the test can count what really ran.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from e2e.helpers import wait_for  # tests/ is on sys.path (pytest's rootdir-based import)

import mainspring as ms

from .procs import APP_PRELUDE, Workers

pytestmark = pytest.mark.crash

LEASE = 1.0

APP_MODULE = APP_PRELUDE + textwrap.dedent(
    """


    @app.task(name="crash.hang")
    def hang(x):
        ctx = ms.context()
        record(ctx.run_id, os.getpid(), ctx.attempt)
        if ctx.attempt == 1:
            time.sleep(60)  # killed long before this ends
        return x


    @app.task(name="crash.work")
    def work(i):
        ctx = ms.context()
        record(ctx.run_id, os.getpid(), ctx.attempt)
        time.sleep(0.02 + (i % 4) * 0.01)
        return i


    @app.task(name="crash.keyed", concurrency_key="printer")
    def keyed(i):
        ctx = ms.context()
        start = time.time()
        time.sleep(0.02)
        record(ctx.run_id, os.getpid(), repr(start), repr(time.time()))
        return i


    @app.task(name="crash.graceful")
    def graceful(seconds):
        ctx = ms.context()
        record(ctx.run_id, os.getpid(), ctx.attempt)
        if ctx.attempt == 1:
            time.sleep(seconds)
        return seconds


    @app.task(name="crash.suicide", max_lost=2)
    def suicide():
        ctx = ms.context()
        record(ctx.run_id, os.getpid(), ctx.attempt)
        os.kill(os.getpid(), signal.SIGKILL)


    if __name__ == "__main__":
        app.run_worker(
            concurrency=int(os.environ["MS_CONCURRENCY"]),
            grace_seconds=1.0,
            burst="--burst" in sys.argv,
        )
    """
)


@pytest.fixture
def workers(tmp_path: Path, store_url: str) -> Iterator[Workers]:
    """Worker processes on a fresh store of each kind (every test runs once per store)."""
    w = Workers(tmp_path, store_url, APP_MODULE, lease=LEASE)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def app(workers: Workers) -> Iterator[ms.App]:
    """The test's own view of the store; it declares the same tasks to submit them."""
    app = ms.App(workers.store, lease_seconds=LEASE)

    @app.task(name="crash.hang")
    def hang(x: int) -> int:
        raise AssertionError("handlers run in the worker processes only")

    @app.task(name="crash.work")
    def work(i: int) -> int:
        raise AssertionError("handlers run in the worker processes only")

    @app.task(name="crash.keyed", concurrency_key="printer")
    def keyed(i: int) -> int:
        raise AssertionError("handlers run in the worker processes only")

    @app.task(name="crash.graceful")
    def graceful(seconds: float) -> float:
        raise AssertionError("handlers run in the worker processes only")

    @app.task(name="crash.suicide", max_lost=2)
    def suicide() -> None:
        raise AssertionError("handlers run in the worker processes only")

    try:
        yield app
    finally:
        app.close()


def check_histories(app: ms.App) -> None:
    for run in app.runs(limit=1_000_000):
        current = None
        for ev in app.log(run_id=run.run_id, limit=1_000_000):
            if ev.type == "run.created":
                assert current is None
                current = "scheduled"
            elif ev.type == "run.state_changed":
                assert ev.data["from"] == current, (run.run_id, ev.seq)
                current = ev.data["to"]
            assert ev.execution_id == run.execution_id
            assert ev.correlation_id == run.correlation_id
        assert current == run.state


def test_killed_mid_attempt_the_run_completes_on_another_worker(
    app: ms.App, workers: Workers
) -> None:
    h = app.declared["crash.hang"].submit(7)
    w1 = workers.start(concurrency=2)
    wait_for(lambda: len(workers.executions()) == 1, 30, "the first execution\n" + workers.logs())
    assert h.status() == ms.RunState.RUNNING
    workers.kill9(w1)

    workers.start(concurrency=2)
    try:
        assert h.result(timeout=30) == 7
    except TimeoutError:
        pytest.fail(f"run not recovered: {h.info()}\n{workers.logs()}")

    info = h.info()
    assert [a.result for a in info.attempts] == [ms.AttemptResult.LOST, ms.AttemptResult.SUCCESS]
    assert len(app.runs()) == 1  # the retry is an attempt of the same run
    runs_seen = workers.executions()
    assert [line[0] for line in runs_seen] == [h.run_id, h.run_id]  # the same run_id twice
    assert runs_seen[0][1] != runs_seen[1][1]  # in two different processes
    assert [line[2] for line in runs_seen] == ["1", "2"]
    types = [e.type for e in h.history()]
    assert "lease.expired" in types
    assert app.verify().ok, app.verify().problems
    check_histories(app)


def test_kill9_halfway_through_200_runs(app: ms.App, workers: Workers) -> None:
    concurrency = 8
    work = app.declared["crash.work"]
    handles = [work.submit(i) for i in range(200)]
    w1 = workers.start(concurrency=concurrency)
    wait_for(lambda: app.stats()["completed"] >= 100, 60, "half of the runs\n" + workers.logs())
    workers.kill9(w1)
    at_crash = app.stats()
    assert 0 < at_crash["completed"] < 200, at_crash
    assert at_crash["leased"] + at_crash["running"] <= concurrency, at_crash

    workers.start(concurrency=concurrency)
    wait_for(
        lambda: app.stats()["completed"] == 200,
        60,
        f"all 200 runs to complete ({app.stats()})\n{workers.logs()}",
    )

    stats = app.stats()
    assert stats["completed"] == 200 and sum(stats.values()) == 200, stats
    executed = Counter(line[0] for line in workers.executions())
    lost_runs = set()
    for h in handles:
        info = h.info()
        assert info.state == ms.RunState.COMPLETED
        results = [a.result for a in info.attempts]
        assert results.count(ms.AttemptResult.SUCCESS) == 1
        assert results[-1] == ms.AttemptResult.SUCCESS
        assert set(results) <= {ms.AttemptResult.SUCCESS, ms.AttemptResult.LOST}, results
        if ms.AttemptResult.LOST in results:
            lost_runs.add(h.run_id)
        # every execution belongs to a durable attempt; every run ran at least once
        assert 1 <= executed[h.run_id] <= len(info.attempts), (h.run_id, results)
    duplicated = {rid for rid, n in executed.items() if n > 1}
    assert set(executed) == {h.run_id for h in handles}
    # only runs in flight at the crash ran twice, and at most `concurrency` of them
    assert duplicated <= lost_runs
    assert 1 <= len(lost_runs) <= concurrency, lost_runs
    assert sum(executed.values()) <= 200 + concurrency
    report = app.verify()
    assert report.ok, report.problems
    check_histories(app)


def test_two_worker_processes_respect_a_concurrency_key(app: ms.App, workers: Workers) -> None:
    keyed = app.declared["crash.keyed"]
    workers.start(concurrency=4)
    workers.start(concurrency=4)
    # pairs of runs come due together every 100 ms: both processes race for each pair, and
    # whichever loses finds the key held by the winner's run (each holds it for ~20 ms)
    first = datetime.now(UTC) + timedelta(seconds=1.0)
    handles = [
        keyed.with_options(run_at=first + timedelta(seconds=0.1 * (i // 2))).submit(i)
        for i in range(24)
    ]
    assert {h.info().concurrency_key for h in handles} == {"printer"}
    wait_for(
        lambda: app.stats()["completed"] == 24,
        60,
        f"all keyed runs to complete ({app.stats()})\n{workers.logs()}",
    )
    lines = workers.executions()
    assert len(lines) == 24
    assert len({line[0] for line in lines}) == 24
    spans = sorted((float(line[2]), float(line[3])) for line in lines)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two runs of one key overlapped across processes"
    assert app.verify().ok
    check_histories(app)


def test_sigterm_lets_short_handlers_finish_and_releases_the_rest(
    app: ms.App, workers: Workers
) -> None:
    graceful = app.declared["crash.graceful"]
    short, long = graceful.submit(0.4), graceful.submit(30)
    w1 = workers.start(concurrency=2)
    wait_for(lambda: len(workers.executions()) == 2, 30, "both runs to start\n" + workers.logs())
    t0 = time.monotonic()
    w1.send_signal(signal.SIGTERM)
    try:
        assert w1.wait(timeout=10) == 0, workers.logs()
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not stop after SIGTERM\n" + workers.logs())
    assert time.monotonic() - t0 < 5  # grace_seconds=1.0 plus shutdown
    assert short.status() == ms.RunState.COMPLETED
    assert short.result(timeout=1) == 0.4
    # the long one was released, not left running: its attempt is lost and does not count
    assert long.status() in (ms.RunState.READY, ms.RunState.RETRY_WAIT)
    assert [a.result for a in long.info().attempts] == [ms.AttemptResult.LOST]

    # a burst worker picks it up at once (no lease to wait out) and exits when idle
    w2 = workers.start(2, "--burst")
    try:
        assert w2.wait(timeout=30) == 0, workers.logs()
    except subprocess.TimeoutExpired:
        pytest.fail("the burst worker did not exit at idle\n" + workers.logs())
    assert long.result(timeout=1) == 30
    assert [a.result for a in long.info().attempts] == [
        ms.AttemptResult.LOST,
        ms.AttemptResult.SUCCESS,
    ]
    assert app.verify().ok
    check_histories(app)


def test_a_handler_that_kills_its_worker_fails_after_max_lost(
    app: ms.App, workers: Workers
) -> None:
    h = app.declared["crash.suicide"].submit()
    deadline = time.monotonic() + 40
    while not h.status().terminal:
        assert time.monotonic() < deadline, f"run never ended: {h.info()}\n{workers.logs()}"
        assert len(workers.procs) <= 4, "more workers died than max_lost allows"
        if all(p.poll() is not None for p in workers.procs):
            workers.start(concurrency=1)
        time.sleep(0.02)
    assert h.status() == ms.RunState.FAILED
    assert [a.result for a in h.info().attempts] == [ms.AttemptResult.LOST] * 2
    # classed like any failure (section 9): contact with the worker was lost
    for a in h.info().attempts:
        assert (a.failure_class, a.retry_class) == ("transport_error", "safe_retry")
    assert (h.info().failure_class, h.info().retry_class) == ("transport_error", "safe_retry")
    error = h.info().error
    assert error is not None and error.startswith("lost: the lease of worker "), error
    assert len(workers.executions()) == 2
    with pytest.raises(ms.RunFailed, match="lost"):
        h.result(timeout=1)
    last = [e for e in h.history() if e.type == "run.state_changed"][-1]
    assert (last.data["to"], last.data["reason"]) == ("failed", "lost")
    assert app.verify().ok
    check_histories(app)
