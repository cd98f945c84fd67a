"""The service's error shape, ``{"error": {"code", "message"}}``, and the one place where
mainspring's errors and the framework's become HTTP statuses (CONTRACT.md section 11)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from ..bus import Backpressure, BusError
from ..core.errors import (
    IdempotencyConflict,
    InvalidArgument,
    InvalidTransition,
    LogCompacted,
    MainspringError,
    SerializationError,
    StoreError,
    UnknownExecution,
    UnknownRun,
    UnknownTask,
)
from ..core.failures import PreconditionFailed

log = logging.getLogger("mainspring.service")


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    """What went wrong: a stable code and a sentence for people."""

    code: str
    message: str


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every error response's body."""

    error: ErrorDetail


class ApiError(Exception):
    """An error the service answers with ``status`` and the error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


#: mainspring's errors, most specific first: (type, status, code)
MAPPING: tuple[tuple[type[BaseException], int, str], ...] = (
    (UnknownRun, 404, "unknown_run"),
    (UnknownTask, 404, "unknown_task"),
    (UnknownExecution, 404, "unknown_execution"),
    (LogCompacted, 409, "log_compacted"),
    (IdempotencyConflict, 409, "idempotency_conflict"),
    (InvalidTransition, 409, "invalid_transition"),
    (PreconditionFailed, 409, "precondition_failed"),
    (Backpressure, 413, "payload_too_large"),
    (BusError, 400, "bad_request"),
    (SerializationError, 400, "serialization_error"),
    (InvalidArgument, 400, "invalid_argument"),
    (StoreError, 503, "store_unavailable"),
)

#: the code of a framework error by its status
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def error_body(code: str, message: str) -> bytes:
    """The JSON of an error body."""
    return msgspec.json.encode(ErrorBody(error=ErrorDetail(code=code, message=message)))


def error_response(status: int, code: str, message: str) -> Response[bytes]:
    """A response in the error shape."""
    return Response(
        content=error_body(code, message), status_code=status, media_type="application/json"
    )


def classify(exc: BaseException) -> tuple[int, str, str]:
    """``(status, code, message)`` for any exception a request raised."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message
    for kind, status, code in MAPPING:
        if isinstance(exc, kind):
            return status, code, str(exc)
    if isinstance(exc, MainspringError):
        return 500, "internal_error", str(exc)
    if isinstance(exc, RecursionError) and "deserializ" in str(exc):  # (msgspec's words)
        return 400, "bad_request", "the JSON body is nested too deeply to read"
    if isinstance(exc, HTTPException):
        status = exc.status_code
        message = str(exc.detail)
        if isinstance(exc, ValidationException) and exc.extra:
            message = f"{message}: {_details(exc.extra)}"
        if status == 413:
            message = f"the request body is too large ({message})"
        return status, CODES.get(status, "http_error"), message
    return 500, "internal_error", "internal error (see the service's log)"


def _details(extra: Any) -> str:
    if isinstance(extra, list):
        parts = []
        for item in extra:
            if isinstance(item, dict):
                where = item.get("key") or item.get("source") or ""
                parts.append(f"{where}: {item.get('message', '')}".strip(": "))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(extra)


def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """The exception handler of every route: the error shape, and a log line for a 500."""
    status, code, message = classify(exc)
    if status >= 500 and code == "internal_error":
        log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(status, code, message)
