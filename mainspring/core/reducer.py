"""The reducer: ``apply(state, event)``, the one definition of what an event means.

Rules of this module
--------------------
* Every durable change is an event, and this is the only code that turns events into
  state. The live path (the engine, inside the store's transaction) and replay (verify,
  rebuilding) both call ``apply``; nothing else writes a record.
* ``apply`` validates before it mutates: an event the state does not permit raises
  ReplayError (or InvalidTransition for a bad state change) and leaves the state as it
  was. The engine therefore cannot append an event that replay would reject.
* ``State`` may be partial: the engine loads only the records a command touches. An
  event about a record that is not loaded is an error, never silently ignored.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

import msgspec

from . import events as E
from .errors import ReplayError
from .model import (
    NEVER,
    Attempt,
    CallRecord,
    DeadlineRecord,
    DebounceRecord,
    Event,
    ExecutionRecord,
    IdempotencyRecord,
    MessageRecord,
    Policy,
    QueueRecord,
    RateRecord,
    ReceiptRecord,
    Run,
    SignalRecord,
    StepRecord,
    SubscriberRecord,
    Task,
    TaskOptions,
    TopicRecord,
    WaitRecord,
    WorkerRecord,
    call_key,
    debounce_key_of,
    idempotency_key_of,
    receipt_key,
    step_key,
    wait_key,
)
from .states import TERMINAL, TRANSITIONS, AttemptResult, RunState, check_transition

#: Record kinds kept in ``State.records`` (one table per store each, declared in
#: store/kinds.py). Tasks and runs, the hot path's records, have fields of their own.
WORKERS = "workers"
STEPS = "steps"
WAITS = "waits"
SIGNALS = "signals"
EXECUTIONS = "executions"
DEADLINES = "deadlines"
MESSAGES = "messages"
TOPICS = "topics"
RECEIPTS = "receipts"
SUBSCRIBERS = "subscribers"
CALLS = "calls"
QUEUES = "queues"
DEBOUNCES = "debounces"
IDEMPOTENCY = "idempotency"
RATES = "rates"


class State:
    """Tasks, runs, task definitions, the engine flag and the other record kinds, by id.

    ``dirty_tasks`` / ``dirty_runs`` / ``dirty_definitions`` / ``dirty_engine`` /
    ``dirty_records`` name what ``apply`` changed, so a store writes back only those
    records. A key in ``dirty_records[kind]`` that is no longer in ``records[kind]`` was
    removed: the store deletes its row.
    """

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.runs: dict[str, Run] = {}
        self.definitions: dict[str, dict[str, Any]] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.paused: bool = False
        self.last_seq: int = 0
        self.dirty_tasks: set[str] = set()
        self.dirty_runs: set[str] = set()
        self.dirty_definitions: set[str] = set()
        self.dirty_records: dict[str, set[str]] = {}
        self.new_records: dict[str, set[str]] = {}  # created since the last save
        #: keys of record kinds a store looked up for this state, found or not (not again)
        self.looked_up: dict[str, set[str]] = {}
        self.dirty_engine: bool = False
        self.new_tasks: set[str] = set()  # created by events applied since the last save
        self.new_runs: set[str] = set()
        self.pruned_tasks: set[str] = set()  # removed (retention) since the last save
        self.pruned_runs: set[str] = set()
        #: when a command asks (a dict): each run's row as the store wrote it from this
        #: state, by run id (store/rows.py ``Fence``: what a worker fences its report with)
        self.fences: dict[str, Any] | None = None

    def kind(self, kind: str) -> dict[str, Any]:
        """The loaded records of one kind, by key."""
        return self.records.setdefault(kind, {})

    def put(self, kind: str, key: str, record: Any, *, new: bool = False) -> None:
        """Store a record; ``new``: one that must not exist yet (its store writes it
        create-only: another transaction's record of the same key is a conflict)."""
        self.kind(kind)[key] = record
        self.dirty_records.setdefault(kind, set()).add(key)
        if new:
            self.new_records.setdefault(kind, set()).add(key)

    def drop(self, kind: str, key: str) -> None:
        self.kind(kind).pop(key, None)
        self.dirty_records.setdefault(kind, set()).add(key)

    def clear_dirty(self) -> None:
        self.dirty_tasks.clear()
        self.dirty_runs.clear()
        self.new_tasks.clear()
        self.new_runs.clear()
        self.pruned_tasks.clear()
        self.pruned_runs.clear()
        self.dirty_definitions.clear()
        self.dirty_records.clear()
        self.new_records.clear()
        self.dirty_engine = False


_RESULTS = frozenset(AttemptResult)  # (plain strings hash as their StrEnum members)
#: A run in these states holds a lease ...
_HOLDING = frozenset({RunState.LEASED, RunState.RUNNING})
#: ... which must be released or expired before it moves to one of these.
_RELEASING = frozenset({RunState.READY, RunState.RETRY_WAIT, RunState.SUSPENDED, *TERMINAL})


def _run(state: State, ev: Event) -> Run:
    if ev.run_id is None or ev.run_id not in state.runs:
        raise ReplayError(f"{ev.type} (seq {ev.seq}) names run {ev.run_id!r}, which is not known")
    return state.runs[ev.run_id]


def _task(state: State, task_id: str | None, ev: Event) -> Task:
    if task_id is None or task_id not in state.tasks:
        raise ReplayError(f"{ev.type} (seq {ev.seq}) names task {task_id!r}, which is not known")
    return state.tasks[task_id]


def _check_lease(run: Run, ev: Event) -> None:
    owner = ev.data.get("owner")
    if run.lease_owner is None:
        raise ReplayError(f"{ev.type} for run {run.run_id}: the run holds no lease")
    if owner != run.lease_owner:
        raise ReplayError(
            f"{ev.type} for run {run.run_id}: lease is held by {run.lease_owner!r}, not {owner!r}"
        )


def _on_task_defined(state: State, ev: Event) -> None:
    d: E.TaskDefined = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    name = d["name"]
    state.definitions[name] = dict(d["options"])
    state.dirty_definitions.add(name)


def _on_task_created(state: State, ev: Event) -> None:
    assert ev.task_id is not None
    if ev.task_id in state.tasks:
        raise ReplayError(f"task.created (seq {ev.seq}): task {ev.task_id} already exists")
    d: E.TaskCreated = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    state.tasks[ev.task_id] = Task(
        task_id=ev.task_id,
        name=d["name"],
        args=list(d["args"]),
        kwargs=dict(d["kwargs"]),
        policy=msgspec.convert(d["policy"], Policy),
        options=msgspec.convert(d["options"], TaskOptions),
        idempotency_key=d.get("idempotency_key"),
        execution_id=ev.execution_id,
        correlation_id=ev.correlation_id,
        concurrency_key=d.get("concurrency_key"),
        created_at=ev.at,
        parent_run_id=d.get("parent_run_id"),
        deadline_at=d.get("deadline_at"),
        caused_by=d.get("caused_by"),
        debounce_key=d.get("debounce_key"),
        rate_key=d.get("rate_key"),
    )
    state.dirty_tasks.add(ev.task_id)
    state.new_tasks.add(ev.task_id)


def _on_task_canceled(state: State, ev: Event) -> None:
    task = _task(state, ev.task_id, ev)
    if task.canceled:
        raise ReplayError(f"task.canceled (seq {ev.seq}): task {task.task_id} is already canceled")
    task.canceled = True
    state.dirty_tasks.add(task.task_id)


def _on_run_created(state: State, ev: Event) -> None:
    assert ev.run_id is not None
    if ev.run_id in state.runs:
        raise ReplayError(f"run.created (seq {ev.seq}): run {ev.run_id} already exists")
    task = _task(state, ev.task_id, ev)
    d: E.RunCreated = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    if d.get("state", RunState.SCHEDULED) != RunState.SCHEDULED:
        raise ReplayError(f"run.created (seq {ev.seq}): a run is created 'scheduled'")
    state.runs[ev.run_id] = Run(
        run_id=ev.run_id,
        task_id=task.task_id,
        task_name=task.name,
        state=RunState.SCHEDULED,
        scheduled_at=d["scheduled_at"],
        due_at=d["scheduled_at"],
        created_at=ev.at,
        index=d.get("index", task.derived),
        priority=d.get("priority", task.options.priority),
        queue=d.get("queue", task.options.queue),
        concurrency_key=d.get("concurrency_key"),
        concurrency_limit=task.options.concurrency_limit,
        key_policy=task.options.key_policy,
        idempotency_key=task.idempotency_key,
        execution_id=ev.execution_id,
        correlation_id=ev.correlation_id,
        updated_at=ev.at,
        rerun_of=d.get("rerun_of"),
        workflow=task.options.workflow,
        parent_run_id=task.parent_run_id,
        deadline_at=task.deadline_at,
        caused_by=task.caused_by,
        rate_key=task.rate_key,
    )
    run = state.runs[ev.run_id]
    if task.options.topic is not None and task.args and isinstance(task.args[0], dict):
        run.delivery = task.args[0].get("event_id")  # (a subscriber's run: its message)
    if run.parent_run_id is not None:
        parent = state.runs.get(run.parent_run_id)
        if parent is None:
            raise ReplayError(
                f"run.created (seq {ev.seq}): parent run {run.parent_run_id} is not known"
            )
        parent.children.append(run.run_id)
        state.dirty_runs.add(parent.run_id)
    if run.workflow and ev.execution_id is not None:
        if ev.execution_id in state.kind(EXECUTIONS):
            raise ReplayError(
                f"run.created (seq {ev.seq}): execution id {ev.execution_id!r} is taken"
            )
        rec = ExecutionRecord(execution_id=ev.execution_id, run_id=run.run_id, task_id=task.task_id)
        state.put(EXECUTIONS, ev.execution_id, rec, new=True)
    if run.deadline_at is not None:
        state.put(DEADLINES, run.run_id, DeadlineRecord(run_id=run.run_id, at=run.deadline_at))
    if task.debounce_key is not None:
        key = debounce_key_of(task.name, task.debounce_key)
        old = state.kind(DEBOUNCES).get(key)
        collapse = DebounceRecord(key=key, run_id=run.run_id, task_id=task.task_id, first_at=ev.at)
        state.put(DEBOUNCES, key, collapse, new=old is None)
    task.derived += 1
    sched = d["scheduled_at"]
    if task.cursor is None or sched > task.cursor:
        task.cursor = sched
    state.dirty_tasks.add(task.task_id)
    state.dirty_runs.add(ev.run_id)
    state.new_runs.add(ev.run_id)


def _on_state_changed(state: State, ev: Event) -> None:
    d: E.StateChanged = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    run = _run(state, ev)
    frm: str = d["from"]
    to: str = d["to"]
    if run.state != frm:
        raise ReplayError(
            f"run.state_changed (seq {ev.seq}) for run {run.run_id}: says from {frm!r} "
            f"but the run is {run.state!r}"
        )
    allowed = TRANSITIONS.get(frm)  # type: ignore[call-overload]  # str keys hash as the StrEnum
    if allowed is None or to not in allowed:
        try:
            check_transition(RunState(frm), RunState(to), run_id=run.run_id)
        except ValueError:
            raise ReplayError(f"run.state_changed (seq {ev.seq}): unknown state {to!r}") from None
    open_att = run.open_attempt()
    if frm == RunState.RUNNING and to != RunState.CANCELED and open_att is not None:
        raise ReplayError(
            f"run.state_changed (seq {ev.seq}): run {run.run_id} leaves 'running' with "
            f"attempt {open_att.attempt_id} still open"
        )
    if to == RunState.LEASED and run.lease_owner is not None:
        raise ReplayError(f"run {run.run_id} is leased while a lease is held")
    if frm in _HOLDING and to in _RELEASING and run.lease_owner is not None:
        raise ReplayError(
            f"run.state_changed (seq {ev.seq}): run {run.run_id} leaves {frm!r} "
            f"without its lease being released or expired first"
        )
    # concurrency key holding
    if run.concurrency_key is not None:
        if to == RunState.LEASED:
            run.holds_key = True
        elif to in TERMINAL:
            run.holds_key = False
        elif to in (RunState.RETRY_WAIT, RunState.SUSPENDED):
            run.holds_key = run.key_policy == "hold"
        elif frm == RunState.LEASED and to == RunState.READY:
            run.holds_key = run.key_policy == "hold" and bool(run.attempts)
    if "due_at" in d:
        run.due_at = d["due_at"]
    elif to == RunState.SUSPENDED:
        run.due_at = NEVER  # waits for no time: only a resume, signal or child wakes it
    if frm == RunState.SUSPENDED:
        run.waiting = None
    if to in TERMINAL and run.deadline_at is not None:
        state.drop(DEADLINES, run.run_id)
    if "error" in d:
        run.error = d["error"]
    run.state = to
    run.reason = d.get("reason")
    run.updated_at = ev.at
    state.dirty_runs.add(run.run_id)


def _on_attempt_started(state: State, ev: Event) -> None:
    d: E.AttemptStarted = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    run = _run(state, ev)
    if run.state != RunState.RUNNING:
        raise ReplayError(
            f"attempt.started (seq {ev.seq}): run {run.run_id} is {run.state!r}, not running"
        )
    if run.open_attempt() is not None:
        raise ReplayError(
            f"attempt.started (seq {ev.seq}): run {run.run_id} already has an open attempt"
        )
    if ev.attempt_id is None:
        raise ReplayError(f"attempt.started (seq {ev.seq}) has no attempt_id")
    number = len(run.attempts) + 1
    if d.get("number", number) != number:
        raise ReplayError(
            f"attempt.started (seq {ev.seq}): attempt number {d.get('number')} != {number}"
        )
    run.attempts.append(
        Attempt(attempt_id=ev.attempt_id, number=number, started_at=ev.at, worker=d.get("worker"))
    )
    if run.rate_key is not None:  # the start counts in its rate limit's account
        limit = state.tasks[run.task_id].options.rate_limit if run.task_id in state.tasks else None
        account: RateRecord | None = state.kind(RATES).get(run.rate_key)
        if limit is None:
            raise ReplayError(f"attempt.started (seq {ev.seq}): task {run.task_id} is not loaded")
        # in time order, the latest ``count`` kept: a writer's clock is read before it waits
        # for the account's lock, so starts can commit out of time order, and a start
        # dropped for being committed first while later than one kept would go uncounted
        kept = [] if account is None else list(account.starts)
        bisect.insort(kept, ev.at)
        del kept[: -limit.count]
        state.put(
            RATES, run.rate_key, RateRecord(key=run.rate_key, starts=kept), new=account is None
        )
    run.updated_at = ev.at
    state.dirty_runs.add(run.run_id)


def _on_attempt_finished(state: State, ev: Event) -> None:
    d: E.AttemptFinished = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    run = _run(state, ev)
    att = run.open_attempt()
    if run.state != RunState.RUNNING or att is None or att.attempt_id != ev.attempt_id:
        raise ReplayError(
            f"attempt.finished (seq {ev.seq}): attempt {ev.attempt_id} of run {run.run_id} is not "
            f"the open attempt of a running run"
        )
    result = d["result"]
    if result not in _RESULTS:
        raise ReplayError(f"attempt.finished (seq {ev.seq}): unknown result {result!r}")
    att.result = result
    att.error = d.get("error")
    att.finished_at = ev.at
    att.failure_class = d.get("failure_class")
    att.retry_class = d.get("retry_class")
    if result == AttemptResult.SUCCESS:
        run.output = d.get("output")
    elif att.error is not None:
        run.error = att.error
    run.updated_at = ev.at
    state.dirty_runs.add(run.run_id)


def _on_lease_acquired(state: State, ev: Event) -> None:
    d: E.Lease = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    run = _run(state, ev)
    if run.state != RunState.LEASED or run.lease_owner is not None:
        raise ReplayError(
            f"lease.acquired (seq {ev.seq}): run {run.run_id} is {run.state!r} / already leased"
        )
    run.lease_owner = d["owner"]
    run.lease_expires_at = d["expires_at"]
    state.dirty_runs.add(run.run_id)


def _on_lease_renewed(state: State, ev: Event) -> None:
    d: E.Lease = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    run = _run(state, ev)
    _check_lease(run, ev)
    exp = d["expires_at"]
    assert run.lease_expires_at is not None
    if exp < run.lease_expires_at:
        raise ReplayError(
            f"lease.renewed (seq {ev.seq}): run {run.run_id} lease would move backwards"
        )
    run.lease_expires_at = exp
    state.dirty_runs.add(run.run_id)


def _on_lease_closed(state: State, ev: Event) -> None:
    run = _run(state, ev)
    _check_lease(run, ev)
    run.lease_owner = None
    run.lease_expires_at = None
    state.dirty_runs.add(run.run_id)


def _on_paused(state: State, ev: Event) -> None:
    if state.paused:
        raise ReplayError(f"engine.paused (seq {ev.seq}): the engine is already paused")
    state.paused = True
    state.dirty_engine = True


def _on_resumed(state: State, ev: Event) -> None:
    if not state.paused:
        raise ReplayError(f"engine.resumed (seq {ev.seq}): the engine is not paused")
    state.paused = False
    state.dirty_engine = True


def _on_log_compacted(state: State, ev: Event) -> None:
    """The log, not the state, changed: nothing to apply."""


def _on_run_debounced(state: State, ev: Event) -> None:
    run = _run(state, ev)
    if run.state != RunState.SCHEDULED:
        raise ReplayError(f"run.debounced (seq {ev.seq}): run {run.run_id} is {run.state!r}")
    task = _task(state, run.task_id, ev)
    first = ev.data.get("first")
    if first is not None and task.idempotency_key is not None:
        _keep_submission(state, task, task.idempotency_key, run, first["args"], first["kwargs"])
    if "idempotency_key" in ev.data:
        _keep_submission(
            state, task, ev.data["idempotency_key"], run, ev.data["args"], ev.data["kwargs"]
        )
    task.args, task.kwargs = list(ev.data["args"]), dict(ev.data["kwargs"])
    if "concurrency_key" in ev.data:  # (a scheduled run holds no key yet)
        run.concurrency_key = task.concurrency_key = ev.data["concurrency_key"]
    if "rate_key" in ev.data:
        run.rate_key = task.rate_key = ev.data["rate_key"]
    run.due_at = ev.data["due_at"]  # (scheduled_at stays as the first submission set it)
    run.updated_at = ev.at
    state.dirty_tasks.add(task.task_id)
    state.dirty_runs.add(run.run_id)


def _keep_submission(
    state: State, task: Task, key: str, run: Run, args: list[Any], kwargs: dict[str, Any]
) -> None:
    k = idempotency_key_of(task.name, key)
    if k in state.kind(IDEMPOTENCY):
        raise ReplayError(f"run {run.run_id}: idempotency key {key!r} is kept already")
    rec = IdempotencyRecord(
        key=k, run_id=run.run_id, task_id=task.task_id, args=list(args), kwargs=dict(kwargs)
    )
    state.put(IDEMPOTENCY, k, rec, new=True)


def _on_run_pruned(state: State, ev: Event) -> None:
    run = _run(state, ev)
    if RunState(run.state) not in TERMINAL:
        raise ReplayError(f"run.pruned (seq {ev.seq}): run {run.run_id} is {run.state!r}")
    del state.runs[run.run_id]
    state.dirty_runs.discard(run.run_id)
    state.pruned_runs.add(run.run_id)
    for kind, keys in ev.data.get("records", {}).items():
        for key in keys:
            state.drop(kind, key)


def _on_task_pruned(state: State, ev: Event) -> None:
    # (that the task has no run left is the prune command's check, in its transaction: a
    # scan of every run here made a replay of N pruned tasks cost N times the runs)
    task = _task(state, ev.task_id, ev)
    del state.tasks[task.task_id]
    state.dirty_tasks.discard(task.task_id)
    state.pruned_tasks.add(task.task_id)


def _on_queue_flag(state: State, ev: Event) -> None:
    name = ev.data["queue"]
    rec: QueueRecord | None = state.kind(QUEUES).get(name)
    paused = ev.type == E.QUEUE_PAUSED
    if (rec is not None and rec.paused_at is not None) == paused:
        raise ReplayError(f"{ev.type} (seq {ev.seq}): queue {name!r} already is so")
    flag = QueueRecord(name=name, paused_at=ev.at if paused else None)
    state.put(QUEUES, name, flag, new=rec is None)


def _worker(state: State, ev: Event) -> WorkerRecord:
    rec: WorkerRecord | None = state.kind(WORKERS).get(ev.data.get("worker_id", ""))
    if rec is None:
        raise ReplayError(
            f"{ev.type} (seq {ev.seq}) names worker {ev.data.get('worker_id')!r}, which is not known"
        )
    return rec


def _on_worker_registered(state: State, ev: Event) -> None:
    d: E.WorkerRegistered = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    if d["worker_id"] in state.kind(WORKERS):
        raise ReplayError(f"worker.registered (seq {ev.seq}): {d['worker_id']} already exists")
    rec = WorkerRecord(
        worker_id=d["worker_id"],
        host=d["host"],
        pid=d["pid"],
        queues=None if d["queues"] is None else list(d["queues"]),
        tasks=list(d["tasks"]),
        concurrency=d["concurrency"],
        started_at=ev.at,
        last_seen_at=ev.at,
        expires_at=d["expires_at"],
    )
    state.put(WORKERS, rec.worker_id, rec)


def _on_worker_heartbeat(state: State, ev: Event) -> None:
    d: E.WorkerHeartbeat = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    rec = _worker(state, ev)
    rec.last_seen_at = ev.at
    rec.expires_at = d["expires_at"]
    state.put(WORKERS, rec.worker_id, rec)


def _on_worker_gone(state: State, ev: Event) -> None:
    state.drop(WORKERS, _worker(state, ev).worker_id)


# -- workflows ---------------------------------------------------------------------------------
def _running(state: State, ev: Event) -> Run:
    run = _run(state, ev)
    if run.state != RunState.RUNNING:
        raise ReplayError(
            f"{ev.type} (seq {ev.seq}): run {run.run_id} is {run.state!r}, not running"
        )
    return run


def _on_step_started(state: State, ev: Event) -> None:
    _running(state, ev)


def _on_step_ended(state: State, ev: Event) -> None:
    d: E.StepFailed = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    run = _running(state, ev)
    failed = ev.type == E.STEP_FAILED
    if failed and d["will_retry"]:
        return  # a try of the step: the step itself goes on
    key = step_key(run.run_id, d["number"])
    was: StepRecord | None = state.kind(STEPS).get(key)
    # a step that failed for good as the last thing its workflow recorded may run again in
    # a later attempt (workflow.py ``WorkflowRun.runs_again``); a completed step never does
    if was is not None and (was.state != "failed" or was.name != d["name"]):
        raise ReplayError(
            f"{ev.type} (seq {ev.seq}): step {d['number']} of {run.run_id} is recorded"
        )
    state.put(
        STEPS,
        key,
        StepRecord(
            step_id=key,
            run_id=run.run_id,
            number=d["number"],
            name=d["name"],
            state="failed" if failed else "completed",
            output=None if failed else ev.data.get("output"),
            error=d["error"] if failed else None,
            error_type=d["error_type"] if failed else None,
            error_args=d.get("error_args") if failed else None,
            error_attrs=d.get("error_attrs") if failed else None,
            waits_before=d.get("waits") if failed else None,
            attempts=d["attempts"],
            started_at=d["started_at"],
            finished_at=ev.at,
        ),
        new=was is None,
    )


def _on_wait_started(state: State, ev: Event) -> None:
    d: E.WaitStarted = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    run = _running(state, ev)
    key = wait_key(run.run_id, d["number"])
    if key in state.kind(WAITS):
        raise ReplayError(f"{ev.type} (seq {ev.seq}): wait {d['number']} of {run.run_id} exists")
    rec = WaitRecord(
        wait_id=key,
        run_id=run.run_id,
        number=d["number"],
        kind="sleep" if ev.type == E.SLEEP_STARTED else ev.data["for"],
        until=d["until"],
        name=d.get("name"),
        children=list(d.get("children", ())),
        started_at=ev.at,
    )
    state.put(WAITS, key, rec, new=True)
    run.waiting = key
    state.dirty_runs.add(run.run_id)


def _wait(state: State, ev: Event, key: str) -> WaitRecord:
    rec: WaitRecord | None = state.kind(WAITS).get(key)
    if rec is None or rec.state != "waiting":
        raise ReplayError(f"{ev.type} (seq {ev.seq}): {key} is not a wait in progress")
    return rec


def _on_wait_completed(state: State, ev: Event) -> None:
    run = _run(state, ev)
    rec = _wait(state, ev, wait_key(run.run_id, ev.data["number"]))
    rec.state = "completed"
    rec.timed_out = bool(ev.data.get("timed_out", False))
    rec.finished_at = ev.at
    state.put(WAITS, rec.wait_id, rec)
    if run.waiting == rec.wait_id:
        run.waiting = None  # (a later suspension of the run is not this wait's)
        state.dirty_runs.add(run.run_id)


def _on_signal_sent(state: State, ev: Event) -> None:
    d: E.SignalSent = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    run = _run(state, ev)
    key = d["signal_id"]
    if key in state.kind(SIGNALS):
        raise ReplayError(f"signal.sent (seq {ev.seq}): signal {key} exists")
    number = int(key.rsplit("/s", 1)[1])
    rec = SignalRecord(
        signal_id=key,
        run_id=run.run_id,
        number=number,
        name=d["name"],
        payload=d["payload"],
        idempotency_key=d["idempotency_key"],
        sent_at=ev.at,
    )
    state.put(SIGNALS, key, rec, new=True)


def _on_signal_received(state: State, ev: Event) -> None:
    d: E.SignalReceived = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    _run(state, ev)
    sig: SignalRecord | None = state.kind(SIGNALS).get(d["signal_id"])
    if sig is None or sig.received_by is not None:
        raise ReplayError(f"signal.received (seq {ev.seq}): {d['signal_id']} is not pending")
    wait = _wait(state, ev, d["wait_id"])
    if wait.kind != "signal" or wait.name != sig.name:
        raise ReplayError(
            f"signal.received (seq {ev.seq}): {wait.wait_id} waits for no {sig.name!r}"
        )
    sig.received_by = wait.wait_id
    wait.payload = sig.payload
    wait.signal_id = sig.signal_id
    state.put(SIGNALS, sig.signal_id, sig)
    state.put(WAITS, wait.wait_id, wait)


# -- messages ----------------------------------------------------------------------------------
def _on_message_published(state: State, ev: Event) -> None:
    d: E.MessagePublished = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    if d["event_id"] in state.kind(MESSAGES):
        raise ReplayError(f"message.published (seq {ev.seq}): {d['event_id']} exists")
    topic: TopicRecord | None = state.kind(TOPICS).get(d["topic"])
    last = 0 if topic is None else topic.last_sequence
    if d["sequence"] != last + 1:
        raise ReplayError(
            f"message.published (seq {ev.seq}): sequence {d['sequence']} of {d['topic']!r} "
            f"does not follow {last}"
        )
    msg = MessageRecord(
        event_id=d["event_id"],
        topic=d["topic"],
        sequence=d["sequence"],
        payload=d["payload"],
        correlation_id=ev.correlation_id,
        causation_id=d.get("causation_id"),
        published_at=ev.at,
    )
    state.put(MESSAGES, msg.event_id, msg, new=True)
    new = TopicRecord(topic=msg.topic, last_sequence=msg.sequence, last_at=ev.at)
    state.put(TOPICS, msg.topic, new, new=topic is None)


def _on_receipt_recorded(state: State, ev: Event) -> None:
    d: E.ReceiptRecorded = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    run = _run(state, ev)
    key = receipt_key(d["subscriber"], d["event_id"])
    if key in state.kind(RECEIPTS):
        raise ReplayError(f"receipt.recorded (seq {ev.seq}): the receipt {key!r} exists")
    sub: SubscriberRecord | None = state.kind(SUBSCRIBERS).get(d["subscriber"])
    count = 0 if sub is None else sub.receipts
    if d["sequence"] != count + 1:
        raise ReplayError(
            f"receipt.recorded (seq {ev.seq}): receipt {d['sequence']} of {d['subscriber']!r} "
            f"does not follow {count}"
        )
    rec = ReceiptRecord(
        receipt_id=key,
        subscriber=d["subscriber"],
        event_id=d["event_id"],
        topic=d["topic"],
        sequence=d["sequence"],
        status=d["status"],
        run_id=run.run_id,
        attempt=d["attempt"],
        output=d["output"],
        failure_class=d["failure_class"],
        retry_class=d["retry_class"],
        recorded_at=ev.at,
    )
    state.put(RECEIPTS, key, rec, new=True)
    counter = SubscriberRecord(name=rec.subscriber, receipts=rec.sequence)
    state.put(SUBSCRIBERS, rec.subscriber, counter, new=sub is None)


def _on_transaction_recorded(state: State, ev: Event) -> None:
    d: E.TransactionRecorded = ev.data  # type: ignore[assignment]  # (a cast, without a call)
    run = _run(state, ev)
    step = d.get("step")
    key = call_key(run.run_id, d["number"], step)
    if key in state.kind(CALLS):
        raise ReplayError(f"transaction.recorded (seq {ev.seq}): call {key} is recorded")
    rec = CallRecord(
        call_id=key,
        run_id=run.run_id,
        number=d["number"],
        name=d["name"],
        args=d["args"],
        output=d["output"],
        recorded_at=ev.at,
        step=step,
    )
    state.put(CALLS, key, rec, new=True)


_HANDLERS = {
    E.TASK_DEFINED: _on_task_defined,
    E.TASK_CREATED: _on_task_created,
    E.TASK_CANCELED: _on_task_canceled,
    E.RUN_CREATED: _on_run_created,
    E.RUN_STATE_CHANGED: _on_state_changed,
    E.ATTEMPT_STARTED: _on_attempt_started,
    E.ATTEMPT_FINISHED: _on_attempt_finished,
    E.LEASE_ACQUIRED: _on_lease_acquired,
    E.LEASE_RENEWED: _on_lease_renewed,
    E.LEASE_EXPIRED: _on_lease_closed,
    E.LEASE_RELEASED: _on_lease_closed,
    E.ENGINE_PAUSED: _on_paused,
    E.ENGINE_RESUMED: _on_resumed,
    E.RUN_DEBOUNCED: _on_run_debounced,
    E.RUN_PRUNED: _on_run_pruned,
    E.LOG_COMPACTED: _on_log_compacted,
    E.TASK_PRUNED: _on_task_pruned,
    E.QUEUE_PAUSED: _on_queue_flag,
    E.QUEUE_RESUMED: _on_queue_flag,
    E.WORKER_REGISTERED: _on_worker_registered,
    E.WORKER_HEARTBEAT: _on_worker_heartbeat,
    E.WORKER_LEFT: _on_worker_gone,
    E.WORKER_EXPIRED: _on_worker_gone,
    E.STEP_STARTED: _on_step_started,
    E.STEP_COMPLETED: _on_step_ended,
    E.STEP_FAILED: _on_step_ended,
    E.SLEEP_STARTED: _on_wait_started,
    E.WAIT_STARTED: _on_wait_started,
    E.SLEEP_COMPLETED: _on_wait_completed,
    E.WAIT_COMPLETED: _on_wait_completed,
    E.SIGNAL_SENT: _on_signal_sent,
    E.SIGNAL_RECEIVED: _on_signal_received,
    E.MESSAGE_PUBLISHED: _on_message_published,
    E.RECEIPT_RECORDED: _on_receipt_recorded,
    E.TRANSACTION_RECORDED: _on_transaction_recorded,
}


def apply(state: State, ev: Event) -> None:
    """Apply one event to ``state`` (in place). Raises ReplayError if it does not fit."""
    handler = _HANDLERS.get(ev.type)
    if handler is None:
        raise ReplayError(f"unknown event type {ev.type!r} (seq {ev.seq})")
    handler(state, ev)
    if ev.seq:
        state.last_seq = ev.seq


def replay(events: Iterable[Event], state: State | None = None) -> State:
    """Fold ``events`` into a (new) state."""
    st = state if state is not None else State()
    for ev in events:
        apply(st, ev)
    st.clear_dirty()
    return st
