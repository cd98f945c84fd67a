"""Executing one attempt: call its handler (``def`` in a pool thread, ``async def`` on the
worker's event loop) with ``ms.context()`` set, and turn how it ended into the report the
worker hands the engine (``Finished``). What an ending means is decided in core
(``core.outcomes.outcome_of``); this module only calls the handler and fills the report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import MainspringError
from ..core.failures import FailureClass, RetryClass
from ..core.outcomes import Outcome, Recorded, outcome_of, outcome_of_return
from ..core.states import AttemptResult
from ..engine import Finished, Leased
from ..telemetry import span
from .context import Context, reset_current, set_current


@dataclass
class Attempt:
    """An attempt this worker is running: its lease, handler, context and timers."""

    leased: Leased
    fn: Callable[..., Any]
    ctx: Context
    deadline: float | None  # monotonic
    lease_until: float  # monotonic: past it, without a renewal, the lease is not ours
    started: float = field(default_factory=time.monotonic)
    abandoned: bool = False  # timed out or lease lost: its outcome is discarded
    running: bool = False  # its handler holds one of the worker's slots
    future: Any = None  # the asyncio future of an async handler
    retry_on: tuple[type[BaseException], ...] = ()  # the task's overrides of the classifier
    never_retry: tuple[type[BaseException], ...] = ()


def make_context(lz: Leased, heartbeat: Callable[[], None], worker: str) -> Context:
    return Context(
        worker=worker,
        options=lz.options,
        run_id=lz.run_id,
        task_id=lz.task_id,
        task_name=lz.task_name,
        attempt_id=lz.attempt_id,
        attempt=lz.attempt,
        execution_id=lz.execution_id,
        correlation_id=lz.correlation_id,
        idempotency_key=lz.idempotency_key,
        heartbeat=heartbeat,
    )


def report(att: Attempt, outcome: Outcome) -> Finished:
    """The engine's report of ``att`` ending with ``outcome``."""
    lz = att.leased
    return Finished(
        lz.run_id,
        lz.attempt_id,
        outcome.result,
        output=outcome.output,
        error=outcome.error,
        traceback=outcome.traceback,
        retry_delay=outcome.retry_delay,
        options=lz.options,
        snapshot=lz.snapshot,
        fence=lz.fence,
        suspend_reason=outcome.reason,
        failure_class=outcome.failure_class,
        retry_class=outcome.retry_class,
        launches=att.ctx.launches if outcome.result == AttemptResult.SUCCESS else [],
    )


def timed_out(att: Attempt) -> Finished:
    """The report of an attempt that overran its timeout."""
    return report(
        att,
        Outcome(
            AttemptResult.TIMEOUT,
            error=f"TimeoutError: the attempt overran its timeout of {att.leased.timeout} s",
            failure_class=FailureClass.TIMEOUT,
            retry_class=RetryClass.SAFE_RETRY,
        ),
    )


def _attempt_span(lz: Leased) -> AbstractContextManager[Any]:
    """The attempt's OpenTelemetry span (mainspring/telemetry.py); a workflow suspending or
    recording its own end (``Recorded``) is not an error."""
    return span(
        f"attempt {lz.task_name}",
        kind="consumer",
        link_run=lz.run_id,
        ok=(Recorded,),
        run_id=lz.run_id,
        task=lz.task_name,
        correlation_id=lz.correlation_id,
        attempt=lz.attempt,
        execution_id=lz.execution_id,
    )


def call_sync(att: Attempt) -> Finished | None:
    """Run a ``def`` handler to its end (in the calling thread) and report how it ended;
    None when a workflow recorded its attempt's end itself (``Recorded``)."""
    token = set_current(att.ctx)
    try:
        with _attempt_span(att.leased):
            value = att.fn(*att.leased.args, **att.leased.kwargs)
        outcome = outcome_of_return(value, att.leased.task_name)
    except Recorded:
        return None
    except BaseException as exc:
        outcome = outcome_of(exc, att.retry_on, att.never_retry)
    finally:
        reset_current(token)
    return report(att, outcome)


async def call_async(att: Attempt) -> Finished | None:
    """Run an ``async def`` handler to its end and report how it ended; None when the
    worker cancelled it because it abandoned the attempt, or a workflow recorded its
    attempt's end itself (nothing is left to report)."""
    token = set_current(att.ctx)
    try:
        with _attempt_span(att.leased):
            value = await att.fn(*att.leased.args, **att.leased.kwargs)
        outcome = outcome_of_return(value, att.leased.task_name)
    except Recorded:
        return None
    except asyncio.CancelledError:
        if att.abandoned:
            return None
        outcome = outcome_of(MainspringError("the attempt was cancelled"))
    except BaseException as exc:
        outcome = outcome_of(exc, att.retry_on, att.never_retry)
    finally:
        reset_current(token)
    return report(att, outcome)
