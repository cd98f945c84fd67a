"""The user-facing facade: App, the task decorator, handles and the query records."""

from __future__ import annotations

import contextlib
import functools
import inspect
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar

import msgspec

from .core.clock import Clock, from_datetime, seconds, to_datetime
from .core.codec import to_plain
from .core.errors import InvalidSchedule, RunCanceled, RunFailed, UnknownRun
from .core.model import MISFIRE_GRACE_SECONDS, Backoff, Event, Policy, Run, TaskOptions
from .core.states import AttemptResult, RunState
from .engine import Engine, SubmitRequest
from .store import open_store
from .worker import Worker

P = ParamSpec("P")
R = TypeVar("R")

KEY_POLICIES = ("hold", "release")


# -- records returned by queries -------------------------------------------------------------
class AttemptInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a run."""

    attempt_id: str
    number: int
    result: AttemptResult | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None


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


def _run_info(r: Run) -> RunInfo:
    return RunInfo(
        run_id=r.run_id,
        task_id=r.task_id,
        task_name=r.task_name,
        state=RunState(r.state),
        scheduled_at=to_datetime(r.scheduled_at),  # type: ignore[arg-type]
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
                started_at=to_datetime(a.started_at),  # type: ignore[arg-type]
                finished_at=to_datetime(a.finished_at),
            )
            for a in r.attempts
        ],
    )


def _log_event(e: Event) -> LogEvent:
    return LogEvent(
        seq=e.seq,
        event_id=e.event_id,
        type=e.type,
        at=to_datetime(e.at),  # type: ignore[arg-type]
        task_id=e.task_id,
        run_id=e.run_id,
        attempt_id=e.attempt_id,
        correlation_id=e.correlation_id,
        execution_id=e.execution_id,
        data=_times_of(e.data),
    )


def _times_of(data: dict[str, Any]) -> dict[str, Any]:
    """Event data with its times (``..._at`` keys, at the top and in ``policy``) as aware
    UTC datetimes, like every other time of the API; the log stores Unix seconds. What
    handlers gave (``args``, ``kwargs``, ``output``) is left exactly as it is."""

    def convert(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            k: to_datetime(v)
            if k.endswith("_at") and isinstance(v, int | float) and not isinstance(v, bool)
            else v
            for k, v in doc.items()
        }

    out = convert(data)
    if isinstance(out.get("policy"), dict):
        out["policy"] = convert(out["policy"])
    return out


# -- handles ------------------------------------------------------------------------------------
class RunHandle:
    """A submitted run."""

    def __init__(self, app: App, run_id: str, task_id: str) -> None:
        self.app = app
        self.run_id = run_id
        self.task_id = task_id

    def __repr__(self) -> str:
        return f"RunHandle(run_id={self.run_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunHandle) and other.run_id == self.run_id

    def __hash__(self) -> int:
        return hash(self.run_id)

    def info(self) -> RunInfo:
        """The run as stored now (a RunInfo)."""
        return self.app.get_run(self.run_id)

    def status(self) -> RunState:
        """The run's current state."""
        return RunState(self.app.engine.get_run(self.run_id).state)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run to end; its output, or RunFailed / RunCanceled / TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        waiter = self.app.store.ended_waiter()  # woken by the commit that ends the run
        if waiter is not None:
            waiter.clear()  # what piled up while nobody waited: a full buffer drops news
        while True:
            run = self.app.engine.get_run(self.run_id)
            if run.state == RunState.COMPLETED:
                return run.output
            if run.state == RunState.FAILED:
                raise RunFailed(
                    f"run {self.run_id} of {run.task_name} failed ({run.reason}): {run.error}",
                    run=_run_info(run),
                )
            if run.state == RunState.CANCELED:
                raise RunCanceled(
                    f"run {self.run_id} of {run.task_name} was canceled", run=_run_info(run)
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"run {self.run_id} is still {run.state} after {timeout} s; is a worker running "
                    f"that registers task {run.task_name!r}?"
                )
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            if waiter is None:
                time.sleep(pause)
            elif waiter.wait_for(self.run_id, pause):
                continue  # its commit is in: read it now, and keep the poll where it was
            # with a waiter every committer tells, the poll is only a safety net
            delay = min(delay * 1.25, 0.25 if waiter is not None and waiter.heard else 0.025)

    def cancel(self) -> bool:
        """Cancel the run; False when it already ended."""
        return self.app.engine.cancel_run(self.run_id)

    def resume(self) -> bool:
        """Move a suspended run back to ready; False when it is not suspended."""
        return self.app.engine.resume_run(self.run_id)

    def history(self) -> list[LogEvent]:
        """Every log event of this run, in order."""
        return self.app.log(run_id=self.run_id, limit=1_000_000)


class TaskHandle:
    """A submitted task (its runs are derived from its policy)."""

    def __init__(self, app: App, task_id: str, run_ids: Sequence[str] = ()) -> None:
        self.app = app
        self.task_id = task_id
        self._first_runs = list(run_ids)

    def __repr__(self) -> str:
        return f"TaskHandle(task_id={self.task_id!r})"

    def runs(self) -> list[RunInfo]:
        """Every run this task derived so far, by scheduled time."""
        with self.app.store.read() as tx:
            return [
                _run_info(r) for r in tx.query_runs(None, None, 1_000_000, task_id=self.task_id)
            ]

    def cancel(self) -> bool:
        """Cancel the task and its non-terminal runs; False if already canceled."""
        return self.app.engine.cancel_task(self.task_id)


# -- tasks --------------------------------------------------------------------------------------
def _default_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _options(
    *,
    max_attempts: int = 1,
    backoff: Backoff | None = None,
    timeout: float | timedelta | None = None,
    concurrency_key: str | Callable[..., str] | None = None,
    concurrency_limit: int = 1,
    key_policy: str = "hold",
    priority: int = 0,
    queue: str = "default",
    max_lost: int = 5,
) -> TaskOptions:
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise InvalidSchedule(f"max_attempts must be an int >= 1, got {max_attempts!r}")
    if isinstance(max_lost, bool) or not isinstance(max_lost, int) or max_lost < 1:
        raise InvalidSchedule(f"max_lost must be an int >= 1, got {max_lost!r}")
    if (
        isinstance(concurrency_limit, bool)
        or not isinstance(concurrency_limit, int)
        or concurrency_limit < 1
    ):
        raise InvalidSchedule(f"concurrency_limit must be an int >= 1, got {concurrency_limit!r}")
    if key_policy not in KEY_POLICIES:
        raise InvalidSchedule(f"key_policy must be 'hold' or 'release', got {key_policy!r}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidSchedule(f"priority must be an int, got {priority!r}")
    _queue(queue)
    if backoff is not None and not isinstance(backoff, Backoff):
        raise InvalidSchedule(
            "backoff must be ms.Backoff.fixed(...) or ms.Backoff.exponential(...)"
        )
    t = seconds(timeout, "timeout")
    if t is not None and t <= 0:
        raise InvalidSchedule(f"timeout must be > 0 seconds, got {timeout!r}")
    return TaskOptions(
        max_attempts=max_attempts,
        backoff=backoff if backoff is not None else Backoff(),
        timeout=t,
        concurrency_key=concurrency_key if isinstance(concurrency_key, str) else None,
        concurrency_limit=concurrency_limit,
        key_policy=key_policy,
        priority=priority,
        queue=queue,
        max_lost=max_lost,
    )


def _queue(queue: Any) -> str:
    if not isinstance(queue, str) or not queue:
        raise InvalidSchedule(f"queue must be a non-empty string, got {queue!r}")
    return queue


def _task_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidSchedule(f"a task name must be a non-empty string, got {name!r}")
    return name


class _Submitter:
    """``task.with_options(...)``: per-submission overrides (a TaskFunction is one with none)."""

    def __init__(self, task: TaskFunction[Any, Any], **overrides: Any) -> None:
        self.task = task
        self.overrides = overrides

    def submit(self, *args: Any, **kwargs: Any) -> RunHandle:
        return self.task._submit(args, kwargs, **self.overrides)

    def repeat(
        self,
        count: int,
        every: float | timedelta,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> TaskHandle:
        return self.task._repeat(count, every, args, kwargs, **self.overrides)

    def schedule(
        self,
        cron: str,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        misfire: str = "catch_up",
        max_occurrences: int | None = None,
        misfire_grace: float = MISFIRE_GRACE_SECONDS,
    ) -> TaskHandle:
        return self.task._schedule(
            cron, tz, args, kwargs, misfire, max_occurrences, misfire_grace, **self.overrides
        )


_OVERRIDES = (
    "idempotency_key",
    "execution_id",
    "correlation_id",
    "delay",
    "run_at",
    "priority",
    "concurrency_key",
    "queue",
)


class TaskFunction(_Submitter, Generic[P, R]):
    """A handler registered with ``@app.task``. Call it to run it inline; ``submit`` to queue.

    ``repeat(count, every, args, kwargs)`` and ``schedule(cron, tz, args, kwargs, misfire,
    max_occurrences, misfire_grace)`` submit a task with a repeat or cron policy; both
    return a TaskHandle. Under ``misfire="skip"`` an occurrence runs only if a worker gets
    to it within ``misfire_grace`` seconds (default 1) of its time.
    """

    def __init__(
        self,
        app: App,
        fn: Callable[P, R],
        name: str,
        options: TaskOptions,
        key: str | Callable[..., str] | None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options
        self._key = key
        super().__init__(self)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<mainspring task {self.name!r}>"

    def definition(self) -> dict[str, Any]:
        """What the store records of this task for submissions by name (CLI, HTTP).

        The options, plus what a submitter without the handler needs to fill a
        ``"{param}"`` concurrency key template from positional arguments (``params``: the
        handler's positional parameters, in order), and whether the key is computed by a
        callable (``key_callable``), which only the handler's own code can run.
        """
        doc: dict[str, Any] = msgspec.to_builtins(self.options)
        try:
            parameters = inspect.signature(self.fn).parameters.values()
        except (TypeError, ValueError):  # a builtin or other callable without a signature
            parameters = []  # type: ignore[assignment]
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        doc["params"] = [p.name for p in parameters if p.kind in positional]
        if callable(self._key):
            doc["key_callable"] = True
        return doc

    def with_options(
        self,
        *,
        idempotency_key: str | None = None,
        execution_id: str | None = None,
        correlation_id: str | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
        queue: str | None = None,
    ) -> _Submitter:
        """Per-submission overrides; returns an object with submit/repeat/schedule."""
        return _Submitter(
            self,
            idempotency_key=idempotency_key,
            execution_id=execution_id,
            correlation_id=correlation_id,
            delay=delay,
            run_at=run_at,
            priority=priority,
            concurrency_key=concurrency_key,
            queue=queue,
        )

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> RunHandle:
        """Submit one run with these arguments (policy once); durable on return."""
        return self._submit(args, kwargs)

    # -- building requests ----------------------------------------------------------------------
    def _resolve_key(
        self, args: Sequence[Any], kwargs: dict[str, Any], override: str | None
    ) -> str | None:
        if override is not None and not isinstance(override, str):
            raise InvalidSchedule(f"concurrency_key must be a string, got {override!r}")
        key = override if override is not None else self._key
        if key is None:
            return None
        if callable(key):
            value = key(*args, **kwargs)
            if not isinstance(value, str):
                raise InvalidSchedule(
                    f"concurrency_key callable of {self.name} must return a str, got {value!r}"
                )
            return value
        if "{" in key:
            try:
                sig = inspect.signature(self.fn)
                bound = dict(sig.bind_partial(*args, **kwargs).arguments)
            except (TypeError, ValueError):
                bound = dict(kwargs)
            else:  # keyword arguments gathered by a ``**kwargs`` parameter fill it too
                for p in sig.parameters.values():
                    if p.kind is inspect.Parameter.VAR_KEYWORD:
                        bound.update(bound.pop(p.name, {}))
            try:
                return key.format(**bound)
            except (KeyError, IndexError, ValueError) as exc:
                raise InvalidSchedule(
                    f"concurrency_key template {key!r} of {self.name} cannot be filled from the "
                    f"arguments: missing {exc}"
                ) from None
        return key

    def request(
        self, args: Sequence[Any], kwargs: dict[str, Any], policy: Policy, **ov: Any
    ) -> SubmitRequest:
        """Build the engine's SubmitRequest (validates and encodes the arguments)."""
        plain_args = to_plain(list(args), f"the arguments of {self.name}")
        plain_kwargs = to_plain(dict(kwargs), f"the keyword arguments of {self.name}")
        if not isinstance(plain_kwargs, dict):
            raise InvalidSchedule("kwargs must be a dict")
        opts = self.options
        changes: dict[str, Any] = {}
        if ov.get("priority") is not None:
            if isinstance(ov["priority"], bool) or not isinstance(ov["priority"], int):
                raise InvalidSchedule(f"priority must be an int, got {ov['priority']!r}")
            changes["priority"] = ov["priority"]
        if ov.get("queue") is not None:
            changes["queue"] = _queue(ov["queue"])
        if changes:
            opts = msgspec.structs.replace(opts, **changes)
        return self.app._request(
            self.name,
            plain_args,
            plain_kwargs,
            opts,
            policy,
            concurrency_key=self._resolve_key(args, kwargs, ov.get("concurrency_key")),
            **{
                k: ov.get(k)
                for k in ("idempotency_key", "execution_id", "correlation_id", "delay", "run_at")
            },
        )

    def _submit(self, args: Sequence[Any], kwargs: dict[str, Any], **ov: Any) -> RunHandle:
        req = self.request(args, kwargs, Policy(kind="once"), **ov)
        sub = self.app.engine.submit(req)
        return RunHandle(self.app, sub.run_ids[0], sub.task_id)

    def _repeat(
        self,
        count: int,
        every: float | timedelta,
        args: Sequence[Any],
        kwargs: dict[str, Any] | None,
        **ov: Any,
    ) -> TaskHandle:
        ev = seconds(every, "every")
        policy = Policy(kind="repeat", count=count, every=ev)
        req = self.request(args, kwargs or {}, policy, **ov)
        sub = self.app.engine.submit(req)
        return TaskHandle(self.app, sub.task_id, sub.run_ids)

    def _schedule(
        self,
        cron: str,
        tz: str,
        args: Sequence[Any],
        kwargs: dict[str, Any] | None,
        misfire: str,
        max_occurrences: int | None,
        misfire_grace: float,
        **ov: Any,
    ) -> TaskHandle:
        grace = seconds(misfire_grace, "misfire_grace")
        policy = Policy(
            kind="cron",
            cron=cron,
            tz=tz,
            misfire=misfire,
            max_occurrences=max_occurrences,
            misfire_grace=grace if grace is not None else MISFIRE_GRACE_SECONDS,
        )
        req = self.request(args, kwargs or {}, policy, **ov)
        sub = self.app.engine.submit(req)
        return TaskHandle(self.app, sub.task_id, sub.run_ids)


# -- the app ------------------------------------------------------------------------------------
class App:
    """A mainspring application: a store, the tasks it declares, workers and queries."""

    def __init__(
        self,
        store: str | None = None,
        *,
        lease_seconds: float | timedelta = 30.0,
        clock: Clock | None = None,
    ) -> None:
        ls = seconds(lease_seconds, "lease_seconds")
        if ls is None or ls <= 0:
            raise InvalidSchedule(f"lease_seconds must be > 0, got {lease_seconds!r}")
        self.lease_seconds = ls
        self.store = open_store(store)
        self.engine = Engine(self.store, clock)
        self.tasks: dict[str, TaskFunction[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"App(store={self.store.display_url!r})"

    def close(self) -> None:
        """Close the store's connections."""
        self.store.close()

    def reopen(self, store: str) -> None:
        """Point this App at another store (the CLI's ``--store`` wins over a hard-coded URL).

        The new store is opened (created or migrated) and the declared task definitions are
        recorded in it; the old store is closed.
        """
        new = open_store(store)
        old = self.store
        self.store = new
        self.engine = Engine(new, self.engine.clock)
        for name, tf in self.tasks.items():
            self.engine.define(name, tf.definition())
        old.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- declaring tasks ------------------------------------------------------------------------
    def task(
        self,
        fn: Callable[P, R] | None = None,
        *,
        name: str | None = None,
        max_attempts: int = 1,
        backoff: Backoff | None = None,
        timeout: float | timedelta | None = None,
        concurrency_key: str | Callable[..., str] | None = None,
        concurrency_limit: int = 1,
        key_policy: str = "hold",
        priority: int = 0,
        queue: str = "default",
        max_lost: int = 5,
    ) -> Any:
        """Declare a handler. Use as ``@app.task`` or ``@app.task(max_attempts=3, ...)``."""

        def register(f: Callable[P, R]) -> TaskFunction[P, R]:
            if not callable(f):
                raise TypeError("@app.task decorates a function")
            opts = _options(
                max_attempts=max_attempts,
                backoff=backoff,
                timeout=timeout,
                concurrency_key=concurrency_key,
                concurrency_limit=concurrency_limit,
                key_policy=key_policy,
                priority=priority,
                queue=queue,
                max_lost=max_lost,
            )
            tname = _task_name(name) if name is not None else _default_name(f)
            tf: TaskFunction[P, R] = TaskFunction(self, f, tname, opts, concurrency_key)
            self.tasks[tname] = tf
            self.engine.define(tname, tf.definition())
            return tf

        if fn is not None:
            return register(fn)
        return register

    # -- submitting -------------------------------------------------------------------------------
    def _request(
        self,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        options: TaskOptions,
        policy: Policy,
        *,
        concurrency_key: str | None = None,
        idempotency_key: str | None = None,
        execution_id: str | None = None,
        correlation_id: str | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
    ) -> SubmitRequest:
        d = seconds(delay, "delay")
        if run_at is not None and d is not None:
            raise InvalidSchedule("give either delay or run_at, not both")
        start: float | None = None
        if run_at is not None:
            if not isinstance(run_at, datetime) or run_at.tzinfo is None:
                raise InvalidSchedule(f"run_at must be a timezone-aware datetime, got {run_at!r}")
            start = from_datetime(run_at)
        elif d is not None:
            start = self.engine.clock.now() + d
        if start is not None:
            policy = msgspec.structs.replace(policy, start_at=start)
        for what, v in (
            ("idempotency_key", idempotency_key),
            ("execution_id", execution_id),
            ("correlation_id", correlation_id),
        ):
            if v is not None and (not isinstance(v, str) or not v):
                raise InvalidSchedule(f"{what} must be a non-empty string, got {v!r}")
        return SubmitRequest(
            name=name,
            args=args,
            kwargs=kwargs,
            options=options,
            policy=policy,
            idempotency_key=idempotency_key,
            execution_id=execution_id,
            correlation_id=correlation_id,
            concurrency_key=concurrency_key,
        )

    def submit(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> RunHandle:
        """Submit a run of task ``name`` without its handler code (CLI, other services).

        Uses the options the declaring App recorded in the store (or the defaults).
        """
        unknown = set(overrides) - set(_OVERRIDES)
        if unknown:
            raise TypeError(f"unknown submit options: {', '.join(sorted(unknown))}")
        tf = self.tasks.get(_task_name(name))
        if tf is not None:
            return tf._submit(list(args), kwargs or {}, **overrides)
        definition = self.engine.definition(name) or {}
        opts = msgspec.convert(definition, TaskOptions) if definition else TaskOptions()
        if definition.get("key_callable") and overrides.get("concurrency_key") is None:
            raise InvalidSchedule(
                f"task {name!r} computes its concurrency key with a Python callable, which "
                "only its own code can run: submit it from Python, or give the key "
                "explicitly (concurrency_key=..., CLI: --concurrency-key K)"
            )

        def stand_in(*_args: Any, **_kwargs: Any) -> None:
            """The handler's positional parameters, so that key templates can be filled."""

        stand_in.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                for p in definition.get("params", [])
            ]
            + [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
        )
        proxy: TaskFunction[Any, Any] = TaskFunction(
            self, stand_in, name, opts, opts.concurrency_key
        )
        return proxy._submit(list(args), kwargs or {}, **overrides)

    def submit_many(
        self,
        task: TaskFunction[Any, Any] | str,
        calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
    ) -> list[RunHandle]:
        """Submit many runs of one task in a single transaction (batched enqueue)."""
        tf = self.tasks.get(task) if isinstance(task, str) else task
        if tf is None:
            raise UnknownRun(f"task {task!r} is not declared by this App")
        reqs = [tf.request(a, k, Policy(kind="once")) for a, k in calls]
        subs = self.engine.submit_many(reqs)
        return [RunHandle(self, s.run_ids[0], s.task_id) for s in subs]

    # -- queries ----------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunInfo:
        """The run with this id as stored now; raises UnknownRun."""
        return _run_info(self.engine.get_run(run_id))

    def run(self, run_id: str) -> RunHandle:
        """A RunHandle for an existing run id; raises UnknownRun."""
        r = self.engine.get_run(run_id)
        return RunHandle(self, r.run_id, r.task_id)

    def runs(
        self, state: RunState | str | None = None, task: str | None = None, limit: int = 100
    ) -> list[RunInfo]:
        """Runs, optionally of one state and/or task name, by scheduled time."""
        try:
            st = None if state is None else RunState(state).value
        except ValueError:
            raise InvalidSchedule(
                f"state must be one of {', '.join(RunState)}, got {state!r}"
            ) from None
        with self.store.read() as tx:
            return [_run_info(r) for r in tx.query_runs(st, task, limit)]

    def log(self, since: int = 0, run_id: str | None = None, limit: int = 1000) -> list[LogEvent]:
        """Log events with seq > ``since`` (optionally of one run), in commit order."""
        with self.store.read() as tx:
            return [_log_event(e) for e in tx.events(since, run_id, limit)]

    def stats(self) -> dict[str, int]:
        """The number of runs in each state."""
        with self.store.read() as tx:
            return tx.stats()

    def pause(self) -> bool:
        """Pause the engine: workers lease nothing. False if it was already paused."""
        return self.engine.set_paused(True)

    def resume(self) -> bool:
        """Resume a paused engine. False if it was not paused."""
        return self.engine.set_paused(False)

    def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Replay the log from empty and compare it with the stored state.

        ``progress(done, total)``, if given, hears how far the replay has come (events)."""
        problems = self.engine.verify(progress)
        return VerifyReport(ok=not problems, problems=problems)

    # -- workers -----------------------------------------------------------------------------------
    def _worker(
        self, concurrency: int, queues: Sequence[str] | None, grace_seconds: float
    ) -> Worker:
        if queues is None:
            queues = sorted({tf.options.queue for tf in self.tasks.values()})
        return Worker(
            self.engine,
            {n: tf.fn for n, tf in self.tasks.items()},
            concurrency=concurrency,
            queues=queues,
            lease_seconds=self.lease_seconds,
            grace_seconds=grace_seconds,
        )

    @contextlib.contextmanager
    def worker(
        self, concurrency: int = 8, queues: Sequence[str] | None = None, grace_seconds: float = 10.0
    ) -> Iterator[Worker]:
        """A worker running in background threads of this process while the block runs."""
        w = self._worker(concurrency, queues, grace_seconds).start()
        try:
            yield w
        finally:
            w.stop()

    def run_worker(
        self,
        concurrency: int = 8,
        grace_seconds: float = 10.0,
        queues: Sequence[str] | None = None,
        burst: bool = False,
    ) -> None:
        """Run a worker until SIGINT/SIGTERM.

        With ``burst``, stop once nothing is left that this worker could do (see
        ``Worker.run_until_done``): the store is idle as far as its tasks and queues go,
        or the engine is paused."""
        w = self._worker(concurrency, queues, grace_seconds)
        stop = threading.Event()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, frame: Any) -> None:
                stop.set()
                w.request_stop()

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        w.start()
        try:
            if burst:
                while not stop.is_set():
                    try:
                        w.run_until_done(timeout=0.25)
                        break
                    except TimeoutError:
                        continue
            else:
                while not stop.is_set():
                    stop.wait(0.5)
                    w.check()  # a crashed loop ends the process (a supervisor restarts it)
        finally:
            w.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
