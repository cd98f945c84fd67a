"""A batch: the events one transaction decides, each applied to the state as it is emitted.

``Batch.emit`` runs the reducer at once, so an event the reducer would refuse is never
written; the building blocks below (a state change, closing an attempt with its retry
decision, a cancel) are the engine's vocabulary for its commands.
"""

from __future__ import annotations

from typing import Any

from ..core import events as E
from ..core.failures import FailureClass, RetryClass
from ..core.ids import uuid7
from ..core.model import Event, Run, Task, TaskOptions
from ..core.reducer import State, apply
from ..core.retry import decide
from ..core.states import TERMINAL, AttemptResult, RunState
from ..store.base import WriteTx


class Batch:
    """Events decided in one transaction, each applied to ``state`` as it is emitted."""

    def __init__(self, state: State, now: float) -> None:
        self.state = state
        self.now = now
        self.events: list[Event] = []
        self.saved = 0
        self.wake = False
        self.ended: list[str] = []  # runs that reached a terminal state
        self.next_at: float | None = None  # a rate-limited run may start then
        #: submissions decided in this transaction, by (task name, idempotency key): shared
        #: by the submits a group commit decides together (engine/submission.py ``Seen``)
        self.submitted: dict[tuple[str, str], Any] = {}

    def emit(self, ev: Event) -> None:
        apply(self.state, ev)  # validates; raises before anything is written
        self.events.append(ev)
        if ev.type == E.RUN_STATE_CHANGED:
            to = ev.data["to"]
            if to == RunState.READY:
                self.wake = True
            elif to in TERMINAL and ev.run_id is not None:
                self.ended.append(ev.run_id)

    def flush(self, tx: WriteTx) -> None:
        """Write what was decided so far (still inside the transaction)."""
        tx.save(self.state, self.events[self.saved :])
        self.saved = len(self.events)

    # -- building blocks -------------------------------------------------------------
    def change(self, run: Run, to: RunState, reason: str, *, due_at: float | None = None) -> None:
        # (str(): a StrEnum's value, without the enum's property on the hot path)
        self.emit(E.state_changed(run, str(to), self.now, reason, due_at=due_at))

    def close_attempt(
        self,
        run: Run,
        options: TaskOptions,
        result: AttemptResult,
        *,
        error: str | None = None,
        output: Any = None,
        traceback: str | None = None,
        retry_delay: float | None = None,
        lease_event: str = E.LEASE_RELEASED,
        suspended: tuple[str, float | None] | None = None,
        failure_class: str | None = None,
        retry_class: str | None = None,
    ) -> RunState:
        """Close the open attempt of a running run, drop its lease, apply the retry decision.

        ``suspended=(reason, due_at)``: a workflow suspends itself (a sleep, a wait, a
        replay that diverged) with that reason, until ``due_at`` (None: until woken)."""
        att = run.open_attempt()
        assert att is not None
        if result == AttemptResult.LOST:
            if error is not None:
                error = f"lost: {error}"  # a failed run's error then says why it failed
            # the worker holding it went silent: contact was lost, and trying elsewhere is
            # safe (its attempts do not count; ``max_lost`` bounds them)
            failure_class = failure_class or FailureClass.TRANSPORT_ERROR.value
            retry_class = retry_class or RetryClass.SAFE_RETRY.value
        owner = run.lease_owner
        if lease_event == E.LEASE_EXPIRED and owner is not None:
            self.emit(E.lease(E.LEASE_EXPIRED, run, self.now, owner))
            owner = None
        self.emit(
            E.attempt_finished(
                run,
                self.now,
                att.attempt_id,
                result=str(result),
                error=error,
                output=output,
                traceback=traceback,
                failure_class=failure_class,
                retry_class=retry_class,
            )
        )
        if owner is not None:
            self.emit(E.lease(E.LEASE_RELEASED, run, self.now, owner))
        if suspended is not None and result == AttemptResult.SUSPENDED:
            self.change(run, RunState.SUSPENDED, suspended[0], due_at=suspended[1])
            return RunState.SUSPENDED
        d = decide(run, options, result, self.now, retry_delay=retry_delay)
        self.change(run, d.to, d.reason, due_at=d.due_at)
        return d.to

    def cancel(self, run: Run, reason: str) -> None:
        if run.state == RunState.RUNNING and run.open_attempt() is not None:
            att = run.open_attempt()
            assert att is not None
            self.emit(
                E.attempt_finished(
                    run,
                    self.now,
                    att.attempt_id,
                    result=AttemptResult.TERMINAL.value,
                    error=f"canceled: {reason}",
                    output=None,
                )
            )
        if run.lease_owner is not None:
            self.emit(E.lease(E.LEASE_RELEASED, run, self.now, run.lease_owner))
        self.change(run, RunState.CANCELED, reason)

    def derive(
        self, task: Task, at: float, rerun_of: str | None = None, run_id: str | None = None
    ) -> str:
        """Create the run of ``task`` at ``at`` (ready at once when due)."""
        run_id = run_id or uuid7()
        self.emit(E.run_created(task, run_id, self.now, at, rerun_of))
        run = self.state.runs[run_id]
        if at <= self.now:
            self.change(run, RunState.READY, "due")
        return run_id
