"""The retry decision and backoff: what happens to a run after one of its attempts ends."""

from __future__ import annotations

import zlib
from typing import NamedTuple

from .model import Backoff, Run, TaskOptions
from .states import UNCOUNTED_RESULTS, AttemptResult, RunState


def backoff_delay(backoff: Backoff, n: int, *, salt: str = "") -> float:
    """Delay before retry number ``n`` (1-based: the wait after the n-th counted attempt).

    Exponential: ``min(initial * factor**(n-1), maximum)``; with jitter the delay is drawn
    from [delay/2, delay], deterministically from ``salt`` and ``n`` so that the decision
    stays pure and replayable.
    """
    if n < 1:
        n = 1
    if backoff.kind == "fixed":
        return backoff.initial
    try:
        raw = backoff.initial * (backoff.factor ** (n - 1))
    except OverflowError:
        raw = backoff.maximum
    delay = min(raw, backoff.maximum)
    if backoff.jitter and delay > 0:
        frac = (zlib.crc32(f"{salt}:{n}".encode()) & 0xFFFF) / 0xFFFF
        delay = delay / 2 + frac * delay / 2
    return delay


class Decision(NamedTuple):
    to: RunState
    reason: str
    due_at: float | None  # for retry_wait: when it becomes ready again


def counted_attempts(run: Run) -> int:
    return sum(
        1 for a in run.attempts if a.result is not None and a.result not in UNCOUNTED_RESULTS
    )


def lost_attempts(run: Run) -> int:
    return sum(1 for a in run.attempts if a.result == AttemptResult.LOST)


def decide(
    run: Run,
    options: TaskOptions,
    result: AttemptResult,
    now: float,
    *,
    retry_delay: float | None = None,
) -> Decision:
    """Where a running run goes once its open attempt closed with ``result``.

    ``run.attempts`` must already include the closed attempt. ``suspended`` and ``lost``
    attempts do not count toward ``max_attempts``; ``max_lost`` lost attempts fail the run
    with reason ``lost``.
    """
    if result == AttemptResult.SUCCESS:
        return Decision(RunState.COMPLETED, "success", None)
    if result == AttemptResult.TERMINAL:
        return Decision(RunState.FAILED, "terminal", None)
    if result == AttemptResult.SUSPENDED:
        return Decision(RunState.SUSPENDED, "suspended", None)
    if result == AttemptResult.LOST:
        if lost_attempts(run) >= options.max_lost:
            return Decision(RunState.FAILED, "lost", None)
        delay = 0.0 if retry_delay is None else retry_delay
        return Decision(RunState.RETRY_WAIT, "lost", now + delay)
    # retryable or timeout
    n = counted_attempts(run)
    if n >= options.max_attempts:
        return Decision(
            RunState.FAILED, "max_attempts" if options.max_attempts > 1 else result.value, None
        )
    delay = (
        retry_delay
        if retry_delay is not None
        else backoff_delay(options.backoff, n, salt=run.run_id)
    )
    return Decision(RunState.RETRY_WAIT, result.value, now + delay)
