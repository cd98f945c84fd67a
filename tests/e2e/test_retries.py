"""Attempt outcomes: Retry, other exceptions, Fail, Suspend + resume, backoff, attempt caps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

import mainspring as ms
from mainspring.testing import ManualClock
from mainspring.worker import Worker
from mainspring.worker import timers as timers_module

from .helpers import attempt_results, wait_for, wait_state

R = ms.AttemptResult
FAST = ms.Backoff.fixed(0.01)


def caught_up(w: Worker, clock: ManualClock) -> None:
    """Wait until the worker had a turn (promotion, leasing) at the clock's time."""
    wait_for(
        lambda: w.clock_seen is not None and w.clock_seen >= clock.now(),
        10,
        f"the worker to see the clock at {clock.now()}",
    )


def test_retry_then_success(app: ms.App) -> None:
    calls: list[int] = []

    @app.task(max_attempts=3, backoff=ms.Backoff.fixed(30))
    def flaky(x: int) -> int:
        calls.append(ms.context().attempt)
        if len(calls) == 1:
            raise ms.Retry(delay=0.05)  # an explicit delay wins over the 30 s backoff
        return x * 2

    h = flaky.submit(21)
    with app.worker(concurrency=2) as w:
        w.run_until_idle(timeout=10)
    assert h.result(timeout=1) == 42
    assert calls == [1, 2]
    assert attempt_results(h) == [R.RETRYABLE, R.SUCCESS]
    info = h.info()
    assert info.state == ms.RunState.COMPLETED
    assert info.output == 42
    assert [a.number for a in info.attempts] == [1, 2]
    states = [e.data["to"] for e in h.history() if e.type == "run.state_changed"]
    assert "retry_wait" in states
    assert len(app.runs()) == 1  # retries never create runs


def test_retry_delay_may_be_a_timedelta(app: ms.App) -> None:
    @app.task(max_attempts=2, backoff=ms.Backoff.fixed(30))
    def later() -> str:
        if ms.context().attempt == 1:
            raise ms.Retry(delay=timedelta(milliseconds=50))
        return "ok"

    h = later.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    assert h.result(timeout=1) == "ok"
    assert attempt_results(h) == [R.RETRYABLE, R.SUCCESS]


@pytest.mark.parametrize("delay", ["1", float("nan"), float("inf"), -1.0])
def test_a_bad_retry_delay_is_the_handlers_error_and_the_worker_goes_on(
    app: ms.App, delay: object
) -> None:
    @app.task(max_attempts=2, backoff=FAST)
    def confused() -> str:
        if ms.context().attempt == 1:
            raise ms.Retry(delay=delay)  # type: ignore[arg-type]
        return "ok"

    @app.task
    def bystander() -> str:
        return "fine"

    h, other = confused.submit(), bystander.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    assert h.result(timeout=1) == "ok" and other.result(timeout=1) == "fine"
    first = h.info().attempts[0]
    assert first.result == R.RETRYABLE
    assert first.error is not None and "InvalidSchedule" in first.error and "delay" in first.error


def test_generic_exception_is_retryable_until_attempts_run_out(app: ms.App) -> None:
    calls = []

    @app.task(max_attempts=3, backoff=FAST)
    def broken() -> None:
        calls.append(1)
        raise ValueError("boom at the far end")

    h = broken.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    assert len(calls) == 3
    info = h.info()
    assert info.state == ms.RunState.FAILED
    assert attempt_results(h) == [R.RETRYABLE] * 3
    for a in info.attempts:
        assert a.error is not None and "ValueError" in a.error and "boom at the far end" in a.error
        assert a.finished_at is not None and a.finished_at >= a.started_at
        assert a.started_at.tzinfo is not None
    assert info.error is not None and "boom at the far end" in info.error
    finished = [e for e in h.history() if e.type == "attempt.finished"]
    assert len(finished) == 3
    assert all("Traceback" in e.data.get("traceback", "") for e in finished)
    assert all(e.data["result"] == "retryable" for e in finished)
    with pytest.raises(ms.RunFailed):
        h.result(timeout=1)
    assert len(app.runs()) == 1


def test_fail_is_terminal_whatever_attempts_are_left(app: ms.App) -> None:
    calls = []

    @app.task(max_attempts=5, backoff=FAST)
    def refuses() -> None:
        calls.append(1)
        raise ms.Fail("the address does not exist")

    h = refuses.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    assert calls == [1]
    assert h.status() == ms.RunState.FAILED
    assert attempt_results(h) == [R.TERMINAL]
    assert "the address does not exist" in (h.info().error or "")
    with pytest.raises(ms.RunFailed) as exc:
        h.result(timeout=1)
    assert isinstance(exc.value, ms.MainspringError)


def test_suspend_then_resume(app: ms.App) -> None:
    seen: list[int] = []

    @app.task(max_attempts=1)
    def needs_approval() -> str:
        seen.append(ms.context().attempt)
        if len(seen) == 1:
            raise ms.Suspend("waiting for approval")
        return "approved"

    h = needs_approval.submit()
    with app.worker() as w:
        # a suspended run does not keep the store busy
        w.run_until_idle(timeout=10)
        assert h.status() == ms.RunState.SUSPENDED
        assert attempt_results(h) == [R.SUSPENDED]
        assert h.resume() is True
        assert h.result(timeout=10) == "approved"
        w.run_until_idle(timeout=10)
    assert h.resume() is False  # not suspended any more
    # the suspended attempt did not use up the single allowed attempt
    assert attempt_results(h) == [R.SUSPENDED, R.SUCCESS]
    assert seen == [1, 2]
    reasons = [(e.data["from"], e.data["to"]) for e in h.history() if e.type == "run.state_changed"]
    assert ("running", "suspended") in reasons and ("suspended", "ready") in reasons


def test_resume_of_a_run_that_is_not_suspended_is_false(app: ms.App) -> None:
    @app.task
    def noop() -> None:
        return None

    h = noop.submit()
    before = len(app.log())
    assert h.resume() is False
    assert len(app.log()) == before


def _waiting_after(h: ms.RunHandle, n: int) -> bool:
    """The run waits for its retry after ``n`` attempts."""
    info = h.info()
    return info.state == ms.RunState.RETRY_WAIT and len(info.attempts) == n


def test_fixed_backoff_spaces_attempts(make_app: Callable[..., ms.App]) -> None:
    clock = ManualClock(datetime(2027, 1, 1, tzinfo=UTC))  # whole seconds: exact sums
    app = make_app(clock=clock)

    @app.task(max_attempts=3, backoff=ms.Backoff.fixed(30))
    def always_fails() -> None:
        raise RuntimeError("nope")

    h = always_fails.submit()
    with app.worker() as w:
        for n in (1, 2):
            # (one read: the state and the attempts of the same moment; two reads could see
            # the retry_wait before a promotion and the attempt it then started)
            wait_for(lambda n=n: _waiting_after(h, n), 10, f"attempt {n} to fail")
            clock.advance(29)
            caught_up(w, clock)
            # not before its backoff
            assert _waiting_after(h, n)
            clock.advance(1)
        wait_state(h, ms.RunState.FAILED)
        w.run_until_idle(timeout=10)
    info = h.info()
    assert info.state == ms.RunState.FAILED
    assert len(info.attempts) == 3
    for prev, nxt in zip(info.attempts, info.attempts[1:], strict=False):
        assert prev.finished_at is not None
        gap = (nxt.started_at - prev.finished_at).total_seconds()
        assert gap == 30.0, gap  # the backoff, and not a moment more (by the App's clock)
    waits = [
        e for e in h.history() if e.type == "run.state_changed" and e.data["to"] == "retry_wait"
    ]
    assert len(waits) == 2


def test_attempts_never_exceed_max_attempts(app: ms.App) -> None:
    lock = threading.Lock()
    calls: dict[str, int] = {}

    @app.task(max_attempts=2, backoff=FAST)
    def unlucky(i: int) -> None:
        with lock:
            calls[ms.context().run_id] = calls.get(ms.context().run_id, 0) + 1
        if i % 2:
            raise ms.Retry()
        raise KeyError(i)

    handles = [unlucky.submit(i) for i in range(10)]
    with app.worker(concurrency=4) as w:
        w.run_until_idle(timeout=15)
    for h in handles:
        info = h.info()
        assert info.state == ms.RunState.FAILED
        assert len(info.attempts) == 2
        assert calls[h.run_id] == 2
    assert len(app.runs(limit=1000)) == 10


def test_suspended_attempts_do_not_count_toward_max_attempts(app: ms.App) -> None:
    calls: list[int] = []

    @app.task(max_attempts=2, backoff=FAST)
    def moody() -> None:
        calls.append(ms.context().attempt)
        if len(calls) <= 2:
            raise ms.Suspend("not now")
        raise RuntimeError("and now it breaks")

    h = moody.submit()
    with app.worker() as w:
        for _ in range(2):
            w.run_until_idle(timeout=10)
            assert h.status() == ms.RunState.SUSPENDED
            assert h.resume()
        w.run_until_idle(timeout=10)
    assert h.status() == ms.RunState.FAILED
    assert attempt_results(h) == [R.SUSPENDED, R.SUSPENDED, R.RETRYABLE, R.RETRYABLE]
    assert calls == [1, 2, 3, 4]
    counted = [a for a in h.info().attempts if a.result not in (R.SUSPENDED, R.LOST)]
    assert len(counted) == 2


def test_a_failed_run_is_never_dispatched_again(app: ms.App) -> None:
    calls = []

    @app.task(max_attempts=1)
    def once() -> None:
        calls.append(1)
        raise RuntimeError("x")

    h = once.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    wait_state(h, ms.RunState.FAILED)
    with app.worker() as w:
        w.run_until_idle(timeout=5)
    assert calls == [1]
    assert h.resume() is False
    assert h.cancel() is False


def test_short_backoffs_are_honoured_promptly(
    make_app: Callable[..., ms.App], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the worker neither polls nor renews for an hour here (its renewals come every third
    # of the lease): retries that waited for either rather than for their own due time
    # would not all be done within run_until_idle's bound
    monkeypatch.setattr(timers_module, "POLL_SECONDS", 3600.0)
    app = make_app(lease_seconds=3 * 3600)

    @app.task(max_attempts=6, backoff=ms.Backoff.fixed(0.02))
    def bouncy() -> None:
        raise ms.Retry()

    @app.task(max_attempts=6, backoff=ms.Backoff.fixed(60))
    def explicit() -> None:
        raise ms.Retry(delay=0.02)

    for task in (bouncy, explicit):
        h = task.submit()
        with app.worker() as w:
            w.run_until_idle(timeout=30)
        assert len(h.info().attempts) == 6
        assert h.status() == ms.RunState.FAILED
