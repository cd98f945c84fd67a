"""Bulk operations on both stores: ``task.submit_many``, ``app.cancel_runs`` and
``app.rerun_runs`` over 10,000 runs, a page per transaction, with progress."""

from __future__ import annotations

import threading
from collections.abc import Callable
from unittest import mock

import pytest

import mainspring as ms

Make = Callable[..., ms.App]


def test_submit_many_cancel_runs_and_rerun_runs_on_10000_runs(make_app: Make) -> None:
    app = make_app(check=False)  # (verified below: one history read per run is too slow)

    @app.task(queue="bulk")
    def job(i: int, tag: str = "") -> int:
        return i

    @app.task
    def other(i: int) -> int:
        return i

    handles = job.submit_many([{"i": i} for i in range(5_000)])
    handles += job.submit_many([((i,), {"tag": "t"}) for i in range(5_000, 10_000)])
    keep = other.submit_many([{"i": i} for i in range(10)])
    assert len(handles) == 10_000 and len({h.run_id for h in handles}) == 10_000
    assert app.stats()["ready"] == 10_010

    seen: list[tuple[int, int]] = []
    assert len(app.matching_runs("ready", queue="bulk")) == 10_000
    canceled = app.cancel_runs("ready", task=job.name, progress=lambda d, t: seen.append((d, t)))
    assert canceled == 10_000
    assert seen[-1] == (10_000, 10_000) and len(seen) == 20  # a page of 500 at a time
    assert app.stats()["canceled"] == 10_000
    assert [h.status() for h in keep] == [ms.RunState.READY] * 10
    assert app.cancel_runs("ready", task=job.name) == 0  # nothing left to cancel

    again = app.rerun_runs("canceled", queue="bulk")
    assert len(again) == 10_000
    infos = {r.rerun_of for r in app.runs(state="ready", task=job.name, limit=20_000)}
    assert infos == {h.run_id for h in handles}
    report = app.verify()
    assert report.ok, report.problems


@pytest.mark.parametrize("operation", ["cancel_runs", "rerun_runs"])
def test_a_run_that_left_the_state_since_it_was_listed_is_left_alone(
    app: ms.App, operation: str
) -> None:
    """``cancel_runs`` / ``rerun_runs(state="ready")`` list the ready runs, then act on
    them a page per transaction: one that started in between is left running. (It was
    canceled, its result thrown away; or rerun, its work done twice.)"""
    started, release = threading.Event(), threading.Event()

    @app.task
    def job(i: int) -> int:
        started.set()
        release.wait(10)
        return i

    running, waiting = job.submit(1), job.submit(2)
    listed = [running.run_id, waiting.run_id]  # as listed while both were ready
    with app.worker(concurrency=1) as w:
        assert started.wait(10)
        with mock.patch.object(app, "matching_runs", return_value=listed):
            done = getattr(app, operation)("ready")
        release.set()
        w.run_until_idle()
    assert running.result() == 1
    if operation == "cancel_runs":
        assert done == 1 and waiting.status() == ms.RunState.CANCELED
    else:
        [again] = done
        assert again.info().rerun_of == waiting.run_id and again.result() == 2


def test_bulk_bad_input_changes_nothing(app: ms.App) -> None:
    @app.task
    def job(i: int) -> int:
        return i

    job.submit(1)
    before = app.log()
    with pytest.raises(ms.InvalidArgument):
        app.cancel_runs("completed")  # ended runs: nothing to cancel
    with pytest.raises(ms.InvalidArgument):
        app.cancel_runs("no-such-state")
    with pytest.raises(ms.InvalidArgument):
        job.submit_many([{"i": 1}, "not an item"])
    with pytest.raises(ms.InvalidArgument):
        job.submit_many([{"i": 1}, {"j": 2}])  # the second does not fit: none is written
    # a filter naming no task or queue would match nothing, silently
    for call in (
        lambda: app.cancel_runs(queue=""),
        lambda: app.cancel_runs(task=123),  # type: ignore[arg-type]
        lambda: app.rerun_runs(task=" "),
        lambda: app.matching_runs(queue=5),  # type: ignore[arg-type]
        lambda: app.prune(0, task=""),
    ):
        with pytest.raises(ms.InvalidArgument):
            call()
    assert app.log() == before
