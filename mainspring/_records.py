"""The records queries return: runs, attempts, log events, tasks, workers, explanations.

Frozen msgspec Structs with timezone-aware UTC datetimes (the engine keeps Unix seconds),
built from the engine's records by the functions at the end of each block.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from .core.clock import to_datetime
from .core.model import Event, Run, StepRecord, WorkerRecord
from .core.states import AttemptResult, RunState
from .engine import TaskView
from .engine.why import Why


class AttemptInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a run."""

    attempt_id: str
    number: int
    result: AttemptResult | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    failure_class: str | None = None  # a failed attempt's (ms.FailureClass values)
    retry_class: str | None = None


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A run as stored now."""

    run_id: str
    task_id: str
    task_name: str
    state: RunState
    scheduled_at: datetime
    priority: int
    queue: str
    concurrency_key: str | None
    idempotency_key: str | None
    execution_id: str | None
    correlation_id: str | None
    output: Any
    error: str | None
    attempts: list[AttemptInfo]
    rerun_of: str | None = None
    parent_run_id: str | None = None
    caused_by: str | None = None
    failure_class: str | None = None
    retry_class: str | None = None


class LogEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the log."""

    seq: int
    event_id: str
    type: str
    at: datetime
    task_id: str | None
    run_id: str | None
    attempt_id: str | None
    correlation_id: str | None
    execution_id: str | None
    data: dict[str, Any]


class VerifyReport(msgspec.Struct, frozen=True):
    """The result of replaying the log and comparing it with the stored state."""

    ok: bool
    problems: list[str]


class TaskInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A task: durable intent, with its policy and what it derived so far."""

    task_id: str
    name: str
    policy: dict[str, Any]  # "kind" ("once", "repeat", "cron") and that kind's settings
    state: Literal["active", "canceled"]
    created_at: datetime
    next_at: datetime | None  # the next occurrence of a repeat or cron task
    run_counts: dict[str, int]  # runs per state (states without runs left out)
    args: list[Any]
    kwargs: dict[str, Any]
    idempotency_key: str | None
    queue: str


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A live worker, as registered in the store."""

    worker_id: str
    host: str
    pid: int
    queues: list[str] | None  # None: every queue
    tasks: list[str]
    concurrency: int
    started_at: datetime
    last_seen_at: datetime
    running: list[str]  # ids of the runs whose lease it holds


class Reason(msgspec.Struct, frozen=True, kw_only=True):
    """One reason of ``app.why``: a code, a sentence, and data."""

    code: str
    text: str
    data: dict[str, Any]


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    """Why a run is where it is (``app.why``): its state and the reasons, most decisive first."""

    run_id: str
    state: RunState
    reasons: list[Reason]


_POLICY_FIELDS = {
    "once": ("kind", "start_at"),
    "repeat": ("kind", "count", "every", "start_at"),
    "cron": ("kind", "cron", "tz", "misfire", "max_occurrences"),
}


def task_info(v: TaskView) -> TaskInfo:
    t = v.task
    policy = {f: getattr(t.policy, f) for f in _POLICY_FIELDS.get(t.policy.kind, ("kind",))}
    return TaskInfo(
        task_id=t.task_id,
        name=t.name,
        policy=times_of(policy),
        state="canceled" if t.canceled else "active",
        created_at=_dt(t.created_at),
        next_at=to_datetime(v.next_at),
        run_counts=v.run_counts,
        args=t.args,
        kwargs=t.kwargs,
        idempotency_key=t.idempotency_key,
        queue=t.options.queue,
    )


def worker_info(w: WorkerRecord, running: list[str]) -> WorkerInfo:
    return WorkerInfo(
        worker_id=w.worker_id,
        host=w.host,
        pid=w.pid,
        queues=w.queues,
        tasks=w.tasks,
        concurrency=w.concurrency,
        started_at=_dt(w.started_at),
        last_seen_at=_dt(w.last_seen_at),
        running=running,
    )


def explanation(run: Run, whys: list[Why]) -> Explanation:
    return Explanation(
        run_id=run.run_id,
        state=RunState(run.state),
        reasons=[Reason(code=w.code, text=w.text, data=_why_data(w.data)) for w in whys],
    )


def _why_data(data: dict[str, Any]) -> dict[str, Any]:
    """A reason's data with its times as datetimes: the ``..._at`` keys, and ``until`` (a
    suspended workflow's wake time or wait timeout)."""
    out = times_of(data)
    if isinstance(out.get("until"), int | float):
        out["until"] = to_datetime(out["until"])
    return out


def _dt(ts: float) -> datetime:
    out = to_datetime(ts)
    assert out is not None
    return out


def run_info(r: Run) -> RunInfo:
    # a failed run carries the classes of the failure that ended it (its last attempt's)
    last = r.attempts[-1] if r.state == RunState.FAILED and r.attempts else None
    return RunInfo(
        run_id=r.run_id,
        task_id=r.task_id,
        task_name=r.task_name,
        state=RunState(r.state),
        scheduled_at=_dt(r.scheduled_at),
        priority=r.priority,
        queue=r.queue,
        concurrency_key=r.concurrency_key,
        idempotency_key=r.idempotency_key,
        execution_id=r.execution_id,
        correlation_id=r.correlation_id,
        output=r.output,
        error=r.error,
        attempts=[
            AttemptInfo(
                attempt_id=a.attempt_id,
                number=a.number,
                result=None if a.result is None else AttemptResult(a.result),
                error=a.error,
                started_at=_dt(a.started_at),
                finished_at=to_datetime(a.finished_at),
                failure_class=a.failure_class,
                retry_class=a.retry_class,
            )
            for a in r.attempts
        ],
        rerun_of=r.rerun_of,
        parent_run_id=r.parent_run_id,
        caused_by=r.caused_by,
        failure_class=None if last is None else last.failure_class,
        retry_class=None if last is None else last.retry_class,
    )


class QueueInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A queue (``app.queues()``): whether it is paused, its runs by state, and how long its
    oldest ready run has been due (None: none is ready)."""

    name: str
    paused: bool
    counts: dict[str, int]
    oldest_ready_seconds: float | None


class StepInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a workflow run (``RunHandle.steps()``): a step function, an ``ms.step``
    call, a child submission (``submit:<task>``, output: the child's run id) or a
    ``ms.patched`` marker (``patch:<id>``)."""

    number: int
    name: str
    state: Literal["completed", "failed"]
    output: Any
    error: str | None
    attempts: int  # tries of that step
    started_at: datetime
    finished_at: datetime


def step_info(s: StepRecord) -> StepInfo:
    return StepInfo(
        number=s.number,
        name=s.name,
        state="completed" if s.state == "completed" else "failed",
        output=s.output,
        error=s.error,
        attempts=s.attempts,
        started_at=_dt(s.started_at),
        finished_at=_dt(s.finished_at),
    )


def log_event(e: Event) -> LogEvent:
    return LogEvent(
        seq=e.seq,
        event_id=e.event_id,
        type=e.type,
        at=_dt(e.at),
        task_id=e.task_id,
        run_id=e.run_id,
        attempt_id=e.attempt_id,
        correlation_id=e.correlation_id,
        execution_id=e.execution_id,
        data=times_of(e.data),
    )


def times_of(data: dict[str, Any]) -> dict[str, Any]:
    """Event data with its times (``..._at`` and ``until`` keys, at the top and in
    ``policy``) as aware UTC datetimes, like every other time of the API; the log stores
    Unix seconds. What handlers gave (``args``, ``kwargs``, ``output``, ``payload``) is
    left exactly as it is."""

    def convert(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            k: to_datetime(v)
            if (k.endswith("_at") or k == "until")
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            else v
            for k, v in doc.items()
        }

    out = convert(data)
    if isinstance(out.get("policy"), dict):
        out["policy"] = convert(out["policy"])
    return out


def _iso_times(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _iso_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso_times(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """Records (Structs), enums and datetimes as JSON-ready builtins, times as
    ``isoformat()`` (``+00:00``): the JSON of the CLI's ``--json`` and of the service."""
    return _iso_times(msgspec.to_builtins(value, builtin_types=(datetime,)))
