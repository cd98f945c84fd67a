"""Submitting: the decision that turns one ``SubmitRequest`` into a task and its first runs,
or finds the submission it repeats (an idempotency key, a workflow's execution id)."""

from __future__ import annotations

from typing import Any

from ..core import events as E
from ..core.errors import IdempotencyConflict, InvalidArgument, InvalidSchedule
from ..core.ids import uuid7
from ..core.model import (
    DebounceRecord,
    ExecutionRecord,
    IdempotencyRecord,
    debounce_key_of,
    idempotency_key_of,
)
from ..core.reducer import DEBOUNCES, EXECUTIONS, IDEMPOTENCY
from ..core.schedule import initial_occurrences
from ..core.states import RunState
from ..store.base import WriteTx
from .batch import Batch
from .messages import SubmitRequest, Submitted

#: Submissions decided earlier in the same transaction, by (task name, idempotency key).
Seen = dict[tuple[str, str], Submitted]


def submit_one(
    tx: WriteTx, b: Batch, req: SubmitRequest, seen: Seen, *, fresh: bool = False
) -> Submitted:
    """Decide one submission in ``b`` (events emitted, nothing written yet); ``fresh``:
    its idempotency key was never used (no lookup for it)."""
    if req.idempotency_key is not None and not fresh:
        again = _by_idempotency_key(tx, b, req, seen)
        if again is not None:
            return again
    if req.debounce is not None:
        again = _debounced(tx, b, req)
        if again is not None:
            return again
    if req.options.workflow and req.execution_id is not None:
        if req.policy.kind != "once":
            raise InvalidArgument(
                f"execution_id names one workflow instance: it cannot be given to a "
                f"{req.policy.kind} policy, whose every run is an instance of its own"
            )
        again = _by_execution_id(tx, b, req)
        if again is not None:
            return again
    now = b.now
    occurrences = initial_occurrences(req.policy, now)
    if not occurrences:
        raise InvalidSchedule(
            f"the schedule of {req.name!r} has no occurrence after now ({req.policy.cron!r}); "
            "check the expression's year and date fields"
        )
    task_id = req.task_id or uuid7()
    b.emit(
        E.task_created(
            now,
            task_id,
            name=req.name,
            args=req.args,
            kwargs=req.kwargs,
            policy=req.policy,
            options=req.options,
            idempotency_key=req.idempotency_key,
            concurrency_key=req.concurrency_key,
            correlation_id=req.correlation_id,
            execution_id=req.execution_id,
            parent_run_id=req.parent_run_id,
            deadline_at=req.deadline_at,
            caused_by=req.caused_by,
            debounce_key=None if req.debounce is None else req.debounce[1],
            rate_key=req.rate_key,
        )
    )
    task = b.state.tasks[task_id]
    run_ids = [b.derive(task, at, run_id=req.run_id) for at in occurrences]
    sub = Submitted(task_id, run_ids, first=b.state.runs[run_ids[0]])
    if req.idempotency_key is not None:
        seen[(req.name, req.idempotency_key)] = sub
    return sub


def _debounced(tx: WriteTx, b: Batch, req: SubmitRequest) -> Submitted | None:
    """The run this submission collapses into (its arguments now the run's, due
    ``debounce`` seconds from now, at most ``debounce_max`` after the first), or None when
    the key has no run that has not started yet."""
    assert req.debounce is not None
    delay, key, most = req.debounce
    dkey = debounce_key_of(req.name, key)
    tx.load_records(DEBOUNCES, [dkey], b.state)
    rec: DebounceRecord | None = b.state.kind(DEBOUNCES).get(dkey)
    if rec is None:
        return None
    tx.load_runs([rec.run_id], b.state)
    run = b.state.runs.get(rec.run_id)
    if run is None or run.state != RunState.SCHEDULED or run.due_at <= b.now:
        return None  # it is due (promoted or not yet), started or ended: a new run
    tx.load_tasks([rec.task_id], b.state, lock=True)
    task = b.state.tasks[rec.task_id]
    first: tuple[list[Any], dict[str, Any]] | None = None
    if task.idempotency_key is not None and (task.args, task.kwargs) != (req.args, req.kwargs):
        own = idempotency_key_of(task.name, task.idempotency_key)
        tx.load_records(IDEMPOTENCY, [own], b.state)
        if own not in b.state.kind(IDEMPOTENCY):
            first = (task.args, task.kwargs)  # (replaced now: its key's retries still match)
    due = b.now + delay if most is None else min(b.now + delay, rec.first_at + most)
    b.emit(
        E.run_debounced(
            run,
            b.now,
            args=req.args,
            kwargs=req.kwargs,
            due_at=due,
            concurrency_key=req.concurrency_key,
            rate_key=req.rate_key,
            idempotency_key=req.idempotency_key,
            first=first,
        )
    )
    return Submitted(rec.task_id, [rec.run_id], replayed=True)


def same_arguments(args: list[Any], kwargs: dict[str, Any], req: SubmitRequest) -> bool:
    """Whether ``req`` repeats the arguments a submission was made with."""
    if args == req.args and kwargs == req.kwargs:
        return True
    return req.same_call is not None and req.same_call(args, kwargs)


def _by_idempotency_key(tx: WriteTx, b: Batch, req: SubmitRequest, seen: Seen) -> Submitted | None:
    assert req.idempotency_key is not None
    ikey = (req.name, req.idempotency_key)
    # a debounce may have kept the submission (a submission without debounce looks only when
    # the key's task is a debounced one: the lookup is a round trip)
    kept = _kept_submission(tx, b, req) if req.debounce is not None else None
    existing = None
    if kept is None:
        existing = tx.task_by_idempotency(req.name, req.idempotency_key)
        if existing is not None and existing.debounce_key is not None:
            kept = _kept_submission(tx, b, req)
    if kept is not None:
        tx.load_tasks([kept.task_id], b.state)
        existing = b.state.tasks.get(kept.task_id)
    if existing is None and ikey in seen:
        existing = b.state.tasks[seen[ikey].task_id]
    if existing is None:
        return None
    args, kwargs = (existing.args, existing.kwargs) if kept is None else (kept.args, kept.kwargs)
    if not same_arguments(args, kwargs, req):
        raise IdempotencyConflict(
            f"idempotency key {req.idempotency_key!r} of task {req.name!r} was "
            f"already used with other arguments (task {existing.task_id}); use a "
            f"new key for a new submission"
        )
    if not existing.policy.same_intent(req.policy):
        raise IdempotencyConflict(
            f"idempotency key {req.idempotency_key!r} of task {req.name!r} was "
            f"already used with another policy ({existing.policy.describe()}, "
            f"task {existing.task_id}); use a new key for a new schedule"
        )
    if kept is not None:
        return Submitted(kept.task_id, [kept.run_id], replayed=True)
    run_ids = tx.run_ids_of_task(existing.task_id) or (seen[ikey].run_ids if ikey in seen else [])
    return Submitted(existing.task_id, run_ids, replayed=True)


def _kept_submission(tx: WriteTx, b: Batch, req: SubmitRequest) -> IdempotencyRecord | None:
    """The submission under ``req``'s idempotency key that a debounce kept, if any."""
    assert req.idempotency_key is not None
    key = idempotency_key_of(req.name, req.idempotency_key)
    tx.load_records(IDEMPOTENCY, [key], b.state)
    rec: IdempotencyRecord | None = b.state.kind(IDEMPOTENCY).get(key)
    return rec


def _by_execution_id(tx: WriteTx, b: Batch, req: SubmitRequest) -> Submitted | None:
    """The workflow instance already started under ``req.execution_id``, if any (the same
    task and arguments), else None; IdempotencyConflict for another task or arguments."""
    assert req.execution_id is not None
    tx.load_records(EXECUTIONS, [req.execution_id], b.state)
    ex: ExecutionRecord | None = b.state.kind(EXECUTIONS).get(req.execution_id)
    if ex is None:
        return None
    tx.load_tasks([ex.task_id], b.state)
    task = b.state.tasks[ex.task_id]
    if task.name != req.name or not same_arguments(task.args, task.kwargs, req):
        other = "with other arguments" if task.name == req.name else f"not of {req.name!r}"
        raise IdempotencyConflict(
            f"execution id {req.execution_id!r} already names an instance of workflow "
            f"{task.name!r} {other} (run {ex.run_id}); use a new execution id for a new "
            "instance"
        )
    return Submitted(ex.task_id, [ex.run_id], replayed=True)
