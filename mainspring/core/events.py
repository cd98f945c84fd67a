"""The log event catalogue.

Every durable change is one of these events. The reducer (``reducer.py``) is the single
definition of what each one means. ``docs/events.md`` describes their data.

Each event's ``data`` has a shape, a TypedDict below; events are built by the typed
functions at the end of this module (so an emitter cannot misspell or forget a field), and
the reducer reads ``data`` through the same shapes (``typing.cast``). In the log ``data`` stays
a plain JSON object, so events written by earlier versions read the same.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, cast

import msgspec

from .ids import uuid7
from .model import (
    Event,
    MessageRecord,
    Policy,
    ReceiptRecord,
    Run,
    StepRecord,
    Task,
    TaskOptions,
    WaitRecord,
)

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
RUN_DEBOUNCED = "run.debounced"
RUN_PRUNED = "run.pruned"
TASK_PRUNED = "task.pruned"
QUEUE_PAUSED = "queue.paused"
QUEUE_RESUMED = "queue.resumed"
WORKER_REGISTERED = "worker.registered"
WORKER_HEARTBEAT = "worker.heartbeat"
WORKER_LEFT = "worker.left"
WORKER_EXPIRED = "worker.expired"
STEP_STARTED = "step.started"
STEP_COMPLETED = "step.completed"
STEP_FAILED = "step.failed"
SLEEP_STARTED = "sleep.started"
SLEEP_COMPLETED = "sleep.completed"
WAIT_STARTED = "wait.started"
WAIT_COMPLETED = "wait.completed"
SIGNAL_SENT = "signal.sent"
SIGNAL_RECEIVED = "signal.received"
MESSAGE_PUBLISHED = "message.published"
TRANSACTION_RECORDED = "transaction.recorded"
RECEIPT_RECORDED = "receipt.recorded"
LOG_COMPACTED = "log.compacted"


# -- the shapes of ``data`` ------------------------------------------------------------------
class TaskDefined(TypedDict):
    name: str
    options: dict[str, Any]  # TaskOptions as JSON, plus the handler's parameters


class TaskCreated(TypedDict):
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    policy: dict[str, Any]  # Policy as JSON
    options: dict[str, Any]  # TaskOptions as JSON
    idempotency_key: str | None
    concurrency_key: str | None
    rerun_of: NotRequired[str]
    parent_run_id: NotRequired[str]
    deadline_at: NotRequired[float]
    caused_by: NotRequired[str]
    debounce_key: NotRequired[str]
    rate_key: NotRequired[str]


class TaskCanceled(TypedDict):
    reason: str


class RunCreated(TypedDict):
    state: str  # always "scheduled"
    scheduled_at: float
    index: int
    priority: int
    queue: str
    concurrency_key: str | None
    rerun_of: NotRequired[str]


# ("from" is a keyword: the functional form)
StateChanged = TypedDict(
    "StateChanged",
    {
        "from": str,
        "to": str,
        "reason": str,
        "due_at": NotRequired[float],
        "error": NotRequired[str],
    },
)


class AttemptStarted(TypedDict):
    number: int
    worker: str


class AttemptFinished(TypedDict):
    result: str
    error: str | None
    output: Any
    traceback: NotRequired[str]
    failure_class: NotRequired[str]  # a failure's classes (core/failures.py)
    retry_class: NotRequired[str]


class Lease(TypedDict):
    owner: str
    expires_at: NotRequired[float]  # acquired, renewed


class WorkerRegistered(TypedDict):
    worker_id: str
    host: str
    pid: int
    queues: list[str] | None
    tasks: list[str]
    concurrency: int
    expires_at: float


class WorkerHeartbeat(TypedDict):
    worker_id: str
    expires_at: float


class WorkerGone(TypedDict):
    worker_id: str
    last_seen_at: NotRequired[float]  # expired


class StepStarted(TypedDict):
    number: int
    name: str


class StepCompleted(TypedDict):
    number: int
    name: str
    output: Any
    attempts: int
    started_at: float


class StepFailed(TypedDict):
    number: int
    name: str
    error: str
    error_type: str | None
    error_args: NotRequired[list[Any] | None]
    error_attrs: NotRequired[dict[str, Any]]
    will_retry: bool
    attempts: int
    started_at: float
    waits: NotRequired[int]  # the workflow's waits begun by then (StepRecord.waits_before)


class SleepStarted(TypedDict):
    number: int
    until: float


class WaitStarted(TypedDict):
    number: int
    until: float | None
    name: NotRequired[str]  # for "signal"
    children: NotRequired[list[str]]  # for "child"


class WaitCompleted(TypedDict):
    number: int
    timed_out: bool


class SignalSent(TypedDict):
    signal_id: str
    name: str
    payload: Any
    idempotency_key: str | None


class MessagePublished(TypedDict):
    topic: str
    sequence: int
    event_id: str
    payload: Any
    causation_id: str | None


class ReceiptRecorded(TypedDict):
    subscriber: str
    event_id: str
    status: str
    failure_class: str | None
    retry_class: str | None
    topic: str
    sequence: int
    attempt: int
    output: Any


class TransactionRecorded(TypedDict):
    number: int
    name: str
    args: Any
    output: Any
    step: NotRequired[int]  # the workflow step whose try made the call


class SignalReceived(TypedDict):
    signal_id: str
    name: str
    wait_id: str


# -- building events ------------------------------------------------------------------------
def event(type: str, at: float, **fields: Any) -> Event:
    return Event(type=type, at=at, event_id=uuid7(), **fields)


def run_event(type: str, run: Run, at: float, attempt_id: str | None = None, **data: Any) -> Event:
    """An event about ``run``; it carries the run's execution and correlation ids."""
    return _about(run, type, at, attempt_id, data)


def _about(run: Run, type: str, at: float, attempt_id: str | None, data: Any) -> Event:
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


def _data(shape: Any) -> dict[str, Any]:
    return cast(dict[str, Any], shape)


def task_defined(at: float, name: str, options: dict[str, Any]) -> Event:
    return event(TASK_DEFINED, at, data=_data(TaskDefined(name=name, options=options)))


def task_created(
    at: float,
    task_id: str,
    *,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    policy: Policy,
    options: TaskOptions,
    idempotency_key: str | None,
    concurrency_key: str | None,
    correlation_id: str | None,
    execution_id: str | None,
    rerun_of: str | None = None,
    parent_run_id: str | None = None,
    deadline_at: float | None = None,
    caused_by: str | None = None,
    debounce_key: str | None = None,
    rate_key: str | None = None,
) -> Event:
    data = TaskCreated(
        name=name,
        args=args,
        kwargs=kwargs,
        policy=msgspec.to_builtins(policy),
        options=msgspec.to_builtins(options),
        idempotency_key=idempotency_key,
        concurrency_key=concurrency_key,
    )
    if rerun_of is not None:
        data["rerun_of"] = rerun_of
    if parent_run_id is not None:
        data["parent_run_id"] = parent_run_id
    if deadline_at is not None:
        data["deadline_at"] = deadline_at
    if caused_by is not None:
        data["caused_by"] = caused_by
    if debounce_key is not None:
        data["debounce_key"] = debounce_key
    if rate_key is not None:
        data["rate_key"] = rate_key
    return event(
        TASK_CREATED,
        at,
        task_id=task_id,
        correlation_id=correlation_id,
        execution_id=execution_id,
        data=_data(data),
    )


def task_canceled(task: Task, at: float, reason: str) -> Event:
    return event(
        TASK_CANCELED,
        at,
        task_id=task.task_id,
        correlation_id=task.correlation_id,
        execution_id=task.execution_id,
        data=_data(TaskCanceled(reason=reason)),
    )


def run_created(
    task: Task, run_id: str, at: float, scheduled_at: float, rerun_of: str | None
) -> Event:
    data = RunCreated(
        state="scheduled",
        scheduled_at=scheduled_at,
        index=task.derived,
        priority=task.options.priority,
        queue=task.options.queue,
        concurrency_key=task.concurrency_key,
    )
    if rerun_of is not None:
        data["rerun_of"] = rerun_of
    return event(
        RUN_CREATED,
        at,
        task_id=task.task_id,
        run_id=run_id,
        correlation_id=task.correlation_id,
        # a workflow without an execution id of its own is identified by its run id
        execution_id=task.execution_id or (run_id if task.options.workflow else None),
        data=_data(data),
    )


def state_changed(
    run: Run,
    to: str,
    at: float,
    reason: str,
    *,
    due_at: float | None = None,
    error: str | None = None,
) -> Event:
    data: StateChanged = {"from": run.state, "to": to, "reason": reason}
    if due_at is not None:
        data["due_at"] = due_at
    if error is not None:
        data["error"] = error
    return _about(run, RUN_STATE_CHANGED, at, None, data)


def attempt_started(run: Run, at: float, attempt_id: str, *, number: int, worker: str) -> Event:
    data: AttemptStarted = {"number": number, "worker": worker}
    return _about(run, ATTEMPT_STARTED, at, attempt_id, data)


def attempt_finished(
    run: Run,
    at: float,
    attempt_id: str,
    *,
    result: str,
    error: str | None,
    output: Any,
    traceback: str | None = None,
    failure_class: str | None = None,
    retry_class: str | None = None,
) -> Event:
    data: AttemptFinished = {"result": result, "error": error, "output": output}
    if traceback:
        data["traceback"] = traceback
    if failure_class is not None:
        data["failure_class"] = failure_class
    if retry_class is not None:
        data["retry_class"] = retry_class
    return _about(run, ATTEMPT_FINISHED, at, attempt_id, data)


def lease(type: str, run: Run, at: float, owner: str, expires_at: float | None = None) -> Event:
    """``lease.acquired`` / ``lease.renewed`` (with ``expires_at``), ``lease.expired`` /
    ``lease.released`` (without)."""
    data: Lease = {"owner": owner}
    if expires_at is not None:
        data["expires_at"] = expires_at
    return _about(run, type, at, None, data)


def engine_paused(at: float, paused: bool) -> Event:
    return event(ENGINE_PAUSED if paused else ENGINE_RESUMED, at)


def run_debounced(
    run: Run,
    at: float,
    *,
    args: list[Any],
    kwargs: dict[str, Any],
    due_at: float,
    concurrency_key: str | None,
    rate_key: str | None,
    idempotency_key: str | None = None,
    first: tuple[list[Any], dict[str, Any]] | None = None,
) -> Event:
    """Another submission collapsed into ``run`` (debounce): its arguments win, and with
    them the concurrency key and rate limit account they resolve to (in the data only when
    they change), and the run comes due at ``due_at``. ``idempotency_key``: the
    submission's own, kept for its retries; ``first``: the arguments of the task's first
    submission, kept for the retries of the task's key, once they are replaced."""
    data: dict[str, Any] = {"args": args, "kwargs": kwargs, "due_at": due_at}
    if concurrency_key != run.concurrency_key:
        data["concurrency_key"] = concurrency_key
    if rate_key != run.rate_key:
        data["rate_key"] = rate_key
    if idempotency_key is not None:
        data["idempotency_key"] = idempotency_key
    if first is not None:
        data["first"] = {"args": first[0], "kwargs": first[1]}
    return _about(run, RUN_DEBOUNCED, at, None, data)


def queue_paused(at: float, queue: str, paused: bool) -> Event:
    return event(QUEUE_PAUSED if paused else QUEUE_RESUMED, at, data={"queue": queue})


def worker_registered(
    at: float,
    *,
    worker_id: str,
    host: str,
    pid: int,
    queues: list[str] | None,
    tasks: list[str],
    concurrency: int,
    expires_at: float,
) -> Event:
    data = WorkerRegistered(
        worker_id=worker_id,
        host=host,
        pid=pid,
        queues=queues,
        tasks=tasks,
        concurrency=concurrency,
        expires_at=expires_at,
    )
    return event(WORKER_REGISTERED, at, data=_data(data))


def worker_heartbeat(at: float, worker_id: str, expires_at: float) -> Event:
    data = WorkerHeartbeat(worker_id=worker_id, expires_at=expires_at)
    return event(WORKER_HEARTBEAT, at, data=_data(data))


def worker_gone(type: str, at: float, worker_id: str, last_seen_at: float | None = None) -> Event:
    """``worker.left`` (a clean stop) or ``worker.expired`` (with ``last_seen_at``)."""
    data = WorkerGone(worker_id=worker_id)
    if last_seen_at is not None:
        data["last_seen_at"] = last_seen_at
    return event(type, at, data=_data(data))


# -- workflows -------------------------------------------------------------------------------
def step_started(run: Run, at: float, number: int, name: str) -> Event:
    return _about(run, STEP_STARTED, at, None, StepStarted(number=number, name=name))


def step_ended(run: Run, at: float, step: StepRecord, will_retry: bool = False) -> Event:
    """``step.completed`` or ``step.failed`` of ``step`` (as the reducer will store it)."""
    if step.state == "completed":
        done = StepCompleted(
            number=step.number,
            name=step.name,
            output=step.output,
            attempts=step.attempts,
            started_at=step.started_at,
        )
        return _about(run, STEP_COMPLETED, at, None, done)
    failed = StepFailed(
        number=step.number,
        name=step.name,
        error=step.error or "",
        error_type=step.error_type,
        will_retry=will_retry,
        attempts=step.attempts,
        started_at=step.started_at,
    )
    if step.error_args is not None:
        failed["error_args"] = step.error_args
    if step.error_attrs is not None:
        failed["error_attrs"] = step.error_attrs
    if step.waits_before is not None:
        failed["waits"] = step.waits_before
    return _about(run, STEP_FAILED, at, None, failed)


def wait_started(run: Run, at: float, wait: WaitRecord) -> Event:
    """``sleep.started`` for a sleep, else ``wait.started`` (data ``for``: the kind)."""
    if wait.kind == "sleep":
        assert wait.until is not None
        return _about(
            run, SLEEP_STARTED, at, None, SleepStarted(number=wait.number, until=wait.until)
        )
    data: WaitStarted = {"number": wait.number, "until": wait.until}
    if wait.name is not None:
        data["name"] = wait.name
    if wait.children:
        data["children"] = list(wait.children)
    out = _data(data)
    out["for"] = wait.kind  # ("for" is a keyword)
    return _about(run, WAIT_STARTED, at, None, out)


def wait_completed(run: Run, at: float, wait: WaitRecord, timed_out: bool) -> Event:
    if wait.kind == "sleep":
        return _about(run, SLEEP_COMPLETED, at, None, {"number": wait.number})
    data = WaitCompleted(number=wait.number, timed_out=timed_out)
    return _about(run, WAIT_COMPLETED, at, None, data)


def signal_sent(
    run: Run, at: float, signal_id: str, name: str, payload: Any, idempotency_key: str | None
) -> Event:
    data = SignalSent(
        signal_id=signal_id, name=name, payload=payload, idempotency_key=idempotency_key
    )
    return _about(run, SIGNAL_SENT, at, None, data)


def signal_received(run: Run, at: float, signal_id: str, name: str, wait_id: str) -> Event:
    data = SignalReceived(signal_id=signal_id, name=name, wait_id=wait_id)
    return _about(run, SIGNAL_RECEIVED, at, None, data)


# -- messages ---------------------------------------------------------------------------------
def message_published(at: float, msg: MessageRecord, run: Run | None) -> Event:
    """A message, published at ``at`` (inside a handler: ``run``, the publishing run)."""
    data = MessagePublished(
        topic=msg.topic,
        sequence=msg.sequence,
        event_id=msg.event_id,
        payload=msg.payload,
        causation_id=msg.causation_id,
    )
    if run is not None:
        ev = _about(run, MESSAGE_PUBLISHED, at, None, data)
        ev.correlation_id = msg.correlation_id
        return ev
    return event(MESSAGE_PUBLISHED, at, correlation_id=msg.correlation_id, data=_data(data))


def receipt_recorded(run: Run, at: float, receipt: ReceiptRecord) -> Event:
    data = ReceiptRecorded(
        subscriber=receipt.subscriber,
        event_id=receipt.event_id,
        status=receipt.status,
        failure_class=receipt.failure_class,
        retry_class=receipt.retry_class,
        topic=receipt.topic,
        sequence=receipt.sequence,
        attempt=receipt.attempt,
        output=receipt.output,
    )
    return _about(run, RECEIPT_RECORDED, at, None, data)


def transaction_recorded(
    run: Run,
    at: float,
    attempt_id: str,
    number: int,
    name: str,
    args: Any,
    output: Any,
    step: int | None = None,
) -> Event:
    data = TransactionRecorded(number=number, name=name, args=args, output=output)
    if step is not None:
        data["step"] = step
    return _about(run, TRANSACTION_RECORDED, at, attempt_id, data)


# -- retention ---------------------------------------------------------------------------------
def log_compacted(at: float, snapshot_seq: int) -> Event:
    """A snapshot of the whole state at ``snapshot_seq`` is complete: the log up to it may
    go (engine/compaction.py). The state does not change."""
    return event(LOG_COMPACTED, at, data={"snapshot_seq": snapshot_seq})


def run_pruned(run: Run, at: float, records: dict[str, list[str]] | None = None) -> Event:
    """A terminal run removed from the state (retention), with the records that were its
    own (``records``: keys by kind: its steps, waits, signals, calls, receipt, execution);
    its events stay in the log."""
    data: dict[str, Any] = {"state": run.state}
    if records:
        data["records"] = records
    return _about(run, RUN_PRUNED, at, None, data)


def task_pruned(task: Task, at: float) -> Event:
    """A task that derives nothing more and has no run left, removed from the state."""
    return event(
        TASK_PRUNED,
        at,
        task_id=task.task_id,
        correlation_id=task.correlation_id,
        execution_id=task.execution_id,
    )
