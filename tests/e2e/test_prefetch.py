"""``app.worker(prefetch=N)``: runs leased and started ahead of the handlers. Never more
handlers at once than ``concurrency``, never more runs held than ``concurrency +
prefetch``; a run started ahead is timed, renewed and released like any other, and one
whose handler never ran is lost, never run twice."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import mainspring as ms

from .helpers import wait_for


def test_handlers_at_once_stay_within_concurrency_and_runs_held_within_the_sum(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app()
    lock = threading.Lock()
    running, most = [0], [0]
    held: list[int] = []

    @app.task
    def job(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return i

    handles = app.submit_many(job, [((i,), {}) for i in range(30)])
    with app.worker(concurrency=2, prefetch=3) as w:
        while not all(h.info().state == ms.RunState.COMPLETED for h in handles[-3:]):
            stats = app.stats()
            held.append(stats.get("running", 0) + stats.get("leased", 0))
            time.sleep(0.01)
        w.run_until_idle(timeout=30)
    assert [h.result(timeout=5) for h in handles] == list(range(30))
    assert most[0] == 2
    assert max(held) == 5  # 2 handlers and 3 started ahead
    for h in handles:  # each ran once, in one attempt
        assert [a.result for a in h.info().attempts] == [ms.AttemptResult.SUCCESS]


def test_async_handlers_follow_each_other_within_concurrency(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app()
    running, most = [0], [0]

    @app.task
    async def job(i: int) -> int:
        running[0] += 1  # (one event loop: no lock needed)
        most[0] = max(most[0], running[0])
        await asyncio.sleep(0.03)
        running[0] -= 1
        return i

    handles = app.submit_many(job, [((i,), {}) for i in range(20)])
    with app.worker(concurrency=3, prefetch=3) as w:
        w.run_until_idle(timeout=30)
    assert [h.result(timeout=5) for h in handles] == list(range(20))
    assert most[0] == 3


def test_a_run_started_ahead_is_timed_from_its_handlers_start(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app()

    @app.task(timeout=0.6, max_attempts=1)
    def job(i: int) -> int:
        time.sleep(0.25)
        return i

    handles = app.submit_many(job, [((i,), {}) for i in range(5)])
    with app.worker(concurrency=1, prefetch=4) as w:
        w.run_until_idle(timeout=30)
    # the last one waited about 1 s ahead of its handler: more than its timeout
    assert [h.result(timeout=5) for h in handles] == list(range(5))


def test_runs_started_ahead_keep_their_leases(make_app: Callable[..., ms.App]) -> None:
    app = make_app(lease_seconds=1.0)

    @app.task
    def job(i: int) -> int:
        time.sleep(0.3)
        return i

    handles = app.submit_many(job, [((i,), {}) for i in range(8)])
    with app.worker(concurrency=1, prefetch=7) as w:
        w.run_until_idle(timeout=30)
    # the last one was held for over 2 s, twice its lease, before its handler ran
    for h in handles:
        assert [a.result for a in h.info().attempts] == [ms.AttemptResult.SUCCESS]
        assert "lease.expired" not in [e.type for e in h.history()]


def _gated(app: ms.App) -> tuple[Any, list[int], threading.Event]:
    """A task whose handlers record their argument and wait for the gate."""
    calls: list[int] = []
    gate = threading.Event()

    @app.task
    def job(i: int) -> int:
        calls.append(i)
        gate.wait(10)
        return i

    return job, calls, gate


def _two_running_three_ahead(app: ms.App, calls: list[int]) -> None:
    wait_for(lambda: len(calls) == 2, 10, "two handlers running")
    wait_for(lambda: app.stats().get("running", 0) == 5, 10, "three runs started ahead")


def test_a_stopping_worker_runs_what_it_started_ahead_in_its_grace_period(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app()
    job, calls, gate = _gated(app)
    handles = app.submit_many(job, [((i,), {}) for i in range(7)])
    with app.worker(concurrency=2, prefetch=3, grace_seconds=10) as w:
        _two_running_three_ahead(app, calls)
        threading.Timer(0.3, gate.set).start()
        w.stop()  # it leases no more, and finishes the five it holds
    assert sorted(calls) == [0, 1, 2, 3, 4]
    assert [h.info().state for h in handles] == [ms.RunState.COMPLETED] * 5 + [
        ms.RunState.READY
    ] * 2
    for h in handles[:5]:
        assert [a.result for a in h.info().attempts] == [ms.AttemptResult.SUCCESS]
    with app.worker() as w:
        w.run_until_idle(timeout=30)


def test_at_the_end_of_the_grace_period_runs_started_ahead_are_released(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app()
    job, calls, gate = _gated(app)
    handles = app.submit_many(job, [((i,), {}) for i in range(5)])
    try:
        with app.worker(concurrency=2, prefetch=3, grace_seconds=0.3) as w:
            _two_running_three_ahead(app, calls)
            w.stop()
    finally:
        gate.set()
    assert sorted(calls) == [0, 1]
    for h in handles:  # the running two and the three ahead: all given back
        assert [a.result for a in h.info().attempts] == [ms.AttemptResult.LOST]
    with app.worker(concurrency=4) as w:
        w.run_until_idle(timeout=30)
    assert [h.result(timeout=5) for h in handles] == list(range(5))
    assert sorted(calls) == [0, 0, 1, 1, 2, 3, 4]  # those started ahead ran once


@pytest.mark.parametrize("prefetch", [-1, 1.5, True])
def test_a_bad_prefetch_is_refused(make_app: Callable[..., ms.App], prefetch: object) -> None:
    app = make_app()

    @app.task
    def job() -> None:
        return None

    with pytest.raises(ms.InvalidArgument, match="prefetch"), app.worker(prefetch=prefetch):  # type: ignore[arg-type]
        pass


def test_runs_of_a_rate_limited_task_are_not_started_ahead(
    make_app: Callable[..., ms.App],
) -> None:
    """A rate limit counts attempts as they start; a run started ahead begins its handler
    only when a slot frees, so its handler would start later than counted, in a burst with
    others. (Two were started for one slot: the second's handler began once the first
    ended, beside the starts of the next window.)"""
    app = make_app()
    release = threading.Event()
    began: list[int] = []

    @app.task(rate_limit="2/h")
    def limited(i: int) -> int:
        began.append(i)
        release.wait(10)
        return i

    handles = [limited.submit(i) for i in range(3)]
    with app.worker(concurrency=1, prefetch=4):
        wait_for(lambda: began, 10, "the first handler to begin")
        time.sleep(0.5)  # (turns enough to have started another ahead)
        states = [h.status() for h in handles]
        assert states.count(ms.RunState.RUNNING) == 1, states
        release.set()
        wait_for(lambda: len(began) == 2, 10, "the second handler to begin")
        wait_for(
            lambda: [h.status() for h in handles].count(ms.RunState.COMPLETED) == 2,
            10,
            "the two to complete",
        )
    assert sorted(began) == [0, 1]  # the third waits for the next hour
    assert [h.status() for h in handles].count(ms.RunState.READY) == 1
