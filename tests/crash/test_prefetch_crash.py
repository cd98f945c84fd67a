"""``kill -9`` of a worker holding runs started ahead (``prefetch``): their attempts end as
lost when the leases expire, and each of them then runs once, never twice."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.helpers import wait_for  # tests/ is on sys.path (pytest's rootdir-based import)

import mainspring as ms

from .procs import APP_PRELUDE, Workers

pytestmark = pytest.mark.crash

LEASE = 1.0
MODULE = APP_PRELUDE + textwrap.dedent(
    """


    @app.task(name="crash.slow")
    def slow(i):
        ctx = ms.context()
        record(ctx.run_id, os.getpid(), ctx.attempt)
        time.sleep(0.5 if ctx.attempt > 1 or os.environ.get("MS_FAST") else 60)
        return i


    if __name__ == "__main__":
        app.run_worker(
            concurrency=int(os.environ["MS_CONCURRENCY"]),
            prefetch=int(os.environ.get("MS_PREFETCH", "0")),
            grace_seconds=1.0,
        )
    """
)


@pytest.fixture
def workers(tmp_path: Path, store_url: str) -> Iterator[Workers]:
    w = Workers(tmp_path, store_url, MODULE, lease=LEASE)
    try:
        yield w
    finally:
        w.close()


def test_runs_started_ahead_of_a_killed_worker_run_once(workers: Workers) -> None:
    app = ms.App(workers.store, lease_seconds=LEASE)

    @app.task(name="crash.slow")
    def slow(i: int) -> int:
        raise AssertionError("handlers run in the worker processes only")

    try:
        handles = app.submit_many(slow, [((i,), {}) for i in range(8)])
        w1 = workers.start(concurrency=2, MS_PREFETCH="3")
        wait_for(
            lambda: len(workers.executions()) == 2 and app.stats().get("running", 0) == 5,
            30,
            f"2 handlers running and 3 runs started ahead ({app.stats()})\n{workers.logs()}",
        )
        ran_before = {line[0] for line in workers.executions()}
        workers.kill9(w1)

        workers.start(concurrency=4, MS_FAST="1")
        wait_for(
            lambda: app.stats().get("completed", 0) == 8,
            60,
            f"all 8 runs to complete ({app.stats()})\n{workers.logs()}",
        )
        executed = Counter(line[0] for line in workers.executions())
        ahead = []
        for h in handles:
            results = [a.result for a in h.info().attempts]
            if h.run_id in ran_before:  # running when killed: lost, then run again
                assert results == [ms.AttemptResult.LOST, ms.AttemptResult.SUCCESS]
                assert executed[h.run_id] == 2
            elif results[0] == ms.AttemptResult.LOST:  # started ahead, never ran
                ahead.append(h.run_id)
                assert results == [ms.AttemptResult.LOST, ms.AttemptResult.SUCCESS]
                assert executed[h.run_id] == 1, "a run started ahead ran twice"
            else:
                assert results == [ms.AttemptResult.SUCCESS]
                assert executed[h.run_id] == 1
        assert len(ahead) == 3, (ahead, workers.logs())
        report = app.verify()
        assert report.ok, report.problems
    finally:
        app.close()
