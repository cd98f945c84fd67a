"""Declared tasks: ``@app.task`` functions, and building their submissions (their options
and overrides are checked in _task_options.py).

A ``TaskFunction`` keeps its handler's parameters (``P``) on ``submit``; a submission is
checked against the handler's signature (or, by name, against the parameters its definition
recorded) before anything is encoded or written.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import msgspec

from . import telemetry, workflow
from ._handles import RunHandle, TaskHandle
from ._task_options import (
    FailureOverrides,
    Misfire,
    arguments,
    caller_connection,
    deadline_of,
    debounce_of,
    durable,
    label,
    priority_option,
    queue_name,
    start_of,
)
from .core.clock import seconds
from .core.codec import to_plain
from .core.errors import InvalidArgument, refusing_bad_calls
from .core.ids import uuid7
from .core.model import MISFIRE_GRACE_SECONDS, Policy, TaskOptions
from .engine import SubmitRequest
from .worker.context import Context
from .worker.context import current as context_now

if TYPE_CHECKING:
    from .app import App

P = ParamSpec("P")
R = TypeVar("R")


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or other callable without a signature
        return None


def _plain_parameters(sig: inspect.Signature | None) -> tuple[list[str], int] | None:
    """For a signature of positional-or-keyword parameters only: their names and how many of
    them (the first ones) have no default. None for any other signature."""
    if sig is None:
        return None
    params = list(sig.parameters.values())
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
        return None
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    return [p.name for p in params], required


def recorded_signature(sig: inspect.Signature | None) -> list[list[Any]] | None:
    """A signature as a definition records it: ``[name, kind, has_default]`` per parameter
    (``kind``: ``inspect.Parameter.kind`` as its int value)."""
    if sig is None:
        return None
    return [
        [p.name, int(p.kind), p.default is not inspect.Parameter.empty]
        for p in sig.parameters.values()
    ]


class _Recorded:
    """A default the definition does not record (only that there is one): shown as ``...``
    in a recorded signature, and equal to itself only."""

    def __repr__(self) -> str:
        return "..."


_RECORDED = _Recorded()


def signature_of(recorded: list[list[Any]]) -> inspect.Signature:
    """The signature a definition recorded (a default shows as ``...``: its value is the
    handler's, in the worker that runs it)."""
    return inspect.Signature(
        [
            inspect.Parameter(
                name,
                inspect._ParameterKind(kind),
                default=_RECORDED if has_default else inspect.Parameter.empty,
            )
            for name, kind, has_default in recorded
        ]
    )


def calls_of(items: Sequence[Any]) -> list[tuple[Sequence[Any], dict[str, Any]]]:
    """The items of ``submit_many`` as ``(args, kwargs)`` pairs, checked."""
    calls: list[tuple[Sequence[Any], dict[str, Any]]] = []
    for item in items:
        if isinstance(item, dict):
            calls.append(((), item))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
            calls.append((item[0], item[1]))
        else:
            raise InvalidArgument(
                f"each item of submit_many is a dict of keyword arguments or an "
                f"(args, kwargs) pair, got {item!r}"
            )
    return calls


@refusing_bad_calls
class Submitter(Generic[P, R]):
    """``task.with_options(...)``: per-submission overrides (a TaskFunction is one with none)."""

    def __init__(self, task: TaskFunction[P, R], **overrides: Any) -> None:
        self.task = task
        self.overrides = overrides

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> RunHandle:
        """Submit one run with these arguments (policy once); durable on return (with
        ``connection=``: when the caller commits)."""
        return self.task._submit(args, kwargs, **self.overrides)

    def submit_many(self, items: Sequence[Any]) -> list[RunHandle]:
        """Submit one run per item in one transaction, each with these overrides: each
        item a dict of keyword arguments, or an ``(args, kwargs)`` pair. Every item is
        checked before anything is written."""
        task, ov = self.task, self.overrides
        calls = calls_of(items)
        ctx = context_now()
        connection = caller_connection(ov.get("connection"), ctx is not None, "a submission")
        reqs = [task.request(a, k, Policy(kind="once"), **ov) for a, k in calls]  # (all first)
        if ctx is not None:
            return [task._submit(a, k, **ov) for a, k in calls]
        with telemetry.span(f"submit {task.name}", kind="producer", task=task.name) as span:
            subs = task.app.engine.submit_many(reqs, connection=connection)
            telemetry.submitted(span, [s.run_ids[0] for s in subs], ov.get("correlation_id"))
        return [RunHandle(task.app, s.run_ids[0], s.task_id) for s in subs]

    def repeat(
        self,
        count: int,
        every: float | timedelta,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> TaskHandle:
        """Submit a task whose ``count`` runs come ``every`` seconds apart."""
        ev = seconds(every, "every")
        policy = Policy(kind="repeat", count=count, every=ev)
        return self.task._submit_task(args, kwargs or {}, policy, **self.overrides)

    def schedule(
        self,
        cron: str,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        misfire: Misfire = "catch_up",
        max_occurrences: int | None = None,
        misfire_grace: float | timedelta = MISFIRE_GRACE_SECONDS,
    ) -> TaskHandle:
        """Submit a task whose runs follow a cron expression in time zone ``tz``."""
        grace = seconds(misfire_grace, "misfire_grace")
        policy = Policy(
            kind="cron",
            cron=cron,
            tz=tz,
            misfire=misfire,
            max_occurrences=max_occurrences,
            misfire_grace=grace if grace is not None else MISFIRE_GRACE_SECONDS,
        )
        return self.task._submit_task(args, kwargs or {}, policy, **self.overrides)


@refusing_bad_calls
class TaskFunction(Submitter[P, R]):
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
        signature: inspect.Signature | None = None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options
        self._key = key
        #: what submissions bind to (None: unknown, nothing is checked)
        self.signature = signature if signature is not None else _signature(fn)
        self._plain = _plain_parameters(self.signature)
        self.failure_overrides: FailureOverrides = ((), ())
        #: the rate limit's key as declared (a callable one is not in ``options``)
        self.rate_key: str | Callable[..., str] | None = (
            options.rate_limit.key if options.rate_limit is not None else None
        )
        super().__init__(self)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<mainspring task {self.name!r}>"

    def definition(self) -> dict[str, Any]:
        """What the store records of this task for submissions by name (CLI, HTTP).

        The options, plus the handler's parameters (``signature``: what a submission by
        name is checked against; ``params``: the positional ones, in order, to fill a
        ``"{param}"`` concurrency key template), and whether the key is computed by a
        callable (``key_callable``), which only the handler's own code can run.
        """
        doc: dict[str, Any] = msgspec.to_builtins(durable(self.options))
        sig = self.signature
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params = [] if sig is None else list(sig.parameters.values())
        doc["params"] = [p.name for p in params if p.kind in positional]
        recorded = recorded_signature(sig)
        if recorded is not None:
            doc["signature"] = recorded
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
        deadline: float | timedelta | datetime | None = None,
        debounce: float | timedelta | None = None,
        debounce_key: str | None = None,
        debounce_max: float | timedelta | None = None,
        connection: Any = None,
    ) -> Submitter[P, R]:
        """Per-submission overrides; returns an object with submit/submit_many/repeat/
        schedule.

        ``deadline`` (seconds or a timedelta from now, or an aware datetime): a run not
        terminal when it passes is canceled with reason ``deadline`` (a workflow's
        children with it). ``debounce`` (seconds) with ``debounce_key``: submissions of
        this task with the same key collapse into one run, due ``debounce`` seconds after
        the last of them (at most ``debounce_max`` after the first), with the last one's
        arguments; each returns that run's handle. ``connection``: the caller's DB-API
        connection (``sqlite3`` or psycopg 3) to the store's own database: the submission
        is written inside the caller's open transaction on it, and exists only if that
        commits (docs/transactions.md)."""
        return Submitter(
            self,
            idempotency_key=idempotency_key,
            execution_id=execution_id,
            correlation_id=correlation_id,
            delay=delay,
            run_at=run_at,
            priority=priority,
            concurrency_key=concurrency_key,
            queue=queue,
            deadline=deadline,
            debounce=debounce,
            debounce_key=debounce_key,
            debounce_max=debounce_max,
            connection=connection,
        )

    # -- building requests ----------------------------------------------------------------------
    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments by parameter name; InvalidArgument when they do not fit the handler
        (missing, unexpected or duplicated arguments). Without a signature, ``kwargs``."""
        if not isinstance(kwargs, dict):
            raise InvalidArgument(f"kwargs must be a dict, got {type(kwargs).__name__}")
        if self.signature is None:
            return dict(kwargs)
        if self._plain is not None:  # the common case, without inspect's general bind
            names, required = self._plain
            n = len(args)
            if (
                n <= len(names)
                and all(k in names[n:] for k in kwargs)
                and all(name in kwargs for name in names[n:required])
            ):
                return {**dict(zip(names, args, strict=False)), **kwargs}
        try:
            bound = dict(self.signature.bind(*args, **kwargs).arguments)
        except TypeError as exc:
            raise InvalidArgument(
                f"the arguments do not fit task {self.name!r}{self.signature}: {exc}"
            ) from None
        for p in self.signature.parameters.values():  # **kwargs fill key templates too
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                bound.update(bound.pop(p.name, {}))
        return bound

    def _same_call(
        self, args: list[Any], kwargs: dict[str, Any], stored: list[Any], stored_kw: dict[str, Any]
    ) -> bool:
        """``SubmitRequest.same_call``: whether the stored arguments are these written another
        way (bound to the same parameters, defaults filled in). Called only when a key or an
        execution id was used before with arguments spelled otherwise."""
        if self.signature is None:
            return False
        calls = []
        for a, k in ((args, kwargs), (stored, stored_kw)):
            try:
                bound = self.signature.bind(*a, **k)
            except TypeError:
                return False
            bound.apply_defaults()
            calls.append(dict(bound.arguments))
        return calls[0] == calls[1]

    def _resolve_key(
        self,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        bound: dict[str, Any],
        override: str | None,
    ) -> str | None:
        if override is not None and not isinstance(override, str):
            raise InvalidArgument(f"concurrency_key must be a string, got {override!r}")
        key = override if override is not None else self._key
        return self._fill(key, "concurrency_key", args, kwargs, bound)

    def _rate_key(
        self, args: Sequence[Any], kwargs: dict[str, Any], bound: dict[str, Any]
    ) -> str | None:
        """The rate limit account of a submission: the task's name, and its key's value."""
        limit = self.options.rate_limit
        if limit is None:
            return None
        key = self._fill(self.rate_key, "the rate limit's key", args, kwargs, bound)
        return self.name if key is None else f"{self.name} {key}"

    def _fill(
        self,
        key: str | Callable[..., str] | None,
        what: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        bound: dict[str, Any],
    ) -> str | None:
        """A key as declared (a string, a ``"{param}"`` template or a callable of the
        arguments), filled for one submission."""
        if key is None:
            return None
        if callable(key):
            try:
                value = key(*args, **kwargs)
            except Exception as exc:
                raise InvalidArgument(
                    f"{what} callable of {self.name} raised {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(value, str):
                raise InvalidArgument(
                    f"{what} callable of {self.name} must return a str, got {value!r}"
                )
            return value
        if "{" in key:
            try:
                return key.format(**{**self._defaults, **bound})
            except KeyError as exc:
                raise InvalidArgument(
                    f"{what} template {key!r} of {self.name} cannot be filled from the "
                    f"arguments: missing {exc}"
                ) from None
            except (IndexError, ValueError, AttributeError, TypeError) as exc:
                raise InvalidArgument(
                    f"{what} template {key!r} of {self.name} cannot be filled from the "
                    f"arguments: {type(exc).__name__}: {exc}"
                ) from None
        return key

    @functools.cached_property
    def _defaults(self) -> dict[str, Any]:
        """The handler's parameters that have a default, by name: a key template's field
        the submission leaves out takes the handler's default, as the handler does."""
        if self.signature is None:
            return {}
        params = self.signature.parameters.values()
        return {p.name: p.default for p in params if p.default is not p.empty}

    def request(
        self, args: Sequence[Any], kwargs: dict[str, Any], policy: Policy, **ov: Any
    ) -> SubmitRequest:
        """Build the engine's SubmitRequest (checks and encodes the arguments)."""
        debounce = debounce_of(policy, ov)
        bound = self.bind(args, kwargs)
        key = self._resolve_key(args, kwargs, bound, ov.get("concurrency_key"))
        rate_key = self._rate_key(args, kwargs, bound)
        plain_args = to_plain(list(args), f"the arguments of {self.name}")
        plain_kwargs = to_plain(dict(kwargs), f"the keyword arguments of {self.name}")
        opts = durable(self.options)
        changes: dict[str, Any] = {}
        if ov.get("priority") is not None:
            changes["priority"] = priority_option(ov["priority"])
        if ov.get("queue") is not None:
            changes["queue"] = queue_name(ov["queue"])
        if changes:
            opts = msgspec.structs.replace(opts, **changes)
        return SubmitRequest(
            name=self.name,
            args=plain_args,
            kwargs=plain_kwargs,
            options=opts,
            # (a debounced run is first due its debounce after this submission)
            policy=start_of(
                policy,
                debounce[0] if debounce is not None else ov.get("delay"),
                ov.get("run_at"),
                self.app.clock.now,
            ),
            concurrency_key=key,
            idempotency_key=label("idempotency_key", ov.get("idempotency_key")),
            execution_id=label("execution_id", ov.get("execution_id")),
            correlation_id=label("correlation_id", ov.get("correlation_id")),
            deadline_at=deadline_of(ov.get("deadline"), self.app.clock.now),
            debounce=debounce,
            rate_key=rate_key,
            same_call=functools.partial(self._same_call, plain_args, plain_kwargs),
        )

    def _submit(self, args: Sequence[Any], kwargs: dict[str, Any], **ov: Any) -> RunHandle:
        ctx = context_now()
        if ctx is not None and workflow.current() is not None:
            return self._submit_now(ctx, args, kwargs, **ov)  # (its span: once, start_child's)
        with telemetry.span(f"submit {self.name}", kind="producer", task=self.name) as s:
            h = self._submit_now(ctx, args, kwargs, **ov)
            correlation = ov.get("correlation_id") or (ctx.correlation_id if ctx else None)
            telemetry.submitted(s, [h.run_id], correlation)
            return h

    def _submit_now(
        self, ctx: Context | None, args: Sequence[Any], kwargs: dict[str, Any], **ov: Any
    ) -> RunHandle:
        connection = caller_connection(ov.get("connection"), ctx is not None, "a submission")
        req = self.request(args, kwargs, Policy(kind="once"), **ov)
        if ctx is None:
            sub = self.app.engine.submit(req, connection=connection)
            h = RunHandle(self.app, sub.run_ids[0], sub.task_id, replayed=sub.replayed)
            h._created = sub.first
            return h
        # inside a handler: correlated with the submitting run, and launched by it
        req.correlation_id = req.correlation_id or ctx.correlation_id
        req.caused_by = ctx.run_id
        wf = workflow.current()
        if wf is not None:  # a child of the running workflow, started once across replays
            return RunHandle(self.app, *workflow.start_child(wf, req))
        # written when the attempt (or the workflow step) commits successfully (lineage)
        req.task_id, req.run_id = uuid7(), uuid7()
        ctx.launches.append(req)
        return RunHandle(self.app, req.run_id, req.task_id, origin=ctx.attempt_id)

    def submit_many(self, items: Sequence[Any]) -> list[RunHandle]:
        """Submit one run per item in one transaction: each item a dict of keyword
        arguments, or an ``(args, kwargs)`` pair. Every item is checked before anything is
        written."""
        return self.app.submit_many(self, calls_of(items))

    def _submit_task(
        self, args: Sequence[Any], kwargs: dict[str, Any], policy: Policy, **ov: Any
    ) -> TaskHandle:
        in_handler = context_now() is not None
        connection = caller_connection(ov.get("connection"), in_handler, "a submission")
        args, kwargs = arguments(args, kwargs)
        req = self.request(args, kwargs, policy, **ov)
        with telemetry.span(f"submit {self.name}", kind="producer", task=self.name) as span:
            sub = self.app.engine.submit(req, connection=connection)
            telemetry.submitted(span, sub.run_ids, req.correlation_id)
        return TaskHandle(self.app, sub.task_id, sub.run_ids)


def undeclared(name: str) -> str:
    """The warning of a submission by a name no App has declared in the store."""
    return (
        f"no App has declared {name!r} in this store yet: the run has the default options "
        "and waits for a worker that declares it"
    )


def by_name(app: App, name: str, definition: dict[str, Any] | None) -> TaskFunction[..., Any]:
    """A stand-in for a task submitted by name, without its handler code: the options and
    parameters its declaring App recorded (or the defaults and no check, when none did)."""
    definition = definition or {}
    opts = msgspec.convert(definition, TaskOptions) if definition else TaskOptions()

    def stand_in(*_args: Any, **_kwargs: Any) -> None:
        """Never called: submissions by name only need the parameters."""

    sig: inspect.Signature | None = None
    if "signature" in definition:
        sig = signature_of(definition["signature"])
    elif "params" in definition:  # recorded by an older version: positional names only
        sig = inspect.Signature(
            [
                inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
                for p in definition["params"]
            ]
            + [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
        )
    return TaskFunction(app, stand_in, name, opts, opts.concurrency_key, signature=sig)
