"""The failure taxonomy: what kind of failure an exception is, and whether trying again can
help. One classifier (``classify``) decides every retry: the engine's after an attempt,
a workflow step's in place, and the bus's (docs/api.md, "Failure classes")."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from .errors import MainspringError


class FailureClass(StrEnum):
    """What went wrong."""

    ADAPTER_UNAVAILABLE = "adapter_unavailable"
    CAPABILITY_UNSUPPORTED = "capability_unsupported"
    CAPABILITY_DEGRADED = "capability_degraded"
    PLACEMENT_UNAVAILABLE = "placement_unavailable"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    PAYLOAD_REJECTED = "payload_rejected"
    IDENTITY_UNAVAILABLE = "identity_unavailable"
    TRANSPORT_ERROR = "transport_error"
    TIMEOUT = "timeout"
    OPERATOR_REQUIRED = "operator_required"
    STATE_CONFLICT = "state_conflict"
    INVALID_REQUEST = "invalid_request"
    INTERNAL_ERROR = "internal_error"


class RetryClass(StrEnum):
    """What may be done about it."""

    SAFE_RETRY = "safe_retry"
    RETRY_AFTER_REREAD = "retry_after_reread"
    RETRY_AFTER_RECONFIGURE = "retry_after_reconfigure"
    RETRY_AFTER_OPERATOR = "retry_after_operator"
    DO_NOT_RETRY = "do_not_retry"


F, RC = FailureClass, RetryClass

_DEFAULT_RETRY: dict[FailureClass, RetryClass] = {
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

#: Retry classes that try again (with backoff, while attempts are left) ...
RETRYING = frozenset({RC.SAFE_RETRY, RC.RETRY_AFTER_REREAD})
#: ... and those that suspend the run until an operator resumes it.
SUSPENDING = frozenset({RC.RETRY_AFTER_RECONFIGURE, RC.RETRY_AFTER_OPERATOR})


def default_retry(failure_class: FailureClass | str) -> RetryClass:
    """The retry class a failure class implies when nothing says otherwise."""
    return _DEFAULT_RETRY[FailureClass(failure_class)]


class PreconditionFailed(MainspringError):
    """A permanent rejection: what the call assumed no longer holds, and never will again
    (``precondition``: ``"origin-committed"`` or ``"receipt-exists"``). Never retried."""

    failure_class = FailureClass.STATE_CONFLICT
    retry_class = RetryClass.DO_NOT_RETRY

    def __init__(self, precondition: str, message: str | None = None) -> None:
        # (the arguments as given, so that it is made again the same from its args)
        super().__init__(precondition, *(() if message is None else (message,)))
        self.precondition = precondition
        self.message = (
            f"{precondition}: {message}" if message else (f"precondition failed: {precondition}")
        )

    def __str__(self) -> str:
        return self.message


def is_permanent(exc: BaseException) -> bool:
    """True for a permanent rejection (``ms.PreconditionFailed``), and only for it."""
    return isinstance(exc, PreconditionFailed)


class Classification(NamedTuple):
    """How ``classify`` sees one exception."""

    failure_class: FailureClass
    retry_class: RetryClass
    permanent: bool


def classify(exc: BaseException) -> Classification:
    """The failure and retry class of ``exc``.

    A permanent rejection is ``state_conflict`` / ``do_not_retry``; an exception with a
    ``failure_class`` attribute (and optionally ``retry_class``) is taken at its word;
    ``TimeoutError`` is ``timeout``, ``ConnectionError`` ``transport_error``, anything else
    ``internal_error``, each with its default retry class."""
    if is_permanent(exc):
        return Classification(F.STATE_CONFLICT, RC.DO_NOT_RETRY, True)
    fc = _class_of(getattr(exc, "failure_class", None), FailureClass)
    if fc is not None:
        rc = _class_of(getattr(exc, "retry_class", None), RetryClass)
        return Classification(fc, rc if rc is not None else default_retry(fc), False)
    if isinstance(exc, TimeoutError):
        fc = F.TIMEOUT
    elif isinstance(exc, ConnectionError):
        fc = F.TRANSPORT_ERROR
    else:
        fc = F.INTERNAL_ERROR
    return Classification(fc, default_retry(fc), False)


def _class_of(value: Any, kind: type[FailureClass] | type[RetryClass]) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        return None  # not one of ours: the exception's type decides
