"""The user-facing facade: ``ms.App``, where tasks are declared, submitted, run and queried.

An App does no I/O until it is used: creating it and declaring tasks only remember things.
The store is opened (created or migrated) on first use, or by ``app.open()`` / ``with
ms.App(...) as app``; opening it records the declared tasks' definitions, so that
submissions by name (CLI, HTTP) use the same options. ``app.close()`` releases it; the next
use opens it again.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, Unpack, overload

import msgspec

from . import telemetry
from ._app_messages import Messaging
from ._app_operations import Operations
from ._feed import LogFeed
from ._handles import RunHandle, TaskHandle
from ._messages import (
    subscriber_handler,
)
from ._records import (
    AttemptInfo,
    Explanation,
    LogEvent,
    QueueInfo,
    Reason,
    RunInfo,
    StepInfo,
    TaskInfo,
    VerifyReport,
    WorkerInfo,
    explanation,
    log_event,
    run_info,
    task_info,
    worker_info,
)
from ._task_options import (
    OVERRIDES,
    FailureOverrides,
    KeyPolicy,
    TaskOptionArgs,
    an_id,
    arguments,
    check_limit,
    check_overrides,
    default_name,
    failure_overrides,
    options,
    run_state_of,
    task_name,
)
from ._tasks import Submitter, TaskFunction, by_name, undeclared
from .bus import Bus
from .core.clock import Clock, SystemClock, seconds
from .core.codec import to_plain
from .core.errors import (
    InvalidArgument,
    InvalidSchedule,
    LogCompacted,
    refuses_bad_calls,
    refusing_bad_calls,
)
from .core.model import MAX_SEQ, Backoff, Policy, RateLimit, TaskOptions
from .core.states import RunState
from .engine import Engine
from .store.base import Store, open_store, resolve_url
from .worker import AttemptDone, Worker
from .worker.context import current as context_now
from .workflow import StepFunction, StepPolicy, workflow_handler

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "App",
    "AttemptInfo",
    "Explanation",
    "LogEvent",
    "QueueInfo",
    "Reason",
    "RunHandle",
    "RunInfo",
    "StepInfo",
    "Submitter",
    "TaskFunction",
    "TaskHandle",
    "TaskInfo",
    "VerifyReport",
    "WorkerInfo",
]


@refusing_bad_calls
class App(Messaging, Operations):
    """A mainspring application: a store, the tasks it declares, workers and queries."""

    def __init__(
        self,
        store: str | None = None,
        *,
        lease_seconds: float | timedelta = 30.0,
        max_payload_bytes: int = 1 << 20,
        clock: Clock | None = None,
        retention: float | timedelta | None = None,
    ) -> None:
        ls = seconds(lease_seconds, "lease_seconds", positive=True)
        if ls is None:
            raise InvalidSchedule("lease_seconds must be a number of seconds, got None")
        if (
            isinstance(max_payload_bytes, bool)
            or not isinstance(max_payload_bytes, int)
            or max_payload_bytes < 1
        ):
            raise InvalidArgument(
                f"max_payload_bytes must be an int >= 1, got {max_payload_bytes!r}"
            )
        if store is not None and (not isinstance(store, str) or not store):
            raise InvalidArgument(f"store must be a store URL, got {store!r}")
        keep = seconds(retention, "retention", positive=True)
        #: workers of this App prune runs that ended longer ago than this (``app.prune``)
        self.retention = keep
        self.lease_seconds = ls
        self.max_payload_bytes = max_payload_bytes
        self.clock: Clock = clock or SystemClock()
        #: the tasks this App declares, by name
        self.declared: dict[str, TaskFunction[Any, Any]] = {}
        self._url = store
        self._store: Store | None = None
        self._engine: Engine | None = None
        self._lock = threading.RLock()
        #: the in-process bus; every log event this App commits is published on it as
        #: ``log.<type>``, in commit order
        self.bus = Bus(max_payload_bytes=max_payload_bytes)
        self._feed = LogFeed(self.bus)

    def __repr__(self) -> str:
        return f"App(store={self.store_url!r})"

    # -- the store, opened on demand ------------------------------------------------------------
    @property
    def store_url(self) -> str:
        """The URL of the store: the one given, else ``MAINSPRING_STORE``, else the default."""
        return resolve_url(self._url)

    @property
    def store_given(self) -> str | None:
        """The store URL given to this App (``App(store)`` or ``set_store``); None when it
        resolves one from ``MAINSPRING_STORE`` or the default."""
        return self._url

    def set_store(self, url: str) -> None:
        """Point this App at another store; an open store is closed first, and the new
        one is opened on next use."""
        with self._lock:
            self.close()
            self._url = url

    def open(self, *, create: bool = True, migrate: bool | None = None) -> App:
        """Open the store (creating or migrating its schema) and record the declared tasks.

        Nothing happens when it is open already. With ``create=False`` a store that does
        not exist is refused (``StoreError`` naming it) instead of created: what read-only
        commands use. ``migrate=True`` migrates an older schema even where the URL says
        ``auto_migrate=false``; ``migrate=False`` refuses one."""
        with self._lock:
            if self._engine is None:
                store = open_store(self._url, create=create, migrate=migrate)
                try:
                    engine = Engine(store, self.clock)
                    engine.feed = self._feed
                    if self.declared:
                        engine.define_many({n: tf.definition() for n, tf in self.declared.items()})
                except BaseException:
                    store.close()
                    raise
                self._store, self._engine = store, engine
        return self

    def close(self) -> None:
        """Release the store's connections (the next use opens it again)."""
        with self._lock:
            store, self._store, self._engine = self._store, None, None
            if store is not None:
                store.close()

    @property
    def is_open(self) -> bool:
        return self._engine is not None

    @property
    def store(self) -> Store:
        """The open store (opened now if it is not)."""
        self.open()
        assert self._store is not None
        return self._store

    @property
    def engine(self) -> Engine:
        """The engine over the open store (opened now if it is not)."""
        engine = self._engine
        if engine is None:
            self.open()
            engine = self._engine
            assert engine is not None
        return engine

    def __enter__(self) -> App:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- declaring tasks ------------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[P, R], /) -> TaskFunction[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        max_attempts: int = 1,
        backoff: Backoff | None = None,
        timeout: float | timedelta | None = None,
        concurrency_key: str | Callable[..., str] | None = None,
        concurrency_limit: int = 1,
        key_policy: KeyPolicy = "hold",
        priority: int = 0,
        queue: str = "default",
        max_lost: int = 5,
        rate_limit: str | RateLimit | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        never_retry: tuple[type[BaseException], ...] = (),
    ) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        max_attempts: int = 1,
        backoff: Backoff | None = None,
        timeout: float | timedelta | None = None,
        concurrency_key: str | Callable[..., str] | None = None,
        concurrency_limit: int = 1,
        key_policy: KeyPolicy = "hold",
        priority: int = 0,
        queue: str = "default",
        max_lost: int = 5,
        rate_limit: str | RateLimit | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        never_retry: tuple[type[BaseException], ...] = (),
    ) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
        """Declare a handler. Use as ``@app.task`` or ``@app.task(max_attempts=3, ...)``.

        No I/O: the definition is recorded in the store when the App opens it (at once,
        when it is open already)."""
        opts = options(
            max_attempts=max_attempts,
            backoff=backoff,
            timeout=timeout,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            key_policy=key_policy,
            priority=priority,
            queue=queue,
            max_lost=max_lost,
            rate_limit=rate_limit,
        )
        overrides = failure_overrides(retry_on, never_retry)
        return self._declare(fn, name, opts, concurrency_key, overrides, "@app.task")

    def _declare(
        self,
        fn: Callable[P, R] | None,
        name: str | None,
        opts: TaskOptions,
        concurrency_key: str | Callable[..., str] | None,
        overrides: FailureOverrides,
        what: str,
    ) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
        if name is not None:
            task_name(name)

        def register(f: Callable[P, R]) -> TaskFunction[P, R]:
            if not callable(f):
                raise InvalidArgument(f"{what} decorates a function")
            tname = name if name is not None else default_name(f)
            tf: TaskFunction[P, R] = TaskFunction(self, f, tname, opts, concurrency_key)
            tf.failure_overrides = overrides
            with self._lock:
                old = self.declared.get(tname)
                if opts.topic is not None and old is not None and old.options != opts:
                    raise InvalidArgument(
                        f"subscriber {tname!r} is declared already with other options "
                        f"(topic {old.options.topic!r}); give each subscriber its own name"
                    )
                if old is not None and _where(old.fn) != _where(f):
                    # (the same function declared again, as a notebook's cell run twice
                    # does, replaces it; another one would run in its place)
                    raise InvalidArgument(
                        f"{tname!r} is declared already, by {_where(old.fn)}; give "
                        f"{_where(f)} its own name"
                    )
                self.declared[tname] = tf
                if self._engine is not None:
                    self._engine.define_many({tname: tf.definition()})
            return tf

        if fn is not None:
            return register(fn)
        return register

    # -- workflows (docs/workflows.md) ----------------------------------------------------------
    @overload
    def workflow(self, fn: Callable[P, R], /) -> TaskFunction[P, R]: ...

    @overload
    def workflow(
        self, fn: None = None, /, *, name: str | None = None, **task_options: Unpack[TaskOptionArgs]
    ) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...

    def workflow(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        **task_options: Unpack[TaskOptionArgs],
    ) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
        """Declare a workflow: a task whose function may call steps, sleep, wait for
        signals and start children, replayed from the top on every attempt. Takes the
        options of ``@app.task``."""
        key = task_options.get("concurrency_key")
        given: dict[str, Any] = dict(task_options)
        overrides = failure_overrides(given.pop("retry_on", ()), given.pop("never_retry", ()))
        opts = msgspec.structs.replace(options(**given), workflow=True)
        return self._declare(fn, name, opts, key, overrides, "@app.workflow")

    @overload
    def step(self, fn: Callable[P, R], /) -> StepFunction[P, R]: ...

    @overload
    def step(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        max_attempts: int = 3,
        backoff: Backoff | None = None,
    ) -> Callable[[Callable[P, R]], StepFunction[P, R]]: ...

    def step(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        max_attempts: int = 3,
        backoff: Backoff | None = None,
    ) -> StepFunction[P, R] | Callable[[Callable[P, R]], StepFunction[P, R]]:
        """Declare a step: called inside a workflow it runs once, its result stored before
        the workflow goes on (replayed from the store afterwards), tried up to
        ``max_attempts`` times in place with ``backoff`` between tries (default
        ``Backoff.fixed(1.0)``). Anywhere else it is a plain call."""
        policy = StepPolicy(max_attempts, backoff if backoff is not None else Backoff.fixed(1.0))
        if name is not None:
            task_name(name)

        def register(f: Callable[P, R]) -> StepFunction[P, R]:
            if not callable(f):
                raise InvalidArgument("@app.step decorates a function")
            return StepFunction(f, name if name is not None else default_name(f), policy)

        if fn is not None:
            return register(fn)
        return register

    def signal(
        self,
        execution_id_or_run_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Send the signal ``name`` to a workflow (by execution id or run id): durable, and
        received once by an ``ms.wait_for(name)``, in the order sent; kept until the
        workflow waits for it. With ``idempotency_key``, sending again is a no-op.
        Raises UnknownExecution for an unknown id, or a run that is not a workflow's."""
        self._send_signal(execution_id_or_run_id, name, payload, idempotency_key)

    def _send_signal(
        self, target: str, name: str, payload: Any, idempotency_key: str | None
    ) -> bool:
        """``signal``; False when ``idempotency_key`` was sent already (nothing sent)."""
        for what, value in (("execution id", target), ("signal name", name)):
            if not isinstance(value, str) or not value:
                raise InvalidArgument(f"the {what} must be a non-empty string, got {value!r}")
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not idempotency_key
        ):
            raise InvalidArgument(
                f"idempotency_key must be a non-empty string, got {idempotency_key!r}"
            )
        plain = to_plain(payload, f"the payload of signal {name!r}")
        return self.engine.signal(target, name, plain, idempotency_key)

    def get_execution(self, execution_id: str) -> RunInfo:
        """The workflow run of this execution id; raises UnknownExecution."""
        return run_info(self.engine.execution(execution_id))

    def _handler(self, tf: TaskFunction[Any, Any]) -> Callable[..., Any]:
        """What a worker calls for a declared task: the function, or its wrapper for a
        workflow (replay) or a subscriber (its message, its receipt)."""
        if tf.options.workflow:
            return workflow_handler(self, tf.fn)
        if tf.options.topic is not None:
            return subscriber_handler(self, tf.name, tf.fn)
        return tf.fn

    # -- submitting -------------------------------------------------------------------------------
    def submit(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> RunHandle:
        """Submit a run of task ``name`` without its handler code (CLI, other services).

        Uses the options and parameters the declaring App recorded in the store; a name no
        App declared is accepted with the default options (its arguments are not checked),
        with a ``UserWarning`` saying so.
        """
        handle, warning = self._submit_named(name, args, kwargs, **overrides)
        if warning is not None:
            warnings.warn(warning, UserWarning, stacklevel=3)  # (the caller's line)
        return handle

    def _submit_named(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> tuple[RunHandle, str | None]:
        """``submit``, and its warning as a sentence (None: none), for the CLI and the
        service to say their own way (``warnings.catch_warnings`` is not thread-safe)."""
        unknown = set(overrides) - set(OVERRIDES)
        if unknown:
            raise InvalidArgument(f"unknown submit options: {', '.join(sorted(unknown))}")
        check_overrides(overrides)
        tf = self.declared.get(task_name(name))
        if tf is None:
            definition = self.engine.definition(name)
            if (
                definition
                and definition.get("key_callable")
                and not overrides.get("concurrency_key")
            ):
                raise InvalidArgument(
                    f"task {name!r} computes its concurrency key with a Python callable, which "
                    "only its own code can run: submit it from Python, or give the key "
                    "explicitly (concurrency_key=..., CLI: --concurrency-key K)"
                )
            tf = by_name(self, name, definition)
            warning = undeclared(name) if definition is None else None
        else:
            warning = None
        return tf._submit(*arguments(args, kwargs), **overrides), warning

    def declares(self, name: str) -> bool:
        """Has an App declared task ``name`` in the store (this one, or another)?"""
        return name in self.declared or self.engine.definition(name) is not None

    def submit_many(
        self,
        task: TaskFunction[Any, Any] | str,
        calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
    ) -> list[RunHandle]:
        """Submit many runs of one task in a single transaction (batched enqueue). Inside
        a handler they are launches like any submit (written when its attempt commits)."""
        tf = self.declared.get(task) if isinstance(task, str) else task
        if tf is None:
            raise InvalidArgument(f"task {task!r} is not declared by this App")
        reqs = [tf.request(a, k, Policy(kind="once")) for a, k in calls]  # (all checked first)
        if context_now() is not None:
            return [tf._submit(a, k) for a, k in calls]
        with telemetry.span(f"submit {tf.name}", kind="producer", task=tf.name) as span:
            subs = self.engine.submit_many(reqs)
            telemetry.submitted(span, [s.run_ids[0] for s in subs])
        return [RunHandle(self, s.run_ids[0], s.task_id) for s in subs]

    # -- queries ----------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunInfo:
        """The run with this id as stored now; raises UnknownRun."""
        return run_info(self.engine.get_run(an_id("run_id", run_id)))

    def run(self, run_id: str) -> RunHandle:
        """A RunHandle for an existing run id; raises UnknownRun."""
        r = self.engine.get_run(an_id("run_id", run_id))
        return RunHandle(self, r.run_id, r.task_id)

    def task_handle(self, task_id: str) -> TaskHandle:
        """A TaskHandle for an existing task id; raises UnknownTask."""
        self.engine.tasks(task_id=an_id("task_id", task_id))
        return TaskHandle(self, task_id)

    def runs(
        self,
        state: RunState | str | None = None,
        task: str | None = None,
        limit: int = 100,
        *,
        queue: str | None = None,
        after: str | None = None,
        order: str = "asc",
    ) -> list[RunInfo]:
        """Runs, optionally of one state, task name and/or queue, by scheduled time (then
        id); ``order="desc"``: the latest first. ``after``: the id of the last run of the
        previous page, to page on from it (keyset pagination); UnknownRun if there is no
        such run."""
        st = None if state is None else run_state_of(state).value
        check_limit(limit)
        for what, value in (("task", task), ("queue", queue), ("after", after)):
            an_id(what, value, optional=True)
        if order not in ("asc", "desc"):
            raise InvalidArgument(f"order must be 'asc' or 'desc', got {order!r}")
        anchor = None
        if after is not None:
            r = self.engine.get_run(after)
            anchor = (r.scheduled_at, r.run_id)
        with self.store.read() as tx:
            found = tx.query_runs(
                st, task, limit, queue=queue, after=anchor, newest_first=order == "desc"
            )
            return [run_info(r) for r in found]

    def tasks(self, active: bool = True, limit: int = 100) -> list[TaskInfo]:
        """Tasks in creation order with their policy, next occurrence and run counts
        (``active=False``: canceled ones too)."""
        check_limit(limit)
        if not isinstance(active, bool):
            raise InvalidArgument(f"active must be True or False, got {active!r}")
        return [task_info(v) for v in self.engine.tasks(active=active, limit=limit)]

    def get_task(self, task_id: str) -> TaskInfo:
        """The task with this id; raises UnknownTask."""
        return task_info(self.engine.tasks(task_id=an_id("task_id", task_id))[0])

    def workers(self) -> list[WorkerInfo]:
        """Live workers: registered and heartbeating (``lease_seconds`` without a heartbeat
        and a vanished worker is gone)."""
        return [worker_info(w, running) for w, running in self.engine.workers()]

    def why(self, run_id: str) -> Explanation:
        """Why the run is where it is: its state and the reasons, most decisive first."""
        return explanation(*self.engine.why(an_id("run_id", run_id)))

    def log(self, since: int = 0, run_id: str | None = None, limit: int = 1000) -> list[LogEvent]:
        """Log events with seq > ``since`` (optionally of one run), in commit order.

        LogCompacted when compaction removed events after ``since`` (its ``first_seq``
        says where the log now starts)."""
        check_limit(limit)
        if isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= MAX_SEQ:
            raise InvalidArgument(
                f"since must be an int from 0 to 2**63 - 1 (a seq), got {since!r}"
            )
        an_id("run_id", run_id, optional=True)
        with self.store.read() as tx:
            found = tx.events(since, run_id, limit)
            if not found or found[0].seq > since + 1:  # (something before what was found?)
                first = tx.first_seq()
                if first > since + 1:
                    raise LogCompacted(
                        f"events {since + 1}..{first - 1} were removed from the log by "
                        f"compaction; it now starts at seq {first} (read from since="
                        f"{first - 1}, or from an export taken before compacting)",
                        first_seq=first,
                    )
        return [log_event(e) for e in found]

    def stats(self) -> dict[str, int]:
        """The number of runs in each state."""
        with self.store.read() as tx:
            return tx.stats()

    def paused(self) -> bool:
        """Whether the engine is paused."""
        return self.engine.paused()

    def is_idle(self) -> bool:
        """Whether the store is idle: no run ready, leased, running or in retry_wait, and
        none scheduled and already due (future occurrences do not count)."""
        return self.engine.is_idle()

    def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Replay the log from empty and compare it with the stored state.

        ``progress(done, total)``, if given, hears how far the replay has come (events)."""
        problems = self.engine.verify(progress)
        return VerifyReport(ok=not problems, problems=problems)

    def schema_version(self) -> int:
        """The store's schema version (after opening it, the current one)."""
        return self.store.schema_version

    # -- workers -----------------------------------------------------------------------------------
    def _worker(
        self,
        concurrency: int,
        queues: Sequence[str] | None,
        grace_seconds: float,
        on_attempt: Callable[[AttemptDone], None] | None = None,
        prefetch: int = 0,
    ) -> Worker:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgument(f"concurrency must be an int >= 1, got {concurrency!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise InvalidArgument(f"prefetch must be an int >= 0, got {prefetch!r}")
        if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int | float):
            raise InvalidArgument(f"grace_seconds must be a number, got {grace_seconds!r}")
        if not grace_seconds >= 0:
            raise InvalidArgument(f"grace_seconds must be >= 0, got {grace_seconds!r}")
        if on_attempt is not None and not callable(on_attempt):
            raise InvalidArgument(f"on_attempt must be callable or None, got {on_attempt!r}")
        if queues is not None and (
            isinstance(queues, str | bytes)
            or not isinstance(queues, Sequence | set | frozenset)
            or not queues
            or not all(isinstance(q, str) and q for q in queues)
        ):
            raise InvalidArgument(
                f"queues must be None (every queue of the declared tasks) or a non-empty list "
                f"of queue names, got {queues!r}"
            )
        queues = (
            sorted({tf.options.queue for tf in self.declared.values()})
            if queues is None
            else list(queues)
        )
        return Worker(
            self.engine,
            {n: self._handler(tf) for n, tf in self.declared.items()},
            concurrency=concurrency,
            queues=queues,
            lease_seconds=self.lease_seconds,
            grace_seconds=grace_seconds,
            on_attempt=on_attempt,
            failure_overrides={n: tf.failure_overrides for n, tf in self.declared.items()},
            retention=self.retention,
            prefetch=prefetch,
        )

    @contextlib.contextmanager
    @refuses_bad_calls  # (inside: the context manager calls it only later)
    def worker(
        self,
        concurrency: int = 8,
        queues: Sequence[str] | None = None,
        grace_seconds: float = 10.0,
        on_attempt: Callable[[AttemptDone], None] | None = None,
        prefetch: int = 0,
    ) -> Iterator[Worker]:
        """A worker running in background threads of this process while the block runs.

        ``on_attempt`` hears of each attempt whose end was recorded (from the worker's
        loop thread: keep it short). ``prefetch``: runs leased and started ahead of the
        ``concurrency`` handlers, so that a handler that ends is followed at once by the
        next rather than after the commit of its result (see docs/operations.md, "Prefetch")."""
        w = self._worker(concurrency, queues, grace_seconds, on_attempt, prefetch).start()
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
        on_attempt: Callable[[AttemptDone], None] | None = None,
        prefetch: int = 0,
    ) -> None:
        """Run a worker until SIGINT/SIGTERM (``prefetch``: as for ``worker``).

        With ``burst``, stop once nothing is left that this worker could do (see
        ``Worker.run_until_done``): the store is idle as far as its tasks and queues go,
        or the engine is paused."""
        w = self._worker(concurrency, queues, grace_seconds, on_attempt, prefetch)
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


def _where(fn: Callable[..., Any]) -> str:
    """A handler as a reader finds it: its module and qualified name."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
