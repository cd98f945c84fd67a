"""What an attempt's end means (docs/api.md, "Outcomes"):
``core.outcomes.outcome_of`` for exceptions, ``outcome_of_return`` for return values."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import mainspring as ms
from mainspring.core.outcomes import outcome_of, outcome_of_return

R = ms.AttemptResult


def raised(exc: BaseException) -> BaseException:
    """``exc`` as a handler would hand it over: raised, with a traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_retry_is_retryable_with_its_delay() -> None:
    o = outcome_of(raised(ms.Retry(delay=timedelta(minutes=2), reason="rate limited")))
    assert o.result == R.RETRYABLE
    assert o.retry_delay == 120.0
    assert o.error == "Retry: rate limited"
    assert o.traceback is None and o.output is None


def test_retry_without_a_delay_leaves_it_to_the_backoff() -> None:
    o = outcome_of(raised(ms.Retry()))
    assert (o.result, o.retry_delay, o.error) == (R.RETRYABLE, None, "Retry: retry requested")


def test_fail_is_terminal() -> None:
    o = outcome_of(raised(ms.Fail("the address does not exist")))
    assert (o.result, o.error) == (R.TERMINAL, "Fail: the address does not exist")
    assert o.retry_delay is None and o.traceback is None
    assert o.retry_class == "do_not_retry"


def test_fail_keeps_its_meaning_whatever_retry_on_says() -> None:
    """(it was recorded terminal with ``safe_retry``, a class that retries)"""
    o = outcome_of(raised(ms.Fail("no")), retry_on=(ms.Fail,))
    assert (o.result, o.retry_class) == (R.TERMINAL, "do_not_retry")


def test_suspend_is_suspended() -> None:
    o = outcome_of(raised(ms.Suspend("waiting for approval")))
    assert (o.result, o.error) == (R.SUSPENDED, "Suspend: waiting for approval")


@pytest.mark.parametrize(
    "exc", [ValueError("boom"), KeyError("k"), ms.MainspringError("inner"), KeyboardInterrupt()]
)
def test_any_other_exception_is_retryable_with_its_type_message_and_traceback(
    exc: BaseException,
) -> None:
    o = outcome_of(raised(exc))
    assert o.result == R.RETRYABLE
    assert o.error == f"{type(exc).__name__}: {exc}"
    assert o.retry_delay is None
    assert o.traceback is not None
    assert o.traceback.startswith("Traceback") and type(exc).__name__ in o.traceback
    assert "raised" in o.traceback  # the frame that raised it


def test_a_bad_retry_delay_is_the_handlers_own_error() -> None:
    # ms.Retry checks its delay when it is made: the handler raises InvalidSchedule instead
    with pytest.raises(ms.InvalidSchedule) as caught:
        ms.Retry(delay=-1)
    o = outcome_of(caught.value)
    assert o.result == R.RETRYABLE
    assert o.error is not None and o.error.startswith("InvalidSchedule:")


def test_subclasses_keep_their_meaning() -> None:
    class Throttled(ms.Retry):
        pass

    assert outcome_of(raised(Throttled(delay=5))).result == R.RETRYABLE
    assert outcome_of(raised(Throttled(delay=5))).retry_delay == 5.0


def test_a_return_value_is_success_with_the_value_as_plain_data() -> None:
    o = outcome_of_return({"n": 1, "xs": (1, 2)}, "t")
    assert (o.result, o.output, o.error, o.failure_class) == (
        R.SUCCESS,
        {"n": 1, "xs": [1, 2]},
        None,
        None,
    )
    assert outcome_of_return(None, "t").result == R.SUCCESS


def test_an_unencodable_return_value_is_terminal() -> None:
    o = outcome_of_return(object(), "billing.charge")
    assert o.result == R.TERMINAL
    assert o.error is not None and o.error.startswith("SerializationError:")
    assert "billing.charge" in o.error
    assert o.output is None


def test_what_msgspec_encodes_is_stored_as_json_would_read_it() -> None:
    when = datetime(2027, 1, 1)
    assert outcome_of_return(when, "t").output == "2027-01-01T00:00:00"
