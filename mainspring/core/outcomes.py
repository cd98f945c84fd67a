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
from .failures import SUSPENDING, FailureClass, RetryClass, classify, default_retry
from .states import AttemptResult


class Retry(Exception):
    """End this attempt as ``retryable``; retry after ``delay`` seconds (default: backoff)."""

    failure_class = FailureClass.INTERNAL_ERROR  # (how ``ms.classify`` sees it too)
    retry_class = RetryClass.SAFE_RETRY

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
    """End this attempt as ``terminal``: the run fails now, whatever attempts are left
    (retry class ``do_not_retry``; ``failure_class`` says what kind of failure it is)."""

    retry_class = RetryClass.DO_NOT_RETRY

    def __init__(
        self, reason: str = "failed", failure_class: FailureClass | str = "internal_error"
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure_class = FailureClass(failure_class)


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
    failure_class: str | None = None  # a failure's (core/failures.py)
    retry_class: str | None = None


def outcome_of(
    exc: BaseException,
    retry_on: tuple[type[BaseException], ...] = (),
    never_retry: tuple[type[BaseException], ...] = (),
) -> Outcome:
    """The outcome of an attempt whose handler raised ``exc``.

    ``ms.Retry`` is retryable (after its delay, if it gave one), ``ms.Suspend``
    suspended, ``ms.Fail`` terminal (``do_not_retry``), whatever ``retry_on`` and
    ``never_retry`` say; any other exception is classified (``core.failures.classify``, overridden by
    the task's ``retry_on`` / ``never_retry``): a retry class that retries is retryable,
    one that needs a reconfiguration or an operator suspends the run (reason: the class),
    ``do_not_retry`` and a permanent rejection are terminal."""
    if isinstance(exc, Retry):
        return Outcome(
            AttemptResult.RETRYABLE,
            error=f"Retry: {exc.reason or 'retry requested'}",
            retry_delay=exc.delay,  # (checked when the Retry was made)
            failure_class=FailureClass.INTERNAL_ERROR,
            retry_class=RetryClass.SAFE_RETRY,
        )
    if isinstance(exc, Suspend):
        reason = getattr(exc, "run_reason", None)
        kind = "NonDeterminism" if isinstance(exc, Diverged) else "Suspend"
        return Outcome(AttemptResult.SUSPENDED, error=f"{kind}: {exc.reason}", reason=reason)
    fc, rc, permanent = classify(exc)
    if never_retry and isinstance(exc, never_retry):
        rc = RetryClass.DO_NOT_RETRY
    elif retry_on and isinstance(exc, retry_on) and not permanent:
        rc = RetryClass.SAFE_RETRY
    if isinstance(exc, Fail):  # (keeps its meaning whatever retry_on says)
        result, error, trace = AttemptResult.TERMINAL, f"Fail: {exc.reason}", None
        rc = RetryClass.DO_NOT_RETRY
    else:
        error, trace = f"{type(exc).__name__}: {exc}", "".join(tb.format_exception(exc))
        if rc == RetryClass.DO_NOT_RETRY:
            result = AttemptResult.TERMINAL
        elif rc in SUSPENDING:
            return Outcome(
                AttemptResult.SUSPENDED, error, None, trace, None, rc.value, fc.value, rc.value
            )
        else:
            result = AttemptResult.RETRYABLE
    return Outcome(result, error, None, trace, failure_class=fc.value, retry_class=rc.value)


def outcome_of_return(value: Any, task_name: str) -> Outcome:
    """The outcome of an attempt whose handler returned ``value``: success with the value
    as plain data, or terminal when it cannot be stored (``SerializationError``: trying
    again would return the same kind of value)."""
    try:
        output = to_plain(value, f"the return value of {task_name}")
    except MainspringError as exc:
        fc = FailureClass.PAYLOAD_REJECTED  # the store cannot take it: never retried
        return Outcome(
            AttemptResult.TERMINAL,
            error=f"SerializationError: {exc}",
            failure_class=fc.value,
            retry_class=default_retry(fc).value,
        )
    return Outcome(AttemptResult.SUCCESS, output=output)
