"""mainspring: a durable action engine for Python.

Tasks derive runs; runs have attempts; every durable change is an event in an
append-only log, written in the same transaction as the state it changes.
See the README for a tour and docs/ for the architecture and the event catalogue.
"""

from .app import (
    App,
    AttemptInfo,
    LogEvent,
    RunHandle,
    RunInfo,
    TaskFunction,
    TaskHandle,
    VerifyReport,
)
from .core.errors import (
    IdempotencyConflict,
    InvalidSchedule,
    InvalidTransition,
    MainspringError,
    NoContext,
    RunCanceled,
    RunFailed,
    SerializationError,
    StoreError,
    UnknownRun,
)
from .core.model import Backoff
from .core.outcomes import Fail, Retry, Suspend
from .core.states import AttemptResult, RunState
from .worker import Context, context

__version__ = "0.1.0"

__all__ = [
    "App",
    "AttemptInfo",
    "AttemptResult",
    "Backoff",
    "Context",
    "Fail",
    "IdempotencyConflict",
    "InvalidSchedule",
    "InvalidTransition",
    "LogEvent",
    "MainspringError",
    "NoContext",
    "Retry",
    "RunCanceled",
    "RunFailed",
    "RunHandle",
    "RunInfo",
    "RunState",
    "SerializationError",
    "StoreError",
    "Suspend",
    "TaskFunction",
    "TaskHandle",
    "UnknownRun",
    "VerifyReport",
    "__version__",
    "context",
]
