"""A rate limit holds across worker processes: 4 processes racing for 40 runs of a task
limited to 5 starts per second never start more than 5 in any one-second window (as the
log's attempt.started times say), on both stores."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from e2e.helpers import wait_for  # tests/ is on sys.path (pytest's rootdir-based import)

import mainspring as ms

from .procs import APP_PRELUDE, Workers

pytestmark = pytest.mark.crash

MODULE = APP_PRELUDE + textwrap.dedent(
    """


    @app.task(name="rl.job", rate_limit=ms.RateLimit(5, per=1.0))
    def job(i):
        record(i, os.getpid())
        return i


    if __name__ == "__main__":
        app.run_worker(concurrency=int(os.environ["MS_CONCURRENCY"]))
    """
)


def test_four_worker_processes_never_start_more_than_the_limit(
    tmp_path: Path, store_url: str
) -> None:
    app = ms.App(store_url)

    @app.task(name="rl.job", rate_limit=ms.RateLimit(5, per=1.0))
    def job(i: int) -> int:
        return i

    handles = job.submit_many([{"i": i} for i in range(40)])
    workers = Workers(tmp_path, store_url, MODULE, lease=5.0)
    try:
        for _ in range(4):
            workers.start(4)
        wait_for(lambda: app.stats()["completed"] == 40, 60, "the 40 runs to complete")
    finally:
        workers.close()
    starts = sorted(e.at.timestamp() for e in app.log(limit=100_000) if e.type == "attempt.started")
    assert len(starts) == 40 and len({h.result() for h in handles}) == 40
    # every window of one second holds at most 5 starts
    for i, t in enumerate(starts):
        in_window = [s for s in starts[i:] if s < t + 1.0]
        assert len(in_window) <= 5, (t, in_window)
    assert len(workers.executions()) == 40  # each ran once, in one of the racing processes
    assert app.verify().ok
    app.close()
