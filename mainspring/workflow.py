"""Durable workflows: what workflow code calls, and how it replays (docs/workflows.md).

A workflow's attempt runs its function from the top. Each durable call (a step, a child
submission, ``ms.patched``; a sleep or a wait) takes the next number of its kind, in
call order, and looks in the run's history (``WorkflowRun.history``, read when the
attempt starts): a step recorded at that number returns its stored result without
running; a wait recorded there returns what it received or, still waiting, waits on.
Past the end of the history the call happens for real and is recorded, in one
transaction, before the workflow goes on. A sleep or a wait that cannot end at once
suspends the run in that same transaction and unwinds the workflow's code
(``Recorded``); the next attempt replays to the same point and passes through.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import msgspec

from . import telemetry
from .core.clock import from_datetime, representable, seconds
from .core.codec import to_plain
from .core.errors import (
    InvalidArgument,
    MainspringError,
    NoContext,
    NonDeterminism,
    RunCanceled,
    RunFailed,
    SerializationError,
)
from .core.failures import RETRYING, classify
from .core.model import Backoff, MessageRecord, StepRecord, WaitRecord, step_key, wait_key
from .core.outcomes import Diverged, Fail, Recorded
from .core.retry import backoff_delay
from .core.states import RunState
from .engine import SubmitRequest
from .engine.topics import PublishRequest
from .engine.workflows import Fenced, History, WaitOutcome
from .worker.context import Context, context

if TYPE_CHECKING:
    from ._handles import RunHandle
    from .app import App

P = ParamSpec("P")
R = TypeVar("R")

_current: ContextVar[WorkflowRun | None] = ContextVar("mainspring_workflow", default=None)


class WorkflowRun:
    """One attempt of a workflow run: its history and where its replay has got to."""

    def __init__(self, app: App, ctx: Context, history: History) -> None:
        self.app = app
        self.engine = app.engine
        self.ctx = ctx
        self.history = history
        self.next_step = 1
        self.next_wait = 1
        self.children: set[str] = set()
        self.diverged: str | None = None  # the NonDeterminism raised, if any
        #: steps that failed for good in an earlier attempt and run again in this one
        #: (``runs_again``), with the tries they had then
        self.again: dict[int, int] = {}

    @classmethod
    def begin(cls, app: App) -> WorkflowRun:
        ctx = context()
        empty = History({}, {})
        return cls(app, ctx, app.engine.history(ctx.run_id) if ctx.attempt > 1 else empty)

    # -- what every durable call does ---------------------------------------------------------
    def _diverge(self, what: str, number: int, recorded: str, called: str) -> None:
        self.diverged = (
            f"the workflow's replay called {called!r} as {what} {number}, but its history "
            f"recorded {recorded!r} there: the code changed under this run. Deploy the code "
            "it ran with (or guard the change with ms.patched) and resume the run"
        )
        raise NonDeterminism(self.diverged)

    def _fenced(self) -> Recorded:
        self.ctx.cancel()
        return Recorded()

    def _record(
        self, step: StepRecord, will_retry: bool = False, launches: Sequence[Any] = ()
    ) -> None:
        try:
            self.engine.record_step(
                self.ctx.worker,
                self.ctx.attempt_id,
                step,
                will_retry,
                launches,
                again=step.number in self.again,
            )
        except Fenced:
            raise self._fenced() from None

    def _check(self) -> None:
        """After a divergence nothing more may be recorded: the numbering is off."""
        if self.diverged is not None:
            raise NonDeterminism(self.diverged)

    def replayed(self, name: str) -> tuple[int, StepRecord | None]:
        """Take the next step number; the step recorded there (None: run it now)."""
        self._check()
        n = self.next_step
        self.next_step += 1
        rec = self.history.steps.get(n)
        if rec is not None and rec.name != name:
            self._diverge("step", n, rec.name, name)
        if rec is None and (w := self.wait_past_here()) is not None:
            # a step the code before the change did not make at this point: its run went
            # on past it, to a wait
            self._diverge("step", n, f"no step, then wait {w}", name)
        if rec is not None and self.runs_again(rec):
            self.again[n] = rec.attempts
            return n, None
        return n, rec

    def wait_past_here(self) -> int | None:
        """The first wait an earlier attempt recorded beyond the point this replay has
        reached (None: none). A run with one went past this point on the code it ran with:
        a step not recorded here is not one it would make now. (A step recorded beyond it
        is found by its number.)"""
        return min((w for w in self.history.waits if w >= self.next_wait), default=None)

    def runs_again(self, rec: StepRecord) -> bool:
        """Whether a recorded step runs again rather than replaying: it failed for good and
        nothing was recorded after it (no later step, no later wait), so its error ended
        that attempt uncaught, and the workflow's retry (or resume) must try it anew. A
        failure the workflow caught and went on from replays, so that the replay takes
        the path it took."""
        if rec.state != "failed" or any(k > rec.number for k in self.history.steps):
            return False
        if rec.waits_before is None:  # (recorded before waits were counted)
            return not self.history.waits
        return not any(w > rec.waits_before for w in self.history.waits)

    def step_record(
        self,
        n: int,
        name: str,
        started: float,
        tries: int,
        *,
        output: Any = None,
        exc: BaseException | None = None,
    ) -> StepRecord:
        rid = self.ctx.run_id
        rec = StepRecord(
            step_id=step_key(rid, n),
            run_id=rid,
            number=n,
            name=name,
            state="completed" if exc is None else "failed",
            output=output,
            attempts=self.again.get(n, 0) + tries,  # (the tries of earlier attempts too)
            started_at=started,
            finished_at=self.engine.clock.now(),
        )
        if exc is not None:
            rec.waits_before = self.next_wait - 1
            rec.error = f"{type(exc).__name__}: {exc}"
            rec.error_type = f"{type(exc).__module__}:{type(exc).__qualname__}"
            try:
                rec.error_args = to_plain(list(exc.args), "the exception's arguments")
            except MainspringError:
                rec.error_args = None  # rebuilt from its message instead
            if vars(exc):
                try:
                    rec.error_attrs = to_plain(dict(vars(exc)), "the exception's attributes")
                except MainspringError:
                    rec.error_attrs = None
        return rec

    def live(self) -> None:
        """Unwind before a step's code starts once the attempt is over (the run was
        canceled, the lease lost, the timeout passed): what it would do is done already, or
        not this attempt's to do."""
        if self.ctx.cancelled:
            raise Recorded("the attempt is over: no step starts")

    def failed_try(
        self,
        n: int,
        name: str,
        started: float,
        tries: int,
        exc: BaseException,
        policy: StepPolicy,
        mark: int,
    ) -> float | None:
        """Record a failed try of step ``n`` (what it launched, the context's launches from
        ``mark`` on, is dropped); the delay before the next try, or None when the step
        failed for good (then its error is raised into the workflow)."""
        self.ctx.step = None
        del self.ctx.launches[mark:]
        # the one classifier decides, as for a task's attempts (core/failures.py)
        retry = (
            tries < policy.max_attempts
            and not isinstance(exc, Fail)
            and classify(exc).retry_class in RETRYING
            and not self.ctx.cancelled
        )
        self._record(self.step_record(n, name, started, tries, exc=exc), will_retry=retry)
        if not retry:
            return None
        return backoff_delay(policy.backoff, tries, salt=f"{self.ctx.run_id}:{n}")

    def completed(
        self, n: int, name: str, started: float, tries: int, value: Any, mark: int
    ) -> Any:
        """Record step ``n`` completed, with what its code launched (the context's
        launches from ``mark`` on: they are written with the step)."""
        launched = self.ctx.launches[mark:]
        del self.ctx.launches[mark:]
        try:
            output = to_plain(value, f"the result of step {name!r}")
        except SerializationError as exc:
            # failed for good, and recorded so: a replay raises it again rather than
            # running the step's code (and its effects) once more
            self._record(self.step_record(n, name, started, tries, exc=exc), will_retry=False)
            raise
        self._record(self.step_record(n, name, started, tries, output=output), False, launched)
        return output

    # -- waits --------------------------------------------------------------------------------
    def wait(
        self,
        kind: str,
        until: Callable[[float], float | None],
        name: str | None = None,
        children: Sequence[str] = (),
    ) -> WaitOutcome:
        """Sleep or wait: pass through a wait the history ended, or (first time, or still
        waiting) ask the engine, which suspends the run unless it can go on at once."""
        self._check()
        w = self.next_wait
        self.next_wait += 1
        rec = self.history.waits.get(w)
        if rec is not None:
            if (rec.kind, rec.name) != (kind, name):
                self._diverge("wait", w, f"{rec.kind} {rec.name or ''}".strip(), kind)
            if rec.state == "completed":
                return WaitOutcome(False, rec.payload, rec.timed_out)
        else:
            rid = self.ctx.run_id
            rec = WaitRecord(
                wait_id=wait_key(rid, w),
                run_id=rid,
                number=w,
                kind=kind,
                until=until(self.engine.clock.now()),
                name=name,
                children=list(children),
            )
        try:
            out = self.engine.begin_wait(
                self.ctx.worker, self.ctx.attempt_id, rec, self.ctx.options
            )
        except Fenced:
            raise self._fenced() from None
        if out.suspended:
            raise Recorded()
        return out

    def child_outputs(self, run_ids: Sequence[str]) -> list[Any]:
        self.wait("child", lambda now: None, children=run_ids)
        return [_output_of(self.engine.get_run(r)) for r in run_ids]


class StepPolicy:
    """How a step is retried in place: ``max_attempts`` tries, ``backoff`` between them."""

    def __init__(self, max_attempts: int = 1, backoff: Backoff | None = None) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidArgument(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise InvalidArgument(
                "backoff must be ms.Backoff.fixed(...) or ms.Backoff.exponential(...)"
            )
        self.max_attempts = max_attempts
        self.backoff = backoff if backoff is not None else Backoff()


def current() -> WorkflowRun | None:
    """The workflow attempt running in this context, outside a step's own code."""
    wf = _current.get()
    if wf is None or wf.ctx.step is not None:
        return None  # (a step's code runs as plain code: its calls are not steps)
    return wf


def _required(what: str) -> WorkflowRun:
    wf = current()
    if wf is None:
        raise NoContext(
            f"{what} was called outside a workflow: call it from a function decorated with "
            "@app.workflow while a worker runs it (not inside a step)"
        )
    return wf


def _output_of(run: Any) -> Any:
    if run.state == RunState.COMPLETED:
        return run.output
    if run.state == RunState.FAILED:
        raise RunFailed(f"run {run.run_id} failed: {run.error}", run=run)
    raise RunCanceled(f"run {run.run_id} was canceled ({run.reason})", run=run)


def _rebuild(rec: StepRecord) -> BaseException:
    """The exception a failed step raised, as a replay raises it again: the same class
    with the same message where it can be made so, else a MainspringError saying it."""
    message = (rec.error or "").split(": ", 1)[-1]
    if rec.error_type:
        module, _, qualname = rec.error_type.partition(":")
        try:
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            if isinstance(cls, type) and issubclass(cls, Exception):
                args = tuple(rec.error_args) if rec.error_args is not None else (message,)
                try:
                    exc: BaseException = cls(*args)
                except Exception:
                    # an __init__ that takes other arguments than it passes on: made as
                    # pickle does, without calling it, its args and attributes as they were
                    exc = cls.__new__(cls)
                    exc.args = args
                    exc.__dict__.update(rec.error_attrs or {})
                return exc
        except Exception:
            pass
    return MainspringError(f"step {rec.name!r} failed: {rec.error}")


def _replay(rec: StepRecord) -> Any:
    if rec.state == "completed":
        return rec.output
    raise _rebuild(rec)


# -- steps -------------------------------------------------------------------------------------
def _step_span(wf: WorkflowRun, n: int, name: str, tries: int) -> AbstractContextManager[Any]:
    """One try of step ``n``: an OpenTelemetry span (mainspring/telemetry.py), a child of
    the attempt's. A replayed step runs nothing and has none."""
    ctx = wf.ctx
    return telemetry.span(
        f"step {name}",
        run_id=ctx.run_id,
        task=ctx.task_name,
        correlation_id=ctx.correlation_id,
        attempt=ctx.attempt,
        step=n,
        step_name=name,
        step_try=tries,
    )


def _run_step(
    wf: WorkflowRun,
    name: str,
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    policy: StepPolicy,
) -> Any:
    n, rec = wf.replayed(name)
    if rec is not None:
        return _replay(rec)
    started, tries, mark = wf.engine.clock.now(), 0, len(wf.ctx.launches)
    while True:
        wf.live()
        tries += 1
        wf.ctx.step, wf.ctx.step_transactions = n, 0
        try:
            with _step_span(wf, n, name, tries):
                value = fn(*args, **kwargs)
        except Exception as exc:
            delay = wf.failed_try(n, name, started, tries, exc, policy, mark)
            if delay is None:
                raise
            time.sleep(delay)
            continue
        finally:
            wf.ctx.step = None
        return wf.completed(n, name, started, tries, value, mark)


async def _run_step_async(
    wf: WorkflowRun,
    name: str,
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    policy: StepPolicy,
) -> Any:
    n, rec = wf.replayed(name)
    if rec is not None:
        return _replay(rec)
    started, tries, mark = wf.engine.clock.now(), 0, len(wf.ctx.launches)
    while True:
        wf.live()
        tries += 1
        wf.ctx.step, wf.ctx.step_transactions = n, 0
        try:
            with _step_span(wf, n, name, tries):
                value = await fn(*args, **kwargs)
        except Exception as exc:
            delay = await asyncio.to_thread(
                wf.failed_try, n, name, started, tries, exc, policy, mark
            )
            if delay is None:
                raise
            await asyncio.sleep(delay)
            continue
        finally:
            wf.ctx.step = None
        return await asyncio.to_thread(wf.completed, n, name, started, tries, value, mark)


class StepFunction(Generic[P, R]):
    """A function declared with ``@app.step``: inside a workflow each call is a step (run
    once, its result stored; replayed from the store); anywhere else a plain call."""

    def __init__(self, fn: Callable[P, R], name: str, policy: StepPolicy) -> None:
        self.fn = fn
        self.name = name
        self.policy = policy
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<mainspring step {self.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        wf = current()
        if wf is None:
            return self.fn(*args, **kwargs)
        if self.is_async:
            return _run_step_async(wf, self.name, self.fn, args, kwargs, self.policy)  # type: ignore[return-value]
        result: R = _run_step(wf, self.name, self.fn, args, kwargs, self.policy)
        return result


def step(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` as the workflow's next step named ``name`` (once; its
    result stored and replayed). Outside a workflow, a plain call. For an ``async def``
    ``fn``, await the result."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"a step name must be a non-empty string, got {name!r}")
    wf = current()
    if wf is None:
        return fn(*args, **kwargs)
    is_async = fn.is_async if isinstance(fn, StepFunction) else inspect.iscoroutinefunction(fn)
    if is_async:
        return _run_step_async(wf, name, fn, args, kwargs, StepPolicy())
    return _run_step(wf, name, fn, args, kwargs, StepPolicy())


def patched(patch_id: str) -> bool:
    """Whether this run takes the code path of patch ``patch_id`` (docs/workflows.md,
    "Changing a workflow's code"): True for runs that reach this point on code with the
    patch (a marker step ``patch:<patch_id>`` is recorded), False for runs that went past
    it on code without it."""
    if not isinstance(patch_id, str) or not patch_id:
        raise InvalidArgument(f"a patch id must be a non-empty string, got {patch_id!r}")
    wf = _required("ms.patched")
    wf._check()
    name = f"patch:{patch_id}"
    n = wf.next_step
    rec = wf.history.steps.get(n)
    if rec is not None and rec.name != name:
        return False  # this run recorded another step here: the code before the patch
    if rec is None and wf.wait_past_here() is not None:
        return False  # this run went on past here, to a wait: the code before the patch
    wf.next_step += 1
    if rec is None:
        now = wf.engine.clock.now()
        wf._record(wf.step_record(n, name, now, 1, output=True))

    return True


# -- children ------------------------------------------------------------------------------------
def start_child(wf: WorkflowRun, req: SubmitRequest) -> tuple[str, str]:
    """Submit a child run as the workflow's next step (once across replays): its run id
    and task id."""
    n, rec = wf.replayed(f"submit:{req.name}")
    if rec is not None:
        child = wf.engine.get_run(str(rec.output))
        wf.children.add(child.run_id)
        return child.run_id, child.task_id
    req.parent_run_id = wf.ctx.run_id
    try:
        with telemetry.span(f"submit {req.name}", kind="producer", task=req.name) as span:
            run_id, task_id = wf.engine.start_child(
                wf.ctx.worker, wf.ctx.attempt_id, wf.ctx.run_id, n, req
            )
            telemetry.submitted(span, [run_id], req.correlation_id)
    except Fenced:
        raise wf._fenced() from None
    wf.children.add(run_id)
    return run_id, task_id


def publish_step(wf: WorkflowRun, req: PublishRequest) -> MessageRecord:
    """Publish a message as the workflow's next step (once across replays)."""
    n, rec = wf.replayed(f"publish:{req.topic}")
    if rec is not None:
        return msgspec.convert(rec.output, MessageRecord)
    try:
        return wf.engine.publish_step(wf.ctx.worker, wf.ctx.attempt_id, wf.ctx.run_id, n, req)
    except Fenced:
        raise wf._fenced() from None


def gather(*handles: RunHandle) -> list[Any]:
    """The outputs of these runs, in order, once all have ended (RunFailed / RunCanceled
    for the first that did not complete). In a workflow, for its children, the wait is
    durable: the run is suspended (reason ``child``) until they have all ended."""
    wf = current()
    ids = [h.run_id for h in handles]
    if wf is not None and ids and all(i in wf.children for i in ids):
        return wf.child_outputs(ids)
    return [h.result() for h in handles]


# -- sleeping and waiting --------------------------------------------------------------------------
def sleep(duration: float | timedelta) -> None:
    """Sleep durably inside a workflow: the wake time is recorded the first time, the run is
    suspended (reason ``sleep``) holding no worker slot, and ready at the wake time; a
    replay after it passes through."""
    d = seconds(duration, "ms.sleep duration")
    assert d is not None
    _required("ms.sleep").wait("sleep", lambda now: now + d)


def sleep_until(when: datetime) -> None:
    """Sleep durably until an aware datetime (``ms.sleep``)."""
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise InvalidArgument(
            f"ms.sleep_until needs a timezone-aware datetime, got {when!r} "
            "(e.g. datetime.now(timezone.utc) + timedelta(days=1))"
        )
    at = representable(from_datetime(when), f"ms.sleep_until {when.isoformat()}")
    _required("ms.sleep_until").wait("sleep", lambda now: at)


async def sleep_async(duration: float | timedelta) -> None:
    """``ms.sleep`` for ``async def`` workflows."""
    d = seconds(duration, "ms.sleep_async duration")
    assert d is not None
    wf = _required("ms.sleep_async")
    await asyncio.to_thread(wf.wait, "sleep", lambda now: now + d)


def _signal_wait(
    what: str, name: str, timeout: float | timedelta | None
) -> tuple[WorkflowRun, float | None]:
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"a signal name must be a non-empty string, got {name!r}")
    t = seconds(timeout, f"{what} timeout")
    return _required(what), t


def wait_for(name: str, timeout: float | timedelta | None = None) -> Any:
    """Wait durably for the signal ``name`` (``app.signal``): its payload, or None when
    ``timeout`` (recorded the first time) passes first. While waiting the run is
    suspended (reason ``signal``) holding no worker slot. Signals sent before the wait
    are kept for it; each is received once, in the order sent."""
    wf, t = _signal_wait("ms.wait_for", name, timeout)
    out = wf.wait("signal", lambda now: None if t is None else now + t, name=name)
    return None if out.timed_out else out.payload


async def wait_for_async(name: str, timeout: float | timedelta | None = None) -> Any:
    """``ms.wait_for`` for ``async def`` workflows."""
    wf, t = _signal_wait("ms.wait_for_async", name, timeout)
    out = await asyncio.to_thread(
        wf.wait, "signal", lambda now: None if t is None else now + t, name
    )
    return None if out.timed_out else out.payload


# -- the handler a worker runs for a workflow ----------------------------------------------------
def workflow_handler(app: App, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a workflow function for workers: it runs with its ``WorkflowRun``, and an
    attempt whose replay diverged (NonDeterminism, even if caught) ends suspended."""

    def ending(wf: WorkflowRun) -> None:
        if wf.diverged is not None:
            raise Diverged(wf.diverged)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            wf = await asyncio.to_thread(WorkflowRun.begin, app)
            token = _current.set(wf)
            try:
                value = await fn(*args, **kwargs)
            except Recorded:
                raise
            except BaseException:
                ending(wf)
                raise
            finally:
                _current.reset(token)
            ending(wf)
            return value

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        wf = WorkflowRun.begin(app)
        token = _current.set(wf)
        try:
            value = fn(*args, **kwargs)
        except Recorded:
            raise
        except BaseException:
            ending(wf)
            raise
        finally:
            _current.reset(token)
        ending(wf)
        return value

    return run
