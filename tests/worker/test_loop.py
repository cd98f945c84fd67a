"""The worker loop against a real Engine on SQLite, driven by a ManualClock.

The worker's poll is an hour long here (``no_poll``), so a run that starts after
``clock.advance`` started because the advance woke the worker, not because a poll came by.
Nothing asserts how long anything took: the waits are generous bounds that only a broken
worker reaches, and what is checked is order and state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import mainspring as ms
from mainspring.core.clock import SystemClock, watch
from mainspring.testing import ManualClock

from .helpers import PATIENCE, caught_up, events, wait_for, wait_state

S = ms.RunState
R = ms.AttemptResult

pytestmark = pytest.mark.usefixtures("no_poll")


def test_a_delayed_run_starts_right_after_the_clock_gets_there(
    make_app: Callable[..., ms.App], clock: ManualClock
) -> None:
    app = make_app()
    ran_at: list[float] = []

    @app.task
    def later() -> str:
        ran_at.append(clock.now())
        return "done"

    h = later.with_options(delay=60).submit()
    due = h.info().scheduled_at.timestamp()
    assert due == clock.now() + 60
    with app.worker() as w:
        w.run_until_idle(timeout=PATIENCE)  # not due: the store is idle
        clock.advance(59)
        caught_up(w, clock)  # the worker housekept at +59 s, and leased what it could
        assert h.status() == S.SCHEDULED
        assert ran_at == []
        clock.advance(1)
        assert h.result(timeout=PATIENCE) == "done"
    assert ran_at == [due]  # it ran at its due time, by the clock, not a poll later


def test_a_retry_an_hour_away_runs_once_the_clock_moved_an_hour(
    make_app: Callable[..., ms.App], clock: ManualClock
) -> None:
    app = make_app()
    tries: list[tuple[int, float]] = []

    @app.task(max_attempts=2, backoff=ms.Backoff.fixed(3600))
    def flaky() -> str:
        tries.append((ms.context().attempt, clock.now()))
        if len(tries) == 1:
            raise RuntimeError("not yet")
        return "ok"

    h = flaky.submit()
    with app.worker() as w:
        wait_state(h, S.RETRY_WAIT)
        clock.advance(3599)
        caught_up(w, clock)
        assert h.status() == S.RETRY_WAIT
        assert len(tries) == 1
        clock.advance(1)
        assert h.result(timeout=PATIENCE) == "ok"
    assert [a.result for a in h.info().attempts] == [R.RETRYABLE, R.SUCCESS]
    assert tries[1][1] - tries[0][1] == 3600


def test_an_explicit_retry_delay_follows_the_clock(
    make_app: Callable[..., ms.App], clock: ManualClock
) -> None:
    app = make_app()

    @app.task(max_attempts=2, backoff=ms.Backoff.fixed(1))
    def later() -> str:
        if ms.context().attempt == 1:
            raise ms.Retry(delay=600)  # wins over the task's 1 s backoff
        return "ok"

    h = later.submit()
    with app.worker() as w:
        wait_state(h, S.RETRY_WAIT)
        clock.advance(1)
        caught_up(w, clock)
        assert h.status() == S.RETRY_WAIT
        clock.advance(599)
        assert h.result(timeout=PATIENCE) == "ok"


def test_a_retry_due_at_once_does_not_wait_for_an_advance(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app()

    @app.task(max_attempts=3, backoff=ms.Backoff.fixed(0))
    def bouncy() -> str:
        if ms.context().attempt < 3:
            raise ms.Retry()
        return "third time"

    h = bouncy.submit()
    with app.worker():
        # due at the clock's own time: the worker looks at it now (not an hour later at
        # its poll, and not at an advance that never comes)
        assert h.result(timeout=PATIENCE) == "third time"


def test_a_cron_occurrence_runs_when_a_running_worker_sees_the_clock_get_there(
    make_app: Callable[..., ms.App], clock: ManualClock
) -> None:
    app = make_app()

    @app.task
    def hourly() -> None:
        return None

    clock.advance(10)  # ten seconds past the hour: the first occurrence is the next hour
    t = hourly.schedule(cron="0 * * * *", max_occurrences=3)
    with app.worker() as w:
        w.run_until_idle(timeout=PATIENCE)
        assert [r.state for r in t.runs()] == [S.SCHEDULED]
        for n in (1, 2, 3):
            clock.advance(3600)
            wait_for(
                lambda n=n: [r.state for r in t.runs()].count(S.COMPLETED) == n,
                f"occurrence {n} to complete",
            )
        clock.advance(3600)
        caught_up(w, clock)
    assert [r.state for r in t.runs()] == [S.COMPLETED] * 3


def test_two_workers_on_one_clock_both_wake(
    make_app: Callable[..., ms.App], clock: ManualClock
) -> None:
    app = make_app()
    gate = threading.Event()
    ran: list[str] = []

    @app.task
    def job(i: int) -> None:
        ran.append(threading.current_thread().name)
        gate.wait(PATIENCE)

    handles = [job.with_options(delay=60).submit(i) for i in range(2)]
    try:
        with app.worker(concurrency=1) as w1, app.worker(concurrency=1) as w2:
            clock.advance(60)
            caught_up(w1, clock)
            caught_up(w2, clock)
            # each worker has one slot: both runs running means both workers leased one
            wait_for(
                lambda: all(h.status() == S.RUNNING for h in handles), "both runs to be running"
            )
            gate.set()
            w1.run_until_idle(timeout=PATIENCE)
    finally:
        gate.set()
    assert all(h.status() == S.COMPLETED for h in handles)


# -- leases and the clock ------------------------------------------------------------------------
def test_a_handler_keeps_its_lease_while_the_clock_moves_in_steps(
    make_app: Callable[..., ms.App], clock: ManualClock
) -> None:
    app = make_app(lease_seconds=60)  # renewed when the clock moved 20 s since the last
    gate = threading.Event()

    @app.task
    def long_job() -> str:
        gate.wait(PATIENCE)
        return "done"

    h = long_job.submit()
    try:
        with app.worker() as w:
            wait_state(h, S.RUNNING)
            for step in range(1, 6):  # 150 s in all: two and a half lease periods
                clock.advance(30)
                wait_for(
                    lambda step=step: len(events(h, "lease.renewed")) >= step,
                    f"renewal {step}",
                )
            gate.set()
            assert h.result(timeout=PATIENCE) == "done"
            w.run_until_idle(timeout=PATIENCE)
    finally:
        gate.set()
    assert [a.result for a in h.info().attempts] == [R.SUCCESS]
    assert events(h, "lease.expired") == []


def test_one_jump_past_the_lease_expires_it_and_the_run_is_tried_again(
    make_app: Callable[..., ms.App], clock: ManualClock
) -> None:
    app = make_app(lease_seconds=60)
    started = threading.Event()
    saw_cancel = threading.Event()

    @app.task(backoff=ms.Backoff.fixed(0))
    def stalls() -> str:
        if ms.context().attempt == 1:
            started.set()
            ctx = ms.context()
            wait_for(lambda: ctx.cancelled, "the first attempt to be told")
            saw_cancel.set()
            return "discarded"  # its lease is gone: this outcome is never recorded
        return "second"

    h = stalls.submit()
    with app.worker() as w:
        assert started.wait(PATIENCE)
        clock.advance(61)  # as if the worker had stalled past its lease
        assert saw_cancel.wait(PATIENCE)
        assert h.result(timeout=PATIENCE) == "second"
        w.run_until_idle(timeout=PATIENCE)
    info = h.info()
    assert [a.result for a in info.attempts] == [R.LOST, R.SUCCESS]
    assert info.output == "second"
    assert len(events(h, "lease.expired")) == 1


def test_a_lost_attempt_is_told_and_its_slot_reused_when_the_run_is_not_given_back_at_once(
    make_app: Callable[..., ms.App], clock: ManualClock
) -> None:
    # one slot, held by the stalled attempt: the turn that expires its lease cannot lease
    # the run again; the worker learns of the loss after it (its renewal, or its next
    # housekeeping), tells the handler, and looks for work with the freed slot at once
    app = make_app(lease_seconds=60)
    started = threading.Event()
    saw_cancel = threading.Event()

    @app.task
    def stalls() -> str:
        if ms.context().attempt == 1:
            started.set()
            ctx = ms.context()
            wait_for(lambda: ctx.cancelled, "the first attempt to be told")
            saw_cancel.set()
            return "discarded"
        return "second"

    h = stalls.submit()
    with app.worker(concurrency=1) as w:
        assert started.wait(PATIENCE)
        clock.advance(61)
        assert saw_cancel.wait(PATIENCE)
        assert h.result(timeout=PATIENCE) == "second"
        w.run_until_idle(timeout=PATIENCE)
    assert [a.result for a in h.info().attempts] == [R.LOST, R.SUCCESS]


def test_the_slot_of_a_canceled_run_is_filled_at_once(make_app: Callable[..., ms.App]) -> None:
    # a cancel makes nothing ready (no wake-up from the store): the worker, told by its
    # housekeeping that the run is gone, looks for work with the freed slot right away
    app = make_app()
    started = threading.Event()

    @app.task
    def long_job() -> None:
        started.set()
        ctx = ms.context()
        wait_for(lambda: ctx.cancelled, "the cancel to reach the handler")

    @app.task
    def next_job() -> str:
        return "next"

    a = long_job.submit()
    with app.worker(concurrency=1) as w:
        assert started.wait(PATIENCE)
        b = next_job.submit()  # waits: the only slot is taken
        assert a.cancel() is True
        assert b.result(timeout=PATIENCE) == "next"
        w.run_until_idle(timeout=PATIENCE)
    assert a.status() == S.CANCELED


def test_leases_are_renewed_on_real_time_while_the_clock_stands_still(
    make_app: Callable[..., ms.App],
) -> None:
    # the clock never moves, so the engine cannot expire the lease whatever the timing:
    # renewals come from the worker's real-time cadence (every 0.5 s here)
    app = make_app(lease_seconds=1.5)
    renewals: list[int] = []

    @app.task
    def patient() -> str:
        h = app.run(ms.context().run_id)
        renewals.append(wait_for(lambda: len(events(h, "lease.renewed")) >= 2, "2 renewals"))
        return "done"

    h = patient.submit()
    with app.worker() as w:
        assert h.result(timeout=PATIENCE) == "done"
        w.run_until_idle(timeout=PATIENCE)
    assert [a.result for a in h.info().attempts] == [R.SUCCESS]


# -- subscribing to the clock -----------------------------------------------------------------------
def test_a_worker_listens_to_its_clock_while_it_runs_and_no_longer(
    make_app: Callable[..., ms.App], clock: ManualClock
) -> None:
    app = make_app()
    assert clock._listeners == {}
    with app.worker():
        assert len(clock._listeners) == 1
    assert clock._listeners == {}


def test_a_clock_that_follows_real_time_has_nothing_to_tell() -> None:
    assert watch(SystemClock(), lambda: None) is None
