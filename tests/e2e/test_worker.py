"""Worker behaviour seen from outside: lease renewal, hung handlers, queues, result waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import mainspring as ms
from mainspring.testing import ManualClock
from mainspring.worker import Worker

from .helpers import wait_for, wait_state


def renewals(h: ms.RunHandle) -> int:
    return sum(1 for e in h.history() if e.type == "lease.renewed")


def test_a_handler_longer_than_the_lease_keeps_its_lease(make_app: Callable[..., ms.App]) -> None:
    # the App's time moves by hand, in steps shorter than the lease: the engine expires
    # leases by that time, so only renewals keep this one (the worker renews when it sees
    # the clock a third of the lease on; its real-time renewals are tests/worker's)
    clock = ManualClock()
    app = make_app(lease_seconds=30.0, clock=clock)
    calls: list[int] = []
    gate = threading.Event()

    @app.task
    def long_job() -> str:
        calls.append(1)
        gate.wait(30)
        return "done"

    h = long_job.submit()
    try:
        with app.worker() as w:
            wait_state(h, ms.RunState.RUNNING)
            for step in range(1, 8):  # 105 s in all: more than three lease periods
                clock.advance(15)
                wait_for(lambda step=step: renewals(h) >= step, 10, f"renewal {step} of the lease")
            gate.set()
            w.run_until_idle(timeout=10)
    finally:
        gate.set()
    assert h.result(timeout=1) == "done"
    assert calls == [1]
    assert [a.result for a in h.info().attempts] == [ms.AttemptResult.SUCCESS]
    types = [e.type for e in h.history()]
    assert "lease.renewed" in types and "lease.expired" not in types


def test_a_hung_handler_does_not_take_the_slot_forever(app: ms.App) -> None:
    release = threading.Event()
    order: list[str] = []

    @app.task(timeout=0.2)
    def hangs() -> None:
        order.append("hang-start")
        release.wait(10)  # ignores ctx.cancelled
        order.append("hang-end")

    @app.task
    def quick() -> None:
        order.append("quick")

    a = hangs.submit()
    b = quick.submit()
    try:
        with app.worker(concurrency=1) as w:
            wait_state(b, ms.RunState.COMPLETED, timeout=5)
            assert order == ["hang-start", "quick"]  # while the first handler still hangs
            assert a.status() == ms.RunState.FAILED
            release.set()
            w.run_until_idle(timeout=5)
    finally:
        release.set()
    assert [x.result for x in a.info().attempts] == [ms.AttemptResult.TIMEOUT]


def test_a_worker_leases_only_its_queues(app: ms.App) -> None:
    ran: list[str] = []

    @app.task(queue="mail")
    def mail(x: str) -> None:
        ran.append(f"mail:{x}")

    @app.task
    def other(x: str) -> None:
        ran.append(f"other:{x}")

    m = mail.submit("1")
    o = other.submit("1")
    moved = other.with_options(queue="mail").submit("2")
    assert (m.info().queue, o.info().queue, moved.info().queue) == ("mail", "default", "mail")
    with app.worker(queues=["mail"]) as w:
        wait_for(
            lambda: {m.status(), moved.status()} == {ms.RunState.COMPLETED},
            10,
            "the mail queue to drain",
        )
        # the turns that leased and recorded those had free slots, and left this one
        assert sorted(ran) == ["mail:1", "other:2"]
        assert o.status() == ms.RunState.READY
        with pytest.raises(TimeoutError):
            w.run_until_idle(timeout=0.3)
    with app.worker() as w:  # queues=None: every queue this App's tasks declare
        w.run_until_idle(timeout=5)
    assert o.status() == ms.RunState.COMPLETED


def test_result_timeout_and_outcomes(app: ms.App) -> None:
    @app.task
    def echo(x: object) -> object:
        return x

    h = echo.submit({"a": [1, 2.5, None, True, "s"]})
    with pytest.raises(TimeoutError, match=r"still ready after 0\.2 s: no live worker serves"):
        h.result(timeout=0.2)
    assert h.status() == ms.RunState.READY
    with app.worker() as w:
        assert h.result(timeout=5) == {"a": [1, 2.5, None, True, "s"]}
        w.run_until_idle(timeout=5)
    assert app.get_run(h.run_id).output == {"a": [1, 2.5, None, True, "s"]}


def test_a_result_that_times_out_says_what_holds_the_run_back(app: ms.App) -> None:
    """A worker is running, but the run waits on its rate limit: the timeout says so,
    rather than asking whether a worker runs."""

    @app.task(rate_limit="1/h")
    def once(x: int) -> int:
        return x

    first, second = once.submit(1), once.submit(2)
    with app.worker():
        assert first.result(timeout=5) == 1
        with pytest.raises(TimeoutError, match=r"still ready after 0\.3 s: its rate limit \(1 per"):
            second.result(timeout=0.3)


def test_leaving_the_worker_block_lets_running_handlers_finish(app: ms.App) -> None:
    started = threading.Event()

    @app.task
    def short() -> str:
        started.set()
        time.sleep(0.3)
        return "finished"

    h = short.submit()
    with app.worker(grace_seconds=5):
        assert started.wait(5)
    assert h.status() == ms.RunState.COMPLETED
    assert h.result(timeout=1) == "finished"


def test_leaving_the_worker_block_releases_what_overruns_the_grace(app: ms.App) -> None:
    started = threading.Event()
    stop = threading.Event()
    attempts: list[int] = []

    @app.task
    def slow() -> str:
        attempts.append(ms.context().attempt)
        started.set()
        if len(attempts) == 1:
            stop.wait(5)
        return "ok"

    h = slow.submit()
    try:
        with app.worker(grace_seconds=0.2):
            assert started.wait(5)
        # released: the attempt is closed as lost and does not count; the run is eligible again
        assert h.info().attempts[0].result == ms.AttemptResult.LOST
        assert h.status() in (ms.RunState.RETRY_WAIT, ms.RunState.READY)
    finally:
        stop.set()
    with app.worker() as w:
        w.run_until_idle(timeout=5)
    assert h.result(timeout=1) == "ok"
    assert [a.result for a in h.info().attempts] == [
        ms.AttemptResult.LOST,
        ms.AttemptResult.SUCCESS,
    ]


def test_two_workers_share_the_work_and_run_each_run_once(app: ms.App) -> None:
    lock = threading.Lock()
    seen: dict[str, int] = {}

    @app.task
    def job(i: int) -> int:
        with lock:
            seen[ms.context().run_id] = seen.get(ms.context().run_id, 0) + 1
        time.sleep(0.005)
        return i

    handles = [job.submit(i) for i in range(60)]
    with app.worker(concurrency=4) as w1, app.worker(concurrency=4) as w2:
        w1.run_until_idle(timeout=20)
        w2.run_until_idle(timeout=20)
    assert [h.result(timeout=1) for h in handles] == list(range(60))
    assert set(seen) == {h.run_id for h in handles}
    assert set(seen.values()) == {1}


def test_run_worker_ends_when_its_loop_crashes(
    app: ms.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a worker process whose loop died must exit (so a supervisor restarts it), not linger
    @app.task
    def noop() -> None: ...

    def crash(self: Worker, waiter: object) -> None:
        raise RuntimeError("the loop broke")

    monkeypatch.setattr(Worker, "_loop", crash)
    with pytest.raises(ms.MainspringError, match="the loop broke"):
        app.run_worker(concurrency=1)


# -- group commit: results that finish close together share one transaction -------------------------
def _finish_commits(app: ms.App, handles: list[ms.RunHandle]) -> int:
    """How many transactions recorded these runs' results (events of one share ``at``)."""
    ats = {e.at for h in handles for e in h.history() if e.type == "attempt.finished"}
    assert ats
    return len(ats)


def _gather(monkeypatch: pytest.MonkeyPatch, at_most: float, quiet: float) -> None:
    """Set the worker's group-commit waits (generous, so that timing cannot decide)."""
    from mainspring.worker import worker as worker_module

    monkeypatch.setattr(worker_module, "GATHER_SECONDS", at_most)
    monkeypatch.setattr(worker_module, "GATHER_QUIET_SECONDS", quiet)


def test_results_that_keep_coming_are_recorded_together(
    app: ms.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    _gather(monkeypatch, at_most=5.0, quiet=1.0)
    go = threading.Event()

    @app.task
    def staggered(i: int) -> int:
        go.wait(10)
        time.sleep(0.02 * i)  # the eight finish 20 ms apart, releasing the GIL meanwhile
        return i

    handles = [staggered.submit(i) for i in range(8)]
    with app.worker(concurrency=8) as w:
        wait_for(lambda: all(h.status() == ms.RunState.RUNNING for h in handles), what="8 running")
        go.set()
        w.run_until_idle(timeout=20)
    assert [h.result(timeout=1) for h in handles] == list(range(8))
    assert _finish_commits(app, handles) == 1  # not one commit per half, nor per result


def test_finished_results_do_not_wait_for_busy_handlers(
    app: ms.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    _gather(monkeypatch, at_most=30.0, quiet=0.05)
    release = threading.Event()

    @app.task
    def quick(i: int) -> int:
        return i

    @app.task
    def busy() -> str:
        release.wait(20)
        return "done"

    slow = [busy.submit() for _ in range(4)]
    with app.worker(concurrency=8) as w:
        wait_for(lambda: all(h.status() == ms.RunState.RUNNING for h in slow), what="4 busy")
        fast = [quick.submit(i) for i in range(4)]
        # recorded once completions pause (50 ms), not when the busy ones end or at 30 s
        wait_for(lambda: all(h.status() == ms.RunState.COMPLETED for h in fast), timeout=10)
        assert all(h.status() == ms.RunState.RUNNING for h in slow)
        release.set()
        w.run_until_idle(timeout=20)
    assert [h.result(timeout=1) for h in slow] == ["done"] * 4


def test_stop_gives_up_on_results_the_store_will_not_take(
    app: ms.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that keeps refusing a worker's results (a database gone for good) must not
    keep the worker from stopping: after the grace period it leaves them to lease expiry."""

    @app.task
    def quick() -> int:
        return 1

    h = quick.submit()
    cycle = app.engine.cycle
    refused = threading.Event()

    def refusing(*args: Any, **kwargs: Any) -> Any:
        if args[3]:  # results to record
            refused.set()
            raise ms.StoreError("the store went away")
        return cycle(*args, **kwargs)

    monkeypatch.setattr(app.engine, "cycle", refusing)
    with app.worker(grace_seconds=0.3) as w:
        assert refused.wait(10)  # the handler returned; its result is refused
        stopping = threading.Thread(target=w.stop)
        stopping.start()
        stopping.join(60)  # (a bound only a worker that never stops reaches)
        assert not stopping.is_alive(), "the worker kept retrying instead of stopping"
    assert h.status() == ms.RunState.RUNNING  # not recorded: the lease will expire


def test_heartbeats_renew_the_lease_but_a_flood_of_them_is_folded(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app(lease_seconds=3.0)  # renewals every 1 s; heartbeats at most every 0.1 s

    took: list[float] = []

    @app.task
    def chatty() -> None:
        began = time.monotonic()
        for _ in range(100):
            ms.context().heartbeat()
            time.sleep(0.005)
        # (and however slow the machine, not before the heartbeats renewed the lease once)
        mine = app.run(ms.context().run_id)
        wait_for(lambda: renewals(mine) >= 1, 10, "a renewal")
        took.append(time.monotonic() - began)

    h = chatty.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    renewed = [e for e in h.history() if e.type == "lease.renewed"]
    # about 0.5 s of heartbeats (longer on a loaded machine): one renewal per 0.1 s of
    # them at most, plus the periodic ones, rather than one per call
    assert 1 <= len(renewed) <= took[0] / 0.1 + took[0] / 1.0 + 2


def test_on_attempt_hears_of_an_attempt_a_workflow_suspended(app: ms.App) -> None:
    """Every finished attempt, the suspended ones too: a workflow records those itself.
    (The worker's lines left them out.)"""
    heard: list[tuple[str, int, ms.AttemptResult]] = []

    @app.workflow(name="waits.once")
    def waits() -> str:
        return str(ms.wait_for("go", timeout=60))

    h = waits.submit()
    with app.worker(on_attempt=lambda d: heard.append((d.run_id, d.attempt, d.result))) as w:
        wait_state(h, ms.RunState.SUSPENDED)
        app.signal(h.run_id, "go", "now")
        assert h.result(timeout=10) == "now"
        w.run_until_idle()
    suspended, success = ms.AttemptResult.SUSPENDED, ms.AttemptResult.SUCCESS
    assert heard == [(h.run_id, 1, suspended), (h.run_id, 2, success)]
