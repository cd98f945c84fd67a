"""The in-process bus (CONTRACT.md section 10).

Commands with one handler each (``Bus.command`` / ``Bus.request``), events fanned out to
subscribers in per-topic sequence order (``Bus.on`` / ``Bus.publish``), correlation ids
carried through handlers by context variables, and one ``Envelope`` type (with its JSON
Schema) for all three kinds of message. ``app.bus`` is one of these; so is
``ms.Bus()`` on its own. The engine feeds its committed log events in through
``Bus.publish_log``.
"""

from ._bus import Bus, LogEventLike, Subscriber
from ._context import correlation_id, correlation_scope
from ._envelope import ENVELOPE_SCHEMA, SCHEMA_PATH, Envelope, ErrorInfo, validate_envelope
from ._errors import (
    BACKPRESSURE,
    ERROR_CODES,
    HANDLER_ERROR,
    METHOD_NOT_FOUND,
    TIMEOUT,
    VALIDATION_ERROR,
    Backpressure,
    BusConfigError,
    BusError,
    ErrorCode,
)

__all__ = [
    "BACKPRESSURE",
    "ENVELOPE_SCHEMA",
    "ERROR_CODES",
    "HANDLER_ERROR",
    "METHOD_NOT_FOUND",
    "SCHEMA_PATH",
    "TIMEOUT",
    "VALIDATION_ERROR",
    "Backpressure",
    "Bus",
    "BusConfigError",
    "BusError",
    "Envelope",
    "ErrorCode",
    "ErrorInfo",
    "LogEventLike",
    "Subscriber",
    "correlation_id",
    "correlation_scope",
    "validate_envelope",
]
