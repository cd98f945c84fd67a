"""Cancel (ready, running, repeat task, terminal) and engine-wide pause / resume."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

import mainspring as ms

from .helpers import wait_for, wait_state

S = ms.RunState


def test_cancel_a_ready_run(app: ms.App) -> None:
    calls = []

    @app.task
    def never() -> None:
        calls.append(1)

    h = never.submit()
    assert h.status() == S.READY
    assert h.cancel() is True
    assert h.status() == S.CANCELED
    with pytest.raises(ms.RunCanceled):
        h.result(timeout=1)
    before = len(app.log())
    assert h.cancel() is False  # already terminal
    assert len(app.log()) == before
    with app.worker() as w:
        w.run_until_idle(timeout=5)
    assert calls == []
    assert h.info().attempts == []


def test_cancel_a_running_run(make_app: Callable[..., ms.App]) -> None:
    app = make_app(lease_seconds=0.6)
    started = threading.Event()
    saw_cancel = threading.Event()
    finished = threading.Event()

    @app.task
    def long_job() -> str:
        started.set()
        ctx = ms.context()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ctx.cancelled:
            time.sleep(0.01)
        if ctx.cancelled:
            saw_cancel.set()
        finished.set()
        return "late result"

    h = long_job.submit()
    with app.worker() as w:
        assert started.wait(5)
        assert h.status() == S.RUNNING
        assert h.cancel() is True
        assert h.status() == S.CANCELED
        assert saw_cancel.wait(5), "the handler never saw ctx.cancelled"
        assert finished.wait(5)
        # the late return reached the worker (which discards it, or would record it before
        # the store is idle: run_until_idle waits for what the worker holds)
        wait_for(lambda: w.executed == 1, 5, "the handler's return to reach the worker")
        w.run_until_idle(timeout=5)
    info = h.info()
    assert info.state == S.CANCELED
    assert info.output is None  # the late result was discarded
    assert len(info.attempts) == 1
    assert info.attempts[0].result is not None
    assert info.attempts[0].result != ms.AttemptResult.SUCCESS
    assert not any(
        e.type == "attempt.finished" and e.data.get("result") == "success" for e in h.history()
    )
    with pytest.raises(ms.RunCanceled):
        h.result(timeout=1)


def test_cancel_of_a_terminal_run_returns_false(app: ms.App) -> None:
    @app.task
    def ok() -> int:
        return 1

    h = ok.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=5)
    assert h.status() == S.COMPLETED
    before = len(app.log())
    assert h.cancel() is False
    assert h.status() == S.COMPLETED
    assert len(app.log()) == before
    assert h.result(timeout=1) == 1


def test_cancel_a_repeat_task_cancels_its_non_terminal_runs(app: ms.App) -> None:
    @app.task
    def tick() -> None:
        return None

    t = tick.repeat(count=4, every=3600)
    runs = t.runs()
    assert len(runs) == 4
    assert [r.state for r in runs] == [S.READY, S.SCHEDULED, S.SCHEDULED, S.SCHEDULED]
    with app.worker() as w:
        w.run_until_idle(timeout=5)  # the first occurrence runs; the rest are hours away
    assert [r.state for r in t.runs()] == [S.COMPLETED, S.SCHEDULED, S.SCHEDULED, S.SCHEDULED]
    assert t.cancel() is True
    assert [r.state for r in t.runs()] == [S.COMPLETED, S.CANCELED, S.CANCELED, S.CANCELED]
    before = len(app.log())
    assert t.cancel() is False
    assert len(app.log()) == before
    assert len(t.runs()) == 4


def test_cancel_unknown_run_raises(app: ms.App) -> None:
    with pytest.raises(ms.UnknownRun):
        app.run("0190a0a0-0000-7000-8000-000000000000").cancel()


def test_paused_engine_leases_nothing(app: ms.App) -> None:
    calls: list[int] = []

    @app.task
    def job(i: int) -> int:
        calls.append(i)
        return i

    assert app.pause() is True
    assert app.pause() is False  # already paused
    handles = [job.submit(i) for i in range(3)]
    with app.worker() as w:
        with pytest.raises(TimeoutError):
            w.run_until_idle(timeout=0.8)
        assert calls == []
        assert all(h.status() == S.READY for h in handles)
        assert app.stats()["ready"] == 3
        assert app.resume() is True
        assert app.resume() is False
        w.run_until_idle(timeout=10)
    assert sorted(calls) == [0, 1, 2]
    types = [e.type for e in app.log(limit=100_000)]
    assert types.count("engine.paused") == 1 and types.count("engine.resumed") == 1


def test_pause_while_running_lets_the_attempt_finish_but_leases_no_more(app: ms.App) -> None:
    gate = threading.Event()
    started: list[int] = []

    @app.task
    def job(i: int) -> None:
        started.append(i)
        gate.wait(10)

    a = job.submit(0)
    with app.worker(concurrency=1) as w:
        wait_for(lambda: started, 5, "the first run to start")
        b = job.submit(1)
        app.pause()
        gate.set()
        wait_state(a, S.COMPLETED, timeout=5)
        # the transaction that recorded a's end had a's slot to fill, and leased nothing
        assert b.status() == S.READY
        assert started == [0]
        app.resume()
        wait_state(b, S.COMPLETED, timeout=5)
        w.run_until_idle(timeout=5)


def test_cancel_a_running_async_run(make_app: Callable[..., ms.App]) -> None:
    app = make_app(lease_seconds=0.6)
    started = threading.Event()
    interrupted = threading.Event()

    @app.task
    async def waits() -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            interrupted.set()
            raise
        return "late"

    h = waits.submit()
    with app.worker() as w:
        assert started.wait(5)
        assert h.cancel() is True
        assert interrupted.wait(5), "the coroutine of a canceled run was not cancelled"
        w.run_until_idle(timeout=5)
    assert h.status() == S.CANCELED
    assert h.info().output is None


@pytest.mark.parametrize("what", ["engine", "queue"])
def test_a_pause_waits_for_a_lease_turn_in_progress(
    make_app: Callable[..., ms.App], store_kind: str, what: str
) -> None:
    """A worker's turn that read the runs it may lease before a pause commits its leases
    before the pause, never after it: ``pause()`` returns once no lease is being decided.
    (On PostgreSQL a turn under way could commit its leases after the pause's event.)"""
    if store_kind != "postgres":
        pytest.skip("SQLite runs write transactions one at a time")
    app, other = make_app(), make_app()

    @app.task(name="pause.job")
    def job() -> None:
        pass

    h = job.submit()
    paused = threading.Event()

    def pause() -> None:
        other.pause() if what == "engine" else other.pause(queue="default")
        paused.set()

    with app.store.write() as tx:  # a lease turn, between its read and its commit
        [candidate] = tx.ready_candidates(time.time(), None, ["pause.job"], 10)
        assert candidate.run_id == h.run_id
        t = threading.Thread(target=pause)
        t.start()
        assert not paused.wait(0.5), "the pause committed while a lease turn was under way"
    t.join(10)
    assert paused.is_set()
    # a turn that begins after the pause reads it: nothing to lease
    with app.store.write() as tx:
        assert tx.ready_candidates(time.time(), None, ["pause.job"], 10) == []


def test_bulk_cancel_takes_each_run_once(app: ms.App) -> None:
    @app.task(name="bulk.job")
    def job() -> None:
        pass

    h = job.submit()
    assert app.engine.cancel_runs([h.run_id, h.run_id]) == 1
    assert h.status() == ms.RunState.CANCELED
