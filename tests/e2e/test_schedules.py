"""delay / run_at, repeat, cron (6 fields, max_occurrences) and misfire handling."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

import mainspring as ms
from mainspring.core.clock import ManualClock
from mainspring.worker import Worker

from .helpers import wait_for, wait_state

S = ms.RunState

#: where the tests' clocks start: a whole second, so that sums of whole seconds are exact
START = 1_800_000_000.0


def caught_up(w: Worker, clock: ManualClock) -> None:
    """Wait until the worker had a turn (promotion, cron, leasing) at the clock's time."""
    wait_for(
        lambda: w.clock_seen is not None and w.clock_seen >= clock.now(),
        10,
        f"the worker to see the clock at {clock.now()}",
    )


def completed(runs: list[ms.RunInfo]) -> int:
    return [r.state for r in runs].count(S.COMPLETED)


@pytest.mark.parametrize("how", ["delay", "timedelta", "run_at"])
def test_a_delayed_run_stays_scheduled_until_due(make_app: Callable[..., ms.App], how: str) -> None:
    clock = ManualClock(START)
    app = make_app(clock=clock)
    ran_at: list[float] = []

    @app.task
    def later() -> str:
        ran_at.append(clock.now())
        return "done"

    if how == "delay":
        opts = later.with_options(delay=60)
    elif how == "timedelta":
        opts = later.with_options(delay=timedelta(minutes=1))
    else:
        opts = later.with_options(run_at=datetime.fromtimestamp(START, UTC) + timedelta(minutes=1))
    h = opts.submit()
    info = h.info()
    assert info.state == S.SCHEDULED
    assert info.scheduled_at.tzinfo is not None
    assert info.scheduled_at.timestamp() == START + 60
    with app.worker() as w:
        # not due yet: the store counts as idle and the run stays scheduled
        w.run_until_idle(timeout=5)
        clock.advance(59)
        caught_up(w, clock)
        w.run_until_idle(timeout=5)
        assert h.status() == S.SCHEDULED
        assert ran_at == []
        clock.advance(1)  # due: the running worker sees it at once
        assert h.result(timeout=10) == "done"
    assert ran_at == [START + 60]


def test_a_delayed_run_runs_in_real_time_once_due(app: ms.App) -> None:
    # the App's own clock: the worker sleeps until the due time and wakes for it
    ran_at: list[float] = []

    @app.task
    def later() -> str:
        ran_at.append(time.time())
        return "done"

    h = later.with_options(delay=0.3).submit()
    due = h.info().scheduled_at.timestamp()
    with app.worker():
        assert h.result(timeout=10) == "done"
    assert ran_at[0] >= due


def test_repeat_makes_exactly_count_runs_and_runs_them(make_app: Callable[..., ms.App]) -> None:
    clock = ManualClock(START)
    app = make_app(clock=clock)
    lock = threading.Lock()
    seen: list[str] = []

    @app.task
    def beat() -> None:
        with lock:
            seen.append(ms.context().run_id)

    t = beat.repeat(count=3, every=60)
    runs = t.runs()
    assert len(runs) == 3
    gaps = [(b.scheduled_at - a.scheduled_at).total_seconds() for a, b in itertools.pairwise(runs)]
    assert gaps == [60.0, 60.0]
    with app.worker(concurrency=4) as w:
        for n in (1, 2, 3):
            wait_for(lambda n=n: completed(t.runs()) == n, 10, f"{n} completed runs")
            clock.advance(60)
        clock.advance(3600)  # long past the last occurrence: nothing more comes of it
        caught_up(w, clock)
        w.run_until_idle(timeout=5)
    assert len(t.runs()) == 3
    assert sorted(seen) == sorted(r.run_id for r in t.runs())
    assert len(app.runs()) == 3


def test_cron_with_seconds_field_and_max_occurrences(make_app: Callable[..., ms.App]) -> None:
    clock = ManualClock(START + 0.5)  # half a second past a whole second
    app = make_app(clock=clock)
    seen: list[float] = []

    @app.task
    def every_second() -> None:
        seen.append(clock.now())

    t = every_second.schedule(cron="* * * * * *", max_occurrences=3)
    with app.worker() as w:
        for n in (1, 2, 3):
            clock.advance(1)
            wait_for(lambda n=n: completed(t.runs()) == n, 10, f"{n} completed cron runs")
        clock.advance(3)  # more occurrences would be due by now
        caught_up(w, clock)
        w.run_until_idle(timeout=5)
    runs = t.runs()
    assert len(runs) == 3
    assert all(r.state == S.COMPLETED for r in runs)
    stamps = [r.scheduled_at.timestamp() for r in runs]
    assert all(s == int(s) for s in stamps)  # on whole seconds
    assert [b - a for a, b in itertools.pairwise(stamps)] == [1.0, 1.0]
    assert seen == [START + 1.5, START + 2.5, START + 3.5]  # each as the clock got there


@pytest.mark.parametrize("misfire", ["catch_up", "skip", "coalesce"])
def test_missed_cron_occurrences(make_app: Callable[..., ms.App], misfire: str) -> None:
    start = 1_800_000_030.0  # 30 s past a whole minute
    clock = ManualClock(start)
    app = make_app(clock=clock)
    seen: list[str] = []

    @app.task
    def minutely() -> None:
        seen.append(ms.context().run_id)

    t = minutely.schedule(cron="*/1 * * * *", misfire=misfire)
    first = t.runs()
    assert [(r.state, r.scheduled_at.timestamp()) for r in first] == [(S.SCHEDULED, start + 30)]
    # nothing ran for five and a half minutes: occurrences at +60 .. +300 came due unseen
    clock.advance(300)
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    runs = t.runs()
    by_state: dict[str, list[float]] = {}
    for r in runs:
        by_state.setdefault(r.state, []).append(r.scheduled_at.timestamp() - start)
    if misfire == "catch_up":
        assert by_state[S.COMPLETED] == [30, 90, 150, 210, 270]
        assert len(seen) == 5
    elif misfire == "coalesce":
        assert by_state[S.COMPLETED] == [30]
        assert len(seen) == 1
    else:
        assert S.COMPLETED not in by_state
        assert by_state[S.CANCELED] == [30]
        assert seen == []
    # exactly one future occurrence is waiting, the next whole minute after "now"
    assert by_state[S.SCHEDULED] == [330]


@pytest.mark.parametrize("misfire", ["skip", "coalesce"])
def test_a_few_seconds_without_a_worker_are_a_misfire(
    make_app: Callable[..., ms.App], misfire: str
) -> None:
    # every second; no worker for 3.5 s: the overdue occurrence is 3.5 s late, past the
    # default misfire_grace (1 s), so skip drops it where coalesce runs it; of the missed
    # ones, skip runs the one only 0.5 s late (within the grace) and drops the others
    clock = ManualClock(1_800_000_000.5)
    app = make_app(clock=clock)
    seen: list[int] = []

    @app.task
    def tick() -> None:
        seen.append(1)

    t = tick.schedule(cron="* * * * * *", misfire=misfire)
    clock.advance(4.0)
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    states = sorted(r.state for r in t.runs())
    if misfire == "skip":
        assert seen == [1]
        assert states == [S.CANCELED, S.COMPLETED, S.SCHEDULED]
    else:
        assert seen == [1]
        assert states == [S.COMPLETED, S.SCHEDULED]


def test_cron_future_occurrence_runs_when_the_clock_gets_there(
    make_app: Callable[..., ms.App],
) -> None:
    clock = ManualClock(1_800_000_010.0)  # ten seconds past an hour
    app = make_app(clock=clock)

    @app.task
    def hourly() -> None:
        return None

    t = hourly.schedule(cron="0 * * * *", max_occurrences=2)
    with app.worker() as w:
        w.run_until_idle(timeout=5)
        assert [r.state for r in t.runs()] == [S.SCHEDULED]
        clock.advance(3600)
    with app.worker() as w:
        w.run_until_idle(timeout=5)
        clock.advance(3600)
    with app.worker() as w:
        w.run_until_idle(timeout=5)
        clock.advance(3600 * 5)
    with app.worker() as w:
        w.run_until_idle(timeout=5)
    assert [r.state for r in t.runs()] == [S.COMPLETED, S.COMPLETED]


#: a cron expression that names a year: one occurrence, an hour after START
LAST_IN_2027 = "0 0 9 15 1 * 2027"


def test_a_cron_past_its_last_occurrence_leaves_the_worker_idle(
    make_app: Callable[..., ms.App],
) -> None:
    """A cron with nothing left to derive is not looked at again: it was found due at
    every turn, so an idle worker went round without a pause, a write transaction a turn."""
    clock = ManualClock(START)
    app = make_app(clock=clock)

    @app.task
    def once_in_2027() -> None:
        return None

    t = once_in_2027.schedule(cron=LAST_IN_2027)
    with app.worker() as w:
        clock.advance(3600)
        wait_for(lambda: completed(t.runs()) == 1, 10, "the one occurrence")
        caught_up(w, clock)
        w.run_until_idle(timeout=5)
        before = w.cycles
        time.sleep(1.0)
        assert w.cycles - before < 10  # (it went round thousands of times)
    assert app.get_task(t.task_id).next_at is None
    assert len(t.runs()) == 1
    clock.advance(60)
    assert app.prune(timedelta(seconds=30)) == 1  # and the task, which derives nothing more
    with pytest.raises(ms.UnknownTask):
        app.get_task(t.task_id)


def test_crons_past_their_last_occurrence_do_not_hold_back_the_others(
    make_app: Callable[..., ms.App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The due cron tasks are looked at a page at a time, oldest first: spent ones that
    stayed due filled every page, and a live cron derived nothing more."""
    monkeypatch.setattr("mainspring.engine.turn.STEP_LIMIT", 3)
    clock = ManualClock(START)
    app = make_app(clock=clock)

    @app.task
    def tick() -> None:
        return None

    spent = [tick.schedule(cron=LAST_IN_2027) for _ in range(4)]
    with app.worker() as w:
        clock.advance(3600)  # 09:00: each spent cron's one occurrence
        caught_up(w, clock)
        w.run_until_idle(timeout=5)
        live = tick.schedule(cron="*/10 * * * *")
        for _ in range(6):  # an hour, ten minutes at a time
            clock.advance(600)
            caught_up(w, clock)
            w.run_until_idle(timeout=5)
    assert all(completed(t.runs()) == 1 for t in spent)
    assert completed(live.runs()) == 7  # 09:00, 09:10 ... 10:00


def test_runs_of_a_task_no_worker_knows_wait_in_ready(make_app: Callable[..., ms.App]) -> None:
    app = make_app()

    @app.task
    def known() -> None:
        return None

    with pytest.warns(UserWarning, match="no App has declared 'reports.nightly'"):
        h = app.submit("reports.nightly", args=[1], kwargs={"full": True})
    k = known.submit()
    with app.worker() as w:
        wait_state(k, S.COMPLETED)
        with pytest.raises(TimeoutError):
            w.run_until_idle(timeout=0.5)  # the unknown task's run keeps the store busy
    info = h.info()
    assert info.state == S.READY  # never failed, never dropped
    assert info.attempts == []

    # a process that registers the task picks it up
    other = make_app()
    got: list[tuple[int, bool]] = []

    @other.task(name="reports.nightly")
    def nightly(n: int, full: bool = False) -> str:
        got.append((n, full))
        return "ok"

    with other.worker() as w:
        w.run_until_idle(timeout=10)
    assert got == [(1, True)]
    assert other.get_run(h.run_id).output == "ok"


def test_cron_with_two_workers_derives_each_occurrence_once(
    make_app: Callable[..., ms.App],
) -> None:
    clock = ManualClock(START + 0.5)
    apps = [make_app(clock=clock), make_app(clock=clock)]  # two processes, one time
    lock = threading.Lock()
    seen: list[str] = []
    for a in apps:

        @a.task(name="cron.tick")
        def tick() -> None:
            with lock:
                seen.append(ms.context().run_id)

    t = apps[0].declared["cron.tick"].schedule(cron="* * * * * *")
    with apps[0].worker(concurrency=2) as w0, apps[1].worker(concurrency=2) as w1:
        for n in range(1, 6):
            clock.advance(1)  # wakes both workers at once: they race for the occurrence
            wait_for(lambda n=n: completed(t.runs()) == n, 10, f"{n} completed occurrences")
        assert t.cancel() is True
        clock.advance(5)  # a canceled cron task derives nothing more
        caught_up(w0, clock)
        caught_up(w1, clock)
    runs = t.runs()
    stamps = [r.scheduled_at.timestamp() for r in runs]
    assert len(stamps) == len(set(stamps)), "an occurrence was derived twice"
    assert [b - a for a, b in itertools.pairwise(stamps)] == [1.0] * (len(stamps) - 1)
    assert {r.state for r in runs} <= {S.COMPLETED, S.CANCELED}
    assert [r.state for r in runs].count(S.CANCELED) <= 1
    assert len(seen) == len(set(seen)) == len([r for r in runs if r.state == S.COMPLETED])
    assert len(t.runs()) == len(runs)


def test_idempotent_repeat_returns_the_same_task(app: ms.App) -> None:
    @app.task
    def tick() -> None:
        return None

    t1 = tick.with_options(idempotency_key="daily").repeat(count=3, every=60)
    before = len(app.log())
    t2 = tick.with_options(idempotency_key="daily").repeat(count=3, every=60)
    assert t2.task_id == t1.task_id
    assert len(app.log()) == before
    assert len(app.runs()) == 3
