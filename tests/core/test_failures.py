"""The failure taxonomy's truth table: every failure class's default retry class, how every
kind of exception is classified, and what each classification makes of an attempt."""

from __future__ import annotations

import pytest

import mainspring as ms
from mainspring.core.outcomes import outcome_of

F, RC, R = ms.FailureClass, ms.RetryClass, ms.AttemptResult

DEFAULTS = {
    F.TRANSPORT_ERROR: RC.SAFE_RETRY,
    F.TIMEOUT: RC.SAFE_RETRY,
    F.STATE_CONFLICT: RC.RETRY_AFTER_REREAD,
    F.INTERNAL_ERROR: RC.RETRY_AFTER_REREAD,
    F.ADAPTER_UNAVAILABLE: RC.RETRY_AFTER_RECONFIGURE,
    F.PLACEMENT_UNAVAILABLE: RC.RETRY_AFTER_RECONFIGURE,
    F.IDENTITY_UNAVAILABLE: RC.RETRY_AFTER_RECONFIGURE,
    F.OPERATOR_REQUIRED: RC.RETRY_AFTER_OPERATOR,
    F.CAPABILITY_UNSUPPORTED: RC.DO_NOT_RETRY,
    F.CAPABILITY_DEGRADED: RC.DO_NOT_RETRY,
    F.PAYLOAD_TOO_LARGE: RC.DO_NOT_RETRY,
    F.PAYLOAD_REJECTED: RC.DO_NOT_RETRY,
    F.INVALID_REQUEST: RC.DO_NOT_RETRY,
}

#: what an attempt ends as, for each retry class
RESULT_OF = {
    RC.SAFE_RETRY: R.RETRYABLE,
    RC.RETRY_AFTER_REREAD: R.RETRYABLE,
    RC.RETRY_AFTER_RECONFIGURE: R.SUSPENDED,
    RC.RETRY_AFTER_OPERATOR: R.SUSPENDED,
    RC.DO_NOT_RETRY: R.TERMINAL,
}


def test_there_are_13_failure_classes_and_5_retry_classes() -> None:
    assert len(F) == 13 and len(RC) == 5
    assert set(DEFAULTS) == set(F)


@pytest.mark.parametrize("fc", list(F))
def test_default_retry_of_every_failure_class(fc: ms.FailureClass) -> None:
    assert ms.default_retry(fc) is DEFAULTS[fc]
    assert ms.default_retry(fc.value) is DEFAULTS[fc]


class Classified(Exception):
    def __init__(self, fc: str, rc: str | None = None) -> None:
        super().__init__(fc)
        self.failure_class = fc
        if rc is not None:
            self.retry_class = rc


@pytest.mark.parametrize("fc", list(F))
def test_an_exception_with_a_failure_class_is_taken_at_its_word(fc: ms.FailureClass) -> None:
    c = ms.classify(Classified(fc.value))
    assert c == (fc, DEFAULTS[fc], False)
    assert outcome_of(Classified(fc.value)).result is RESULT_OF[DEFAULTS[fc]]


@pytest.mark.parametrize("rc", list(RC))
def test_an_exceptions_own_retry_class_wins(rc: ms.RetryClass) -> None:
    c = ms.classify(Classified("internal_error", rc.value))
    assert (c.failure_class, c.retry_class) == (F.INTERNAL_ERROR, rc)
    o = outcome_of(Classified("internal_error", rc.value))
    assert o.result is RESULT_OF[rc]
    assert (o.failure_class, o.retry_class) == ("internal_error", rc.value)
    if rc in (RC.RETRY_AFTER_RECONFIGURE, RC.RETRY_AFTER_OPERATOR):
        assert o.reason == rc.value  # the suspended run's reason names the class


@pytest.mark.parametrize(
    ("exc", "fc", "rc", "permanent", "result"),
    [
        (ms.PreconditionFailed("receipt-exists"), F.STATE_CONFLICT, RC.DO_NOT_RETRY, True, R.TERMINAL),
        (ms.PreconditionFailed("origin-committed"), F.STATE_CONFLICT, RC.DO_NOT_RETRY, True, R.TERMINAL),
        (TimeoutError("slow"), F.TIMEOUT, RC.SAFE_RETRY, False, R.RETRYABLE),
        (ConnectionResetError("reset"), F.TRANSPORT_ERROR, RC.SAFE_RETRY, False, R.RETRYABLE),
        (ValueError("bad"), F.INTERNAL_ERROR, RC.RETRY_AFTER_REREAD, False, R.RETRYABLE),
        (KeyError("k"), F.INTERNAL_ERROR, RC.RETRY_AFTER_REREAD, False, R.RETRYABLE),
        (Classified("not-a-class"), F.INTERNAL_ERROR, RC.RETRY_AFTER_REREAD, False, R.RETRYABLE),
        (ms.Fail("no"), F.INTERNAL_ERROR, RC.DO_NOT_RETRY, False, R.TERMINAL),
        (ms.Fail("no", failure_class="payload_rejected"), F.PAYLOAD_REJECTED, RC.DO_NOT_RETRY, False, R.TERMINAL),
    ],
)  # fmt: skip
def test_every_kind_of_exception(
    exc: BaseException,
    fc: ms.FailureClass,
    rc: ms.RetryClass,
    permanent: bool,
    result: ms.AttemptResult,
) -> None:
    assert ms.classify(exc) == (fc, rc, permanent)
    assert ms.is_permanent(exc) is permanent
    o = outcome_of(exc)
    assert (o.result, o.failure_class, o.retry_class) == (result, fc.value, rc.value)


def test_precondition_failed_names_its_precondition() -> None:
    exc = ms.PreconditionFailed("receipt-exists")
    assert exc.precondition == "receipt-exists" and isinstance(exc, ms.MainspringError)
    assert not ms.is_permanent(ValueError("x"))


def test_retry_on_and_never_retry_override_the_classifier() -> None:
    assert outcome_of(ValueError("x"), never_retry=(ValueError,)).result is R.TERMINAL
    o = outcome_of(Classified("invalid_request"), retry_on=(Classified,))
    assert (o.result, o.retry_class) == (R.RETRYABLE, "safe_retry")
    # a permanent rejection stays permanent
    assert outcome_of(ms.PreconditionFailed("receipt-exists"), retry_on=(Exception,)).result is (
        R.TERMINAL
    )


def test_an_unknown_failure_class_is_refused() -> None:
    with pytest.raises(ValueError):
        ms.default_retry("gremlins")
    with pytest.raises(ValueError):
        ms.Fail("x", failure_class="gremlins")


def test_precondition_failed_is_made_again_from_its_args() -> None:
    exc = ms.PreconditionFailed("origin-committed")
    again = ms.PreconditionFailed(*exc.args)
    assert (again.precondition, str(again)) == ("origin-committed", str(exc))


def test_classify_sees_a_retry_as_the_engine_records_it() -> None:
    assert ms.classify(ms.Retry()) == (F.INTERNAL_ERROR, RC.SAFE_RETRY, False)
    o = outcome_of(ms.Retry())
    assert (o.failure_class, o.retry_class) == ("internal_error", "safe_retry")
