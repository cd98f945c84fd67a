"""The records the reducer builds: tasks, runs, attempts, definitions, the engine flag.

These are the projection's meaning. Stores persist them; the reducer alone changes them.
Times are float seconds since the Unix epoch (UTC); the facade turns them into datetimes.

The records a worker turn makes by the thousand (tasks, their options and policies, runs,
attempts, events) are declared ``gc=False``: they hold data and never a reference back to
what holds them, so they form no cycle, and the cycle collector need not track them (it
would walk every one of them at each collection).
"""

from __future__ import annotations

from typing import Any

import msgspec


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """How long a run waits in ``retry_wait`` before its next attempt.

    Build one with ``Backoff.fixed(seconds)`` or ``Backoff.exponential(...)``.
    """

    kind: str = "exponential"  # "fixed" | "exponential"
    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: bool = True

    @classmethod
    def fixed(cls, seconds: float) -> Backoff:
        from .clock import seconds as _secs

        s = _secs(seconds, "Backoff.fixed seconds")
        assert s is not None
        return cls(kind="fixed", initial=s, factor=1.0, maximum=s, jitter=False)

    @classmethod
    def exponential(
        cls,
        initial: float = 1.0,
        factor: float = 2.0,
        maximum: float = 300.0,
        jitter: bool = True,
    ) -> Backoff:
        from .clock import seconds as _secs
        from .errors import InvalidSchedule

        i = _secs(initial, "Backoff initial")
        m = _secs(maximum, "Backoff maximum")
        assert i is not None and m is not None
        if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 1:
            raise InvalidSchedule(f"Backoff factor must be a number >= 1, got {factor!r}")
        if m < i:
            raise InvalidSchedule(f"Backoff maximum ({m}) must be >= initial ({i})")
        return cls(kind="exponential", initial=i, factor=float(factor), maximum=m, jitter=jitter)


class RateLimit(msgspec.Struct, frozen=True):
    """``ms.RateLimit(count, per=seconds, key=None)``: at most ``count`` attempts of a task
    (per ``key``) start in any window of ``per`` seconds, across processes and machines.
    ``key``: a string, a ``"{param}"`` template or a callable of the arguments, resolved
    per submission, like ``concurrency_key``."""

    count: int
    per: float
    key: Any = None


class TaskOptions(msgspec.Struct, kw_only=True, gc=False):
    """The effective options of a task, written into it when it is submitted."""

    max_attempts: int = 1
    backoff: Backoff = msgspec.field(default_factory=Backoff)
    timeout: float | None = None
    concurrency_key: str | None = None  # the template, as declared (resolved per run)
    concurrency_limit: int = 1
    key_policy: str = "hold"
    priority: int = 0
    queue: str = "default"
    max_lost: int = 5
    workflow: bool = False  # an ``@app.workflow``: replayed from the top on every attempt
    rate_limit: RateLimit | None = None
    topic: str | None = None  # an ``@app.subscriber``: the topic pattern it receives
    ordered: bool = False  # ... one message at a time, in sequence order


#: The ``due_at`` of a suspended run that waits for no time (resumed, signaled or woken by
#: a child only): later than any clock reading, so promotion never takes it.
NEVER = 1e18
#: The largest ``seq`` a store holds (a 64-bit signed integer in both stores).
MAX_SEQ = 2**63 - 1

#: how late (seconds) the overdue occurrence of a cron task may still run under misfire="skip"
MISFIRE_GRACE_SECONDS = 1.0


class Policy(msgspec.Struct, kw_only=True, gc=False):
    """How a task derives its runs."""

    kind: str = "once"  # "once" | "repeat" | "cron"
    count: int | None = None  # repeat
    every: float | None = None  # repeat
    start_at: float | None = None  # first occurrence (once/repeat) or cron origin
    cron: str | None = None
    tz: str = "UTC"
    misfire: str = "catch_up"  # "catch_up" | "skip" | "coalesce"
    misfire_grace: float = MISFIRE_GRACE_SECONDS
    max_occurrences: int | None = None

    def same_intent(self, other: Policy) -> bool:
        """Do two submissions under one idempotency key ask for the same runs? Once: yes
        (a delay is not compared: it is relative to each submission); repeat: the same
        count and interval; cron: the same expression, time zone and misfire."""
        if self.kind != other.kind:
            return False
        if self.kind == "repeat":
            return (self.count, self.every) == (other.count, other.every)
        if self.kind == "cron":
            return (self.cron, self.tz, self.misfire) == (other.cron, other.tz, other.misfire)
        return True

    def describe(self) -> str:
        """The policy in a few words: ``once``, ``repeat 6 every 1800 s``, ``cron */5 * * * * UTC``."""
        if self.kind == "repeat":
            return f"repeat {self.count} every {self.every:g} s"
        if self.kind == "cron":
            return f"cron {self.cron} {self.tz} misfire={self.misfire}"
        return "once"


class Task(msgspec.Struct, kw_only=True, gc=False):
    task_id: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    policy: Policy
    options: TaskOptions
    idempotency_key: str | None = None
    execution_id: str | None = None
    correlation_id: str | None = None
    concurrency_key: str | None = None  # resolved key shared by the task's runs
    created_at: float = 0.0
    canceled: bool = False
    derived: int = 0  # runs derived so far
    cursor: float | None = None  # scheduled_at of the latest derived occurrence
    parent_run_id: str | None = None  # the workflow run that started this task's run
    deadline_at: float | None = None  # past it, a run not yet terminal is canceled
    caused_by: str | None = None  # the run whose handler submitted it
    debounce_key: str | None = None  # submissions with this key collapse into its run
    rate_key: str | None = None  # its runs' rate limit account (task name, resolved key)


class Attempt(msgspec.Struct, kw_only=True, gc=False):
    attempt_id: str
    number: int
    started_at: float
    worker: str | None = None
    result: str | None = None
    error: str | None = None
    finished_at: float | None = None
    failure_class: str | None = None
    retry_class: str | None = None


class Run(msgspec.Struct, kw_only=True, gc=False):
    run_id: str
    task_id: str
    task_name: str
    state: str
    scheduled_at: float
    due_at: float  # when a scheduled / retry_wait run becomes ready
    created_at: float
    index: int = 0  # occurrence number within its task (0-based)
    priority: int = 0
    queue: str = "default"
    concurrency_key: str | None = None
    concurrency_limit: int = 1
    key_policy: str = "hold"
    holds_key: bool = False
    idempotency_key: str | None = None
    execution_id: str | None = None
    correlation_id: str | None = None
    output: Any = None
    error: str | None = None
    reason: str | None = None  # reason of the latest state change
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    updated_at: float = 0.0
    rerun_of: str | None = None  # the run this one reruns (``RunHandle.rerun``)
    workflow: bool = False
    parent_run_id: str | None = None  # the workflow run that started this one
    children: list[str] = msgspec.field(default_factory=list)  # runs this workflow started
    waiting: str | None = None  # the wait_id of the sleep or wait it is suspended in
    deadline_at: float | None = None
    delivery: str | None = None  # a subscriber's run: the event_id of the message it handles
    caused_by: str | None = None  # the run whose handler submitted it
    rate_key: str | None = None  # the rate limit account its attempts' starts count in

    def open_attempt(self) -> Attempt | None:
        if self.attempts and self.attempts[-1].finished_at is None:
            return self.attempts[-1]
        return None


class WorkerRecord(msgspec.Struct, kw_only=True):
    """A worker registered in the store (record kind ``workers``): live while it heartbeats.

    ``queues`` None: every queue. ``expires_at``: past it without a heartbeat the worker is
    gone, and the next worker to heartbeat removes the record (``worker.expired``)."""

    worker_id: str
    host: str
    pid: int
    queues: list[str] | None
    tasks: list[str]
    concurrency: int
    started_at: float
    last_seen_at: float
    expires_at: float


class StepRecord(msgspec.Struct, kw_only=True):
    """One recorded step of a workflow run (record kind ``steps``): a step function, an
    ``ms.step`` call, a child submission or a ``ms.patched`` marker, by call order."""

    step_id: str  # step_key(run_id, number)
    run_id: str
    number: int
    name: str
    state: str  # "completed" | "failed"
    output: Any = None
    error: str | None = None  # "<type>: <message>" of a failed step
    error_type: str | None = None  # module:qualname of the exception it raised
    error_args: list[Any] | None = None  # its args, to raise it again on replay
    error_attrs: dict[str, Any] | None = None  # its attributes (an __init__ that sets its own)
    attempts: int = 1
    started_at: float = 0.0
    finished_at: float = 0.0
    #: of a failed step: how many waits (sleeps, signal and child waits) its workflow had
    #: begun by then; a later wait means the workflow went on past the failure
    waits_before: int | None = None


class WaitRecord(msgspec.Struct, kw_only=True):
    """A durable sleep or wait of a workflow run (record kind ``waits``), by call order."""

    wait_id: str  # wait_key(run_id, number)
    run_id: str
    number: int
    kind: str  # "sleep" | "signal" | "child"
    until: float | None = None  # wake time (sleep) or timeout (signal)
    name: str | None = None  # the signal waited for
    children: list[str] = msgspec.field(default_factory=list)  # the runs waited for
    state: str = "waiting"  # | "completed"
    timed_out: bool = False
    payload: Any = None  # the signal received
    signal_id: str | None = None
    started_at: float = 0.0
    finished_at: float | None = None


class SignalRecord(msgspec.Struct, kw_only=True):
    """A signal sent to a workflow run (record kind ``signals``), numbered per run in the
    order sent; received by at most one wait."""

    signal_id: str  # signal_key(run_id, number)
    run_id: str
    number: int
    name: str
    payload: Any = None
    idempotency_key: str | None = None
    sent_at: float = 0.0
    received_by: str | None = None  # the wait_id that received it


class ExecutionRecord(msgspec.Struct, kw_only=True):
    """A workflow instance by its execution id (record kind ``executions``): one per id."""

    execution_id: str
    run_id: str
    task_id: str


class DeadlineRecord(msgspec.Struct, kw_only=True):
    """A run with a deadline still to enforce (record kind ``deadlines``)."""

    run_id: str
    at: float


class MessageRecord(msgspec.Struct, kw_only=True):
    """A published message (record kind ``messages``), numbered per topic."""

    event_id: str
    topic: str
    sequence: int
    payload: Any = None
    correlation_id: str | None = None
    causation_id: str | None = None  # the run that published it
    published_at: float = 0.0


class TopicRecord(msgspec.Struct, kw_only=True):
    """A topic's counter (record kind ``topics``): its last sequence number and time."""

    topic: str
    last_sequence: int = 0
    last_at: float = 0.0


class ReceiptRecord(msgspec.Struct, kw_only=True):
    """How a subscriber's handling of a message ended (record kind ``receipts``): one per
    (subscriber, event_id), create-only."""

    receipt_id: str  # receipt_key(subscriber, event_id)
    subscriber: str
    event_id: str
    topic: str
    sequence: int  # the subscriber's own count of receipts, from 1
    status: str  # "delivered" | "failed" | "skipped"
    run_id: str
    attempt: int
    output: Any = None
    failure_class: str | None = None
    retry_class: str | None = None
    recorded_at: float = 0.0


class SubscriberRecord(msgspec.Struct, kw_only=True):
    """A subscriber's receipt counter (record kind ``subscribers``)."""

    name: str
    receipts: int = 0


class CallRecord(msgspec.Struct, kw_only=True):
    """The receipt of one ``@app.transaction`` call of a run (record kind ``calls``):
    written in the transaction of the call's own writes, create-only."""

    call_id: str  # call_key(run_id, number, step)
    run_id: str
    number: int
    name: str
    #: the workflow step whose try made the call (its calls are numbered within the step,
    #: since a step that replays runs none of them); None: the handler's own calls
    step: int | None = None
    args: Any = None  # the call's arguments, as plain data (a call with others is refused)
    output: Any = None
    recorded_at: float = 0.0


class DebounceRecord(msgspec.Struct, kw_only=True):
    """The run a debounce key's submissions collapse into (record kind ``debounces``),
    while it has not started."""

    key: str  # debounce_key_of(task name, debounce key)
    run_id: str
    task_id: str
    first_at: float  # when the first of the collapsed submissions came


def debounce_key_of(task_name: str, key: str) -> str:
    return f"{task_name} {key}"


class IdempotencyRecord(msgspec.Struct, kw_only=True):
    """A submission that names no task of its own (record kind ``idempotency``): one that
    collapsed into a debounced run, or the first submission of that run's task once a later
    one replaced its arguments. Its retry returns the run when its arguments are its own."""

    key: str  # idempotency_key_of(task name, idempotency key)
    run_id: str
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]


def idempotency_key_of(task_name: str, key: str) -> str:
    """(a JSON pair: a task name may hold any character but NUL, as a key may)"""
    return msgspec.json.encode([task_name, key]).decode()


class RateRecord(msgspec.Struct, kw_only=True):
    """A rate limit's account (record kind ``rates``): the start times of the latest
    attempts counted in it (at most ``count`` of them)."""

    key: str
    starts: list[float] = msgspec.field(default_factory=list)


class QueueRecord(msgspec.Struct, kw_only=True):
    """A queue's flag (record kind ``queues``): paused since ``paused_at``, or not."""

    name: str
    paused_at: float | None = None


def call_key(run_id: str, number: int, step: int | None = None) -> str:
    if step is None:
        return f"{run_id}/c{number:06d}"
    return f"{run_id}/s{step:06d}c{number:06d}"


def receipt_key(subscriber: str, event_id: str) -> str:
    return f"{subscriber} {event_id}"


#: The concurrency keys of ``ordered=True`` subscribers' deliveries: one at a time, and
#: only the first ready one (engine/turn.py ``_lease``).
ORDERED_KEYS = "ordered:"


def ordered_key(subscriber: str) -> str:
    return f"{ORDERED_KEYS}{subscriber}"


def step_key(run_id: str, number: int) -> str:
    return f"{run_id}/{number:06d}"


def wait_key(run_id: str, number: int) -> str:
    return f"{run_id}/w{number:06d}"


def signal_key(run_id: str, number: int) -> str:
    return f"{run_id}/s{number:08d}"


class Event(msgspec.Struct, kw_only=True, gc=False):
    """One entry of the log. ``seq`` is assigned by the store when it is appended."""

    type: str
    at: float
    event_id: str
    seq: int = 0
    task_id: str | None = None
    run_id: str | None = None
    attempt_id: str | None = None
    correlation_id: str | None = None
    execution_id: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
