"""The log event catalogue.

Every durable change is one of these events. The reducer (``reducer.py``) is the single
definition of what each one means. ``docs/events.md`` describes their data.
"""

from __future__ import annotations

from typing import Any

from .ids import uuid7
from .model import Event, Run

TASK_DEFINED = "task.defined"
TASK_CREATED = "task.created"
TASK_CANCELED = "task.canceled"
RUN_CREATED = "run.created"
RUN_STATE_CHANGED = "run.state_changed"
ATTEMPT_STARTED = "attempt.started"
ATTEMPT_FINISHED = "attempt.finished"
LEASE_ACQUIRED = "lease.acquired"
LEASE_RENEWED = "lease.renewed"
LEASE_EXPIRED = "lease.expired"
LEASE_RELEASED = "lease.released"
ENGINE_PAUSED = "engine.paused"
ENGINE_RESUMED = "engine.resumed"
WORKER_REGISTERED = "worker.registered"
WORKER_HEARTBEAT = "worker.heartbeat"
WORKER_LEFT = "worker.left"
WORKER_EXPIRED = "worker.expired"


def event(type: str, at: float, **fields: Any) -> Event:
    return Event(type=type, at=at, event_id=uuid7(), **fields)


def run_event(type: str, run: Run, at: float, attempt_id: str | None = None, **data: Any) -> Event:
    """An event about ``run``; it carries the run's execution and correlation ids."""
    return Event(
        type=type,
        at=at,
        event_id=uuid7(),
        task_id=run.task_id,
        run_id=run.run_id,
        attempt_id=attempt_id,
        correlation_id=run.correlation_id,
        execution_id=run.execution_id,
        data=data,
    )


def state_changed(run: Run, to: str, at: float, reason: str, **extra: Any) -> Event:
    return run_event(
        RUN_STATE_CHANGED, run, at, **{"from": run.state, "to": to, "reason": reason}, **extra
    )
