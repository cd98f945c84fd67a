"""Errors raised by mainspring. Every message says what was wrong and what to do."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


class MainspringError(Exception):
    """Base class of every error mainspring raises on purpose."""


class StoreError(MainspringError):
    """The store could not be opened or used (not a mainspring store, newer schema, I/O)."""


class SerializationError(MainspringError, TypeError):
    """Arguments, keyword arguments or a return value could not be encoded as JSON."""


class IdempotencyConflict(MainspringError):
    """An idempotency key was reused with different arguments."""


class InvalidTransition(MainspringError):
    """A run was asked to move between two states the transition table does not permit."""

    def __init__(self, message: str, *, from_state: str | None = None, to_state: str | None = None):
        super().__init__(message)
        self.from_state = from_state
        self.to_state = to_state


class InvalidArgument(MainspringError, ValueError):
    """An option or argument is not valid (a submission that does not bind to the handler's
    parameters included). Nothing was written."""


class InvalidSchedule(InvalidArgument):
    """A schedule, delay, cron expression or other time option is not valid."""


class UnknownRun(MainspringError, LookupError):
    """No run with the given id exists in this store."""


class UnknownTask(MainspringError, LookupError):
    """No task with the given id exists in this store."""


class RunFailed(MainspringError):
    """The run ended in the `failed` state; `.run` holds its RunInfo when known."""

    def __init__(self, message: str, *, run: object = None):
        super().__init__(message)
        self.run = run


class RunCanceled(MainspringError):
    """The run ended in the `canceled` state."""

    def __init__(self, message: str, *, run: object = None):
        super().__init__(message)
        self.run = run


class NoContext(MainspringError, LookupError):
    """`ms.context()` was called outside a running handler."""


class ReplayError(MainspringError):
    """An event could not be applied by the reducer (the log and the state disagree)."""


class NonDeterminism(MainspringError):
    """A workflow's replay called another step than the one its history recorded at that
    number: the code changed under a running workflow. The run is suspended (reason
    ``nondeterminism``); deploy the code it ran with (or guard the change with
    ``ms.patched``) and resume it."""


class UnknownExecution(MainspringError, LookupError):
    """No workflow execution (or run) has this id in the store."""


class LogCompacted(MainspringError, LookupError):
    """The events asked for were removed from the log by compaction (``app.compact``).

    ``first_seq`` is the seq of the first event still in the log (or of the next one to be
    written): read from ``since=first_seq - 1`` on, or from an export taken before."""

    def __init__(self, message: str, *, first_seq: int):
        super().__init__(message)
        self.first_seq = first_seq


def refuses_bad_calls(fn: F) -> F:
    """``fn`` with a call whose arguments do not fit its parameters (an unknown keyword,
    one too many) raising InvalidArgument, as every invalid option or argument does,
    rather than Python's TypeError. A TypeError raised inside ``fn`` passes as it is."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TypeError as exc:
            tb = exc.__traceback__
            if tb is not None and tb.tb_next is None and not isinstance(exc, MainspringError):
                raise InvalidArgument(str(exc)) from None  # (raised by the call itself)
            raise

    return call  # type: ignore[return-value]


def refusing_bad_calls(cls: C) -> C:
    """``refuses_bad_calls`` on the public methods ``cls`` defines (and its ``__init__``)."""
    for name, value in list(vars(cls).items()):
        if inspect.isfunction(value) and (name == "__init__" or not name.startswith("_")):
            setattr(cls, name, refuses_bad_calls(value))
    return cls
