"""Backoff and the retry decision (the run's life and guarantee 3 of the README)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mainspring as ms
from mainspring.core.model import Attempt, Backoff, Run, TaskOptions
from mainspring.core.retry import backoff_delay, counted_attempts, decide, lost_attempts

R = ms.AttemptResult
S = ms.RunState
NOW = 1_800_000_000.0


def make_run(*results: str | None, run_id: str = "run-1") -> Run:
    """A running run whose attempts ended with ``results`` (the last one just closed)."""
    atts = [
        Attempt(
            attempt_id=f"a{i}",
            number=i + 1,
            started_at=NOW,
            result=r,
            finished_at=None if r is None else NOW,
        )
        for i, r in enumerate(results)
    ]
    return Run(
        run_id=run_id,
        task_id="t",
        task_name="n",
        state=S.RUNNING,
        scheduled_at=NOW,
        due_at=NOW,
        created_at=NOW,
        attempts=atts,
    )


# -- backoff -------------------------------------------------------------------------------
def test_fixed_backoff_is_constant() -> None:
    b = Backoff.fixed(7.5)
    assert [backoff_delay(b, n, salt="x") for n in range(1, 10)] == [7.5] * 9
    assert b.jitter is False


def test_fixed_backoff_accepts_timedelta() -> None:
    from datetime import timedelta

    assert backoff_delay(Backoff.fixed(timedelta(seconds=3)), 4) == 3.0


def test_exponential_without_jitter() -> None:
    b = Backoff.exponential(initial=1.0, factor=2.0, maximum=300.0, jitter=False)
    assert [backoff_delay(b, n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 32, 64]


def test_exponential_cap() -> None:
    b = Backoff.exponential(initial=2.0, factor=3.0, maximum=50.0, jitter=False)
    assert [backoff_delay(b, n) for n in range(1, 6)] == [2, 6, 18, 50, 50]
    # huge n neither overflows nor exceeds the cap
    assert backoff_delay(b, 10_000) == 50.0


def test_n_below_one_is_treated_as_one() -> None:
    b = Backoff.exponential(initial=5.0, factor=2.0, maximum=100.0, jitter=False)
    assert backoff_delay(b, 0) == backoff_delay(b, 1) == 5.0


def test_default_backoff_is_exponential_with_jitter() -> None:
    b = Backoff()
    assert b.kind == "exponential"
    assert b.jitter is True
    assert TaskOptions().backoff == b


@settings(max_examples=300)
@given(
    initial=st.floats(0.001, 100),
    factor=st.floats(1, 10),
    cap=st.floats(0, 1000),
    n=st.integers(1, 200),
    salt=st.text(max_size=40),
)
def test_jitter_is_within_half_and_full_and_deterministic(
    initial: float, factor: float, cap: float, n: int, salt: str
) -> None:
    maximum = initial + cap
    plain = Backoff.exponential(initial=initial, factor=factor, maximum=maximum, jitter=False)
    jit = Backoff.exponential(initial=initial, factor=factor, maximum=maximum, jitter=True)
    d = backoff_delay(plain, n, salt=salt)
    assert initial <= d <= maximum or d == pytest.approx(min(initial, maximum))
    j = backoff_delay(jit, n, salt=salt)
    assert d / 2 - 1e-9 <= j <= d + 1e-9
    assert backoff_delay(jit, n, salt=salt) == j  # same salt, same n: same delay


def test_jitter_varies_with_salt() -> None:
    b = Backoff.exponential(initial=100.0, factor=1.0, maximum=100.0, jitter=True)
    delays = {backoff_delay(b, 1, salt=f"run-{i}") for i in range(50)}
    assert len(delays) > 10  # spread, not one value
    assert all(50.0 <= x <= 100.0 for x in delays)


def test_backoff_validation() -> None:
    with pytest.raises(ms.InvalidSchedule):
        Backoff.exponential(initial=10.0, maximum=5.0)
    with pytest.raises(ms.InvalidSchedule):
        Backoff.exponential(factor=0.5)
    with pytest.raises(ms.InvalidSchedule):
        Backoff.fixed(-1)
    with pytest.raises(ms.InvalidSchedule):
        Backoff.fixed(float("nan"))


# -- decide, one result at a time ------------------------------------------------------
def test_success_completes() -> None:
    d = decide(make_run("success"), TaskOptions(max_attempts=3), R.SUCCESS, NOW)
    assert d.to == S.COMPLETED
    assert d.due_at is None


def test_terminal_fails_now_whatever_attempts_are_left() -> None:
    d = decide(make_run("terminal"), TaskOptions(max_attempts=10), R.TERMINAL, NOW)
    assert d.to == S.FAILED
    assert d.reason == "terminal"


def test_suspended_suspends() -> None:
    d = decide(make_run("suspended"), TaskOptions(max_attempts=1), R.SUSPENDED, NOW)
    assert d.to == S.SUSPENDED
    assert d.due_at is None


@pytest.mark.parametrize("result", [R.RETRYABLE, R.TIMEOUT])
def test_retryable_with_attempts_left_waits_for_backoff(result: ms.AttemptResult) -> None:
    opts = TaskOptions(max_attempts=3, backoff=Backoff.fixed(10))
    d = decide(make_run(result.value), opts, result, NOW)
    assert d.to == S.RETRY_WAIT
    assert d.reason == result.value
    assert d.due_at == NOW + 10


@pytest.mark.parametrize("result", [R.RETRYABLE, R.TIMEOUT])
def test_retryable_out_of_attempts_fails(result: ms.AttemptResult) -> None:
    opts = TaskOptions(max_attempts=2, backoff=Backoff.fixed(10))
    d = decide(make_run("retryable", result.value), opts, result, NOW)
    assert d.to == S.FAILED
    assert d.reason == "max_attempts"
    d1 = decide(make_run(result.value), TaskOptions(max_attempts=1), result, NOW)
    assert d1.to == S.FAILED


def test_backoff_uses_the_counted_attempt_number() -> None:
    opts = TaskOptions(
        max_attempts=10,
        backoff=Backoff.exponential(initial=1, factor=2, maximum=1000, jitter=False),
    )
    # two lost and one suspended attempt in between do not advance the backoff
    run = make_run("retryable", "lost", "suspended", "lost", "retryable")
    d = decide(run, opts, R.RETRYABLE, NOW)
    assert d.due_at == NOW + 2.0  # second counted attempt -> 1 * 2**1


def test_explicit_retry_delay_wins_over_backoff() -> None:
    opts = TaskOptions(max_attempts=3, backoff=Backoff.fixed(100))
    d = decide(make_run("retryable"), opts, R.RETRYABLE, NOW, retry_delay=0.0)
    assert d.due_at == NOW
    d = decide(make_run("retryable"), opts, R.RETRYABLE, NOW, retry_delay=2.5)
    assert d.due_at == NOW + 2.5


def test_jittered_backoff_is_salted_by_run_id() -> None:
    opts = TaskOptions(max_attempts=3, backoff=Backoff.exponential(initial=100, maximum=100))
    a = decide(make_run("retryable", run_id="A"), opts, R.RETRYABLE, NOW)
    a2 = decide(make_run("retryable", run_id="A"), opts, R.RETRYABLE, NOW)
    assert a == a2  # pure: same input, same decision
    assert a.due_at is not None and NOW + 50 <= a.due_at <= NOW + 100


def test_lost_retries_without_counting() -> None:
    opts = TaskOptions(max_attempts=1, max_lost=3)
    d = decide(make_run("lost"), opts, R.LOST, NOW)
    assert d.to == S.RETRY_WAIT
    assert d.reason == "lost"
    assert d.due_at == NOW  # no backoff for a crash
    d = decide(make_run("lost", "lost"), opts, R.LOST, NOW)
    assert d.to == S.RETRY_WAIT


def test_max_lost_fails_with_reason_lost() -> None:
    opts = TaskOptions(max_attempts=5, max_lost=3)
    d = decide(make_run("lost", "retryable", "lost", "lost"), opts, R.LOST, NOW)
    assert d.to == S.FAILED
    assert d.reason == "lost"
    assert TaskOptions().max_lost == 5


def test_suspended_and_lost_do_not_count_toward_max_attempts() -> None:
    opts = TaskOptions(max_attempts=2, max_lost=10)
    run = make_run("suspended", "lost", "suspended", "lost", "retryable")
    assert counted_attempts(run) == 1
    assert lost_attempts(run) == 2
    assert decide(run, opts, R.RETRYABLE, NOW).to == S.RETRY_WAIT
    run = make_run("suspended", "lost", "retryable", "suspended", "retryable")
    assert counted_attempts(run) == 2
    assert decide(run, opts, R.RETRYABLE, NOW).to == S.FAILED


def test_open_attempt_is_not_counted() -> None:
    assert counted_attempts(make_run("retryable", None)) == 1
    assert lost_attempts(make_run("lost", None)) == 1


# -- decide over whole histories ----------------------------------------------------------
RESULTS = [R.SUCCESS, R.RETRYABLE, R.TERMINAL, R.TIMEOUT, R.SUSPENDED, R.LOST]


@settings(max_examples=400)
@given(
    max_attempts=st.integers(1, 6),
    max_lost=st.integers(1, 6),
    results=st.lists(st.sampled_from(RESULTS), min_size=1, max_size=40),
)
def test_history_never_exceeds_max_attempts_or_max_lost(
    max_attempts: int, max_lost: int, results: list[ms.AttemptResult]
) -> None:
    """Drive a run attempt by attempt; a suspended run is resumed at once."""
    opts = TaskOptions(max_attempts=max_attempts, max_lost=max_lost, backoff=Backoff.fixed(1))
    run = make_run()
    final = None
    for res in results:
        run.attempts.append(
            Attempt(
                attempt_id=f"a{len(run.attempts)}",
                number=len(run.attempts) + 1,
                started_at=NOW,
                result=res.value,
                finished_at=NOW,
            )
        )
        assert counted_attempts(run) <= max_attempts
        assert lost_attempts(run) <= max_lost
        d = decide(run, opts, res, NOW)
        if res == R.SUCCESS:
            assert d.to == S.COMPLETED
        elif res == R.TERMINAL:
            assert d.to == S.FAILED
        elif res == R.SUSPENDED:
            assert d.to == S.SUSPENDED
        elif res == R.LOST:
            assert (d.to == S.FAILED) is (lost_attempts(run) == max_lost)
            assert d.reason == "lost"
        else:
            assert (d.to == S.FAILED) is (counted_attempts(run) == max_attempts)
        assert d.to in (S.COMPLETED, S.FAILED, S.SUSPENDED, S.RETRY_WAIT)
        assert (d.to == S.RETRY_WAIT) is (d.due_at is not None)
        if d.to in (S.COMPLETED, S.FAILED):
            final = d.to
            break
    if final is None:
        # still alive: it has a counted attempt and a lost attempt left
        assert counted_attempts(run) < max_attempts
        assert lost_attempts(run) < max_lost


def _close_one(run: Run, result: str) -> None:
    """Append one more finished attempt with ``result``."""
    n = len(run.attempts)
    run.attempts.append(
        Attempt(attempt_id=f"a{n}", number=n + 1, started_at=NOW, result=result, finished_at=NOW)
    )


@given(max_attempts=st.integers(1, 10))
def test_always_retryable_makes_exactly_max_attempts(max_attempts: int) -> None:
    opts = TaskOptions(max_attempts=max_attempts)
    run = make_run()
    while True:
        _close_one(run, "retryable")
        if decide(run, opts, R.RETRYABLE, NOW).to == S.FAILED:
            break
        assert len(run.attempts) < 1000
    assert len(run.attempts) == max_attempts


@given(max_lost=st.integers(1, 10), max_attempts=st.integers(1, 3))
def test_a_crashing_handler_stops_after_max_lost(max_lost: int, max_attempts: int) -> None:
    opts = TaskOptions(max_attempts=max_attempts, max_lost=max_lost)
    run = make_run()
    while True:
        _close_one(run, "lost")
        d = decide(run, opts, R.LOST, NOW)
        if d.to == S.FAILED:
            assert d.reason == "lost"
            break
        assert len(run.attempts) < 1000
    assert len(run.attempts) == max_lost
