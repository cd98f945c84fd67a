"""What an attempt's end means: the exceptions a handler raises to choose its result, and
``outcome_of`` / ``outcome_of_return``, the one place that maps how a handler ended (an
exception, or a return value) to an ``AttemptResult`` (docs/api.md,
"Outcomes"). Pure: the worker calls these and reports what they decide."""

from __future__ import annotations

import traceback as tb
from datetime import timedelta
from typing import Any, NamedTuple

from .clock import seconds
from .codec import to_plain
from .errors import MainspringError
from .states import AttemptResult


class Retry(Exception):
    """End this attempt as ``retryable``; retry after ``delay`` seconds (default: backoff)."""

    def __init__(self, delay: float | timedelta | None = None, reason: str | None = None) -> None:
        super().__init__(reason or "retry requested")
        # checked here, so that a bad delay fails in the handler (as an ordinary error,
        # hence retryable, with this message) and never reaches the worker's transaction
        self._delay = seconds(delay, "ms.Retry(delay=...)")
        self.reason = reason

    @property
    def delay(self) -> float | None:
        """Seconds until the retry (None: the task's backoff); checked, read-only."""
        return self._delay


class Fail(Exception):
    """End this attempt as ``terminal``: the run fails now, whatever attempts are left."""

    def __init__(self, reason: str = "failed") -> None:
        super().__init__(reason)
        self.reason = reason


class Suspend(Exception):
    """End this attempt as ``suspended``: the run waits until resumed (not counted)."""

    def __init__(self, reason: str = "suspended") -> None:
        super().__init__(reason)
        self.reason = reason


class Diverged(Suspend):
    """A workflow's replay diverged from its history (``ms.NonDeterminism`` was raised in
    it): the attempt ends ``suspended`` and the run says reason ``nondeterminism``."""

    run_reason = "nondeterminism"


class Recorded(BaseException):
    """Unwinds a workflow's code when its attempt's end is already recorded (it suspended
    itself to sleep or wait) or can no longer be (its lease was lost): the worker has
    nothing to report. A BaseException, so that ``except Exception`` in a workflow does
    not stop it."""


class Outcome(NamedTuple):
    """How an attempt ended, as the worker reports it to the engine (a tuple: one is made
    per attempt, on the hot path)."""

    result: AttemptResult
    error: str | None = None  # "<type>: <message>", the text AttemptInfo.error shows
    retry_delay: float | None = None  # ms.Retry(delay=...): overrides the backoff
    traceback: str | None = None  # an unexpected exception's, for attempt.finished's data
    output: Any = None  # a success's return value, as plain (JSON) data
    reason: str | None = None  # a suspended run's reason, when not "suspended"


def outcome_of(exc: BaseException) -> Outcome:
    """The outcome of an attempt whose handler raised ``exc``.

    ``ms.Retry`` is retryable (after its delay, if it gave one), ``ms.Fail`` terminal,
    ``ms.Suspend`` suspended; any other exception is retryable, with its traceback."""
    if isinstance(exc, Retry):
        return Outcome(
            AttemptResult.RETRYABLE,
            error=f"Retry: {exc.reason or 'retry requested'}",
            retry_delay=exc.delay,  # (checked when the Retry was made)
        )
    if isinstance(exc, Fail):
        return Outcome(AttemptResult.TERMINAL, error=f"Fail: {exc.reason}")
    if isinstance(exc, Suspend):
        reason = getattr(exc, "run_reason", None)
        return Outcome(AttemptResult.SUSPENDED, error=f"Suspend: {exc.reason}", reason=reason)
    return Outcome(
        AttemptResult.RETRYABLE,
        error=f"{type(exc).__name__}: {exc}",
        traceback="".join(tb.format_exception(exc)),
    )


def outcome_of_return(value: Any, task_name: str) -> Outcome:
    """The outcome of an attempt whose handler returned ``value``: success with the value
    as plain data, or terminal when it cannot be stored (``SerializationError``: trying
    again would return the same kind of value)."""
    try:
        output = to_plain(value, f"the return value of {task_name}")
    except MainspringError as exc:
        return Outcome(AttemptResult.TERMINAL, error=f"SerializationError: {exc}")
    return Outcome(AttemptResult.SUCCESS, output=output)
