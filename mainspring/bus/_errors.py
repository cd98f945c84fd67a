"""The bus's error codes and exceptions.

Every failure of a bus call is a ``BusError`` whose ``code`` is one of five strings; the
codes map onto the failure taxonomy (core/failures.py) so ``ms.classify`` decides a retry
of a bus failure the way it decides every other one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

from ..core.errors import InvalidArgument, MainspringError
from ..core.failures import FailureClass, RetryClass, classify, default_retry

if TYPE_CHECKING:
    from ._envelope import Envelope

ErrorCode = Literal[
    "VALIDATION_ERROR", "METHOD_NOT_FOUND", "HANDLER_ERROR", "TIMEOUT", "BACKPRESSURE"
]

#: A bad envelope, name, option or payload (not encodable, circular), or a request deeper
#: than ``max_depth``: refused before any handler runs.
VALIDATION_ERROR: Final = "VALIDATION_ERROR"
#: No handler is declared for the method.
METHOD_NOT_FOUND: Final = "METHOD_NOT_FOUND"
#: The handler raised (the exception's type and message are in the error) or returned a
#: value that is not JSON-encodable.
HANDLER_ERROR: Final = "HANDLER_ERROR"
#: The handler did not answer within the request's timeout.
TIMEOUT: Final = "TIMEOUT"
#: A payload's encoded JSON is larger than ``max_payload_bytes`` (exactly the limit passes).
BACKPRESSURE: Final = "BACKPRESSURE"

#: Every code, in the order the contract lists them.
ERROR_CODES: Final[tuple[ErrorCode, ...]] = (
    VALIDATION_ERROR,
    METHOD_NOT_FOUND,
    HANDLER_ERROR,
    TIMEOUT,
    BACKPRESSURE,
)

_FAILURE_CLASS: Final[dict[str, FailureClass]] = {
    VALIDATION_ERROR: FailureClass.INVALID_REQUEST,
    # no handler in this process: the capability is missing, retrying cannot help
    METHOD_NOT_FOUND: FailureClass.CAPABILITY_UNSUPPORTED,
    HANDLER_ERROR: FailureClass.INTERNAL_ERROR,
    TIMEOUT: FailureClass.TIMEOUT,
    BACKPRESSURE: FailureClass.PAYLOAD_TOO_LARGE,
}


class BusError(MainspringError):
    """A bus call failed. ``code`` says how (one of ``ERROR_CODES``), ``message`` says what
    to do, and ``envelope`` holds the error response when one was built (a command that
    reached its handler), else None. A ``HANDLER_ERROR`` has the handler's exception as
    ``__cause__``."""

    def __init__(self, code: ErrorCode, message: str, *, envelope: Envelope | None = None):
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code
        self.message = message
        self.envelope = envelope

    @property
    def failure_class(self) -> FailureClass:
        """How ``ms.classify`` sees this error: by code, or for a ``HANDLER_ERROR`` as the
        handler's own exception would be seen."""
        cause = self.__cause__
        if self.code == HANDLER_ERROR and cause is not None:
            return classify(cause).failure_class
        return _FAILURE_CLASS[self.code]

    @property
    def retry_class(self) -> RetryClass:
        """The retry class that goes with ``failure_class``."""
        cause = self.__cause__
        if self.code == HANDLER_ERROR and cause is not None:
            return classify(cause).retry_class
        return default_retry(_FAILURE_CLASS[self.code])


class Backpressure(BusError):
    """A payload is larger than the limit (``max_payload_bytes`` of encoded JSON; exactly
    the limit passes). Nothing was delivered or written: send less, or raise the limit.

    The bus raises it with code ``BACKPRESSURE``; the durable ``app.publish`` raises it
    too, so one ``except ms.Backpressure`` covers both."""

    def __init__(self, message: str, *, envelope: Envelope | None = None):
        super().__init__(BACKPRESSURE, message, envelope=envelope)


class BusConfigError(BusError, InvalidArgument):
    """A declaration on the bus is not valid: a second handler for a method, a bad method
    name or topic pattern, an async subscriber, a bad option. Code ``VALIDATION_ERROR``;
    also an ``ms.InvalidArgument`` (and so a ``ValueError``)."""

    def __init__(self, message: str):
        super().__init__(VALIDATION_ERROR, message)
