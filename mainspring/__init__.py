"""mainspring: a durable action engine for Python.

Tasks derive runs; runs have attempts; every durable change is an event in an
append-only log, written in the same transaction as the state it changes.
See the README for a tour and docs/ for the architecture and the event catalogue.
"""

from . import testing
from ._messages import Message, Receipt
from .app import (
    App,
    AttemptInfo,
    Explanation,
    LogEvent,
    QueueInfo,
    Reason,
    RunHandle,
    RunInfo,
    StepInfo,
    Submitter,
    TaskFunction,
    TaskHandle,
    TaskInfo,
    VerifyReport,
    WorkerInfo,
)
from .bus import ENVELOPE_SCHEMA, Backpressure, Bus, BusError, Envelope, correlation_id
from .core.errors import (
    IdempotencyConflict,
    InvalidArgument,
    InvalidSchedule,
    InvalidTransition,
    LogCompacted,
    MainspringError,
    NoContext,
    NonDeterminism,
    RunCanceled,
    RunFailed,
    SerializationError,
    StoreError,
    UnknownExecution,
    UnknownRun,
    UnknownTask,
)
from .core.failures import (
    Classification,
    FailureClass,
    PreconditionFailed,
    RetryClass,
    classify,
    default_retry,
    is_permanent,
)
from .core.model import Backoff, RateLimit
from .core.outcomes import Fail, Retry, Suspend
from .core.states import AttemptResult, RunState
from .worker import AttemptDone, Context, context
from .workflow import (
    StepFunction,
    gather,
    patched,
    sleep,
    sleep_async,
    sleep_until,
    step,
    wait_for,
    wait_for_async,
)

__version__ = "0.1.0"

__all__ = [
    "ENVELOPE_SCHEMA",
    "App",
    "AttemptDone",
    "AttemptInfo",
    "AttemptResult",
    "Backoff",
    "Backpressure",
    "Bus",
    "BusError",
    "Classification",
    "Context",
    "Envelope",
    "Explanation",
    "Fail",
    "FailureClass",
    "IdempotencyConflict",
    "InvalidArgument",
    "InvalidSchedule",
    "InvalidTransition",
    "LogCompacted",
    "LogEvent",
    "MainspringError",
    "Message",
    "NoContext",
    "NonDeterminism",
    "PreconditionFailed",
    "QueueInfo",
    "RateLimit",
    "Reason",
    "Receipt",
    "Retry",
    "RetryClass",
    "RunCanceled",
    "RunFailed",
    "RunHandle",
    "RunInfo",
    "RunState",
    "SerializationError",
    "StepFunction",
    "StepInfo",
    "StoreError",
    "Submitter",
    "Suspend",
    "TaskFunction",
    "TaskHandle",
    "TaskInfo",
    "UnknownExecution",
    "UnknownRun",
    "UnknownTask",
    "VerifyReport",
    "WorkerInfo",
    "__version__",
    "classify",
    "context",
    "correlation_id",
    "default_retry",
    "gather",
    "is_permanent",
    "patched",
    "sleep",
    "sleep_async",
    "sleep_until",
    "step",
    "testing",
    "wait_for",
    "wait_for_async",
]
