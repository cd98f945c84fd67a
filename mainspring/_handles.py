"""Handles: what a submission returns, to follow, wait for, cancel, resume and rerun it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import workflow
from ._records import LogEvent, RunInfo, StepInfo, log_event, run_info, step_info
from .core.clock import seconds
from .core.errors import (
    MainspringError,
    RunCanceled,
    RunFailed,
    refusing_bad_calls,
)
from .core.failures import PreconditionFailed
from .core.states import RunState
from .worker.context import current as context_now

if TYPE_CHECKING:
    from .app import App
    from .core.model import Run


@refusing_bad_calls
class RunHandle:
    """A submitted run.

    A run submitted inside a handler is written when that attempt commits successfully
    (lineage): until then ``status()``, ``result()`` and ``cancel()`` raise
    ``ms.PreconditionFailed("origin-committed")`` (a handler cannot wait on what it
    launched; a workflow waits durably)."""

    def __init__(
        self,
        app: App,
        run_id: str,
        task_id: str,
        origin: str | None = None,
        *,
        replayed: bool = False,
    ) -> None:
        self.app = app
        self.run_id = run_id
        self.task_id = task_id
        #: True when ``submit`` wrote nothing: an idempotent replay returned an existing run
        self.replayed = replayed
        self._created: Run | None = None  # as ``submit`` created it (the service's 201)
        self._origin = origin  # the attempt that launched it, while it may not be written

    def _committed(self) -> None:
        if self._origin is None:
            return
        ctx = context_now()
        if ctx is not None and ctx.attempt_id == self._origin:
            raise PreconditionFailed(
                "origin-committed",
                f"run {self.run_id} is written only when the attempt that submitted it "
                "commits: a handler cannot wait on what it launched (a workflow can: submit "
                "children from its body)",
            )
        self._origin = None  # out of the launching attempt: it committed, or never will

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
        self._committed()
        return RunState(self.app.engine.get_run(self.run_id).state)

    def result(self, timeout: float | timedelta | None = None) -> Any:
        """Wait for the run to end; its output, or RunFailed / RunCanceled / TimeoutError.

        Inside a workflow, for a child it started, the wait is durable: the workflow is
        suspended (reason ``child``) until the child has ended (``timeout`` is not used)."""
        self._committed()
        wf = workflow.current()
        if wf is not None and self.run_id in wf.children:
            return wf.child_outputs([self.run_id])[0]
        wait = seconds(timeout, "timeout")  # (NaN never ended a wait; a negative one at once)
        deadline = None if wait is None else time.monotonic() + wait
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
                    run=run_info(run),
                )
            if run.state == RunState.CANCELED:
                raise RunCanceled(
                    f"run {self.run_id} of {run.task_name} was canceled", run=run_info(run)
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"run {self.run_id} is still {run.state} after {timeout} s: {self._held()} "
                    f"(`mainspring why {self.run_id}`)"
                )
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            if waiter is None:
                time.sleep(pause)
            elif waiter.wait_for(self.run_id, pause):
                continue  # its commit is in: read it now, and keep the poll where it was
            # with a waiter every committer tells, the poll is only a safety net
            delay = min(delay * 1.25, 0.25 if waiter is not None and waiter.heard else 0.025)

    def _held(self) -> str:
        """What keeps the run from ending, as ``app.why`` says it (a timed-out wait)."""
        try:
            _, reasons = self.app.engine.why(self.run_id)
        except MainspringError:
            reasons = []
        return "; ".join(w.text for w in reasons) or "it has not ended"

    def steps(self) -> list[StepInfo]:
        """The steps this workflow run recorded, in step-number order (sleeps and waits
        are not steps)."""
        return [step_info(s) for s in self.app.engine.steps(self.run_id)]

    def cancel(self) -> bool:
        """Cancel the run; False when it already ended."""
        self._committed()
        return self.app.engine.cancel_run(self.run_id)

    def resume(self) -> bool:
        """Move a suspended run back to ready; False when it is not suspended."""
        return self.app.engine.resume_run(self.run_id)

    def rerun(self) -> RunHandle:
        """Submit a new once-run of this run's task and arguments (whatever this run's
        state); the new run's ``RunInfo.rerun_of`` is this run's id."""
        sub = self.app.engine.rerun(self.run_id)
        return RunHandle(self.app, sub.run_ids[0], sub.task_id)

    def history(self) -> list[LogEvent]:
        """Every log event of this run still in the log, in order (compaction removes
        those before its snapshot: ``app.compact``)."""
        with self.app.store.read() as tx:
            return [log_event(e) for e in tx.events(0, self.run_id, 1_000_000)]


@refusing_bad_calls
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
            return [run_info(r) for r in tx.query_runs(None, None, 1_000_000, task_id=self.task_id)]

    def cancel(self) -> bool:
        """Cancel the task and its non-terminal runs; False if already canceled."""
        return self.app.engine.cancel_task(self.task_id)
