"""The workflow commands: what a running workflow records (steps, children, sleeps and
waits), signals, and what wakes a suspended workflow (its wake time, a signal, its
children ending) or ends one early (a deadline, a canceled parent).

A running workflow's commands are fenced like an attempt's end: each checks, inside its
transaction, that the run is still ``running`` the same attempt under the same worker's
lease, and raises ``Fenced`` (writing nothing) when it is not, so a worker that lost its
lease can never record a step (docs/workflows.md, "Replay").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..core import events as E
from ..core.errors import MainspringError, UnknownExecution
from ..core.model import (
    ExecutionRecord,
    MessageRecord,
    Run,
    SignalRecord,
    StepRecord,
    TaskOptions,
    WaitRecord,
    signal_key,
    step_key,
)
from ..core.reducer import DEADLINES, EXECUTIONS, SIGNALS, STEPS, WAITS
from ..core.states import TERMINAL, AttemptResult, RunState
from ..store.base import WriteTx
from .batch import Batch
from .group import GroupCommit
from .messages import SubmitRequest
from .submission import submit_one
from .topics import PublishRequest, TopicCommands, message_doc

T = TypeVar("T")

#: How many due deadlines one housekeeping step enforces.
DEADLINE_LIMIT = 500


class Fenced(MainspringError):
    """The attempt recording this no longer holds its run (lease lost, run canceled)."""


@dataclass
class WaitOutcome:
    """What ``begin_wait`` decided: the run suspended (the attempt is over), or the wait is
    over already (``payload``: a signal's; ``timed_out``)."""

    suspended: bool
    payload: Any = None
    timed_out: bool = False


@dataclass
class History:
    """A workflow run's recorded steps and waits, by number (what a replay reads)."""

    steps: dict[int, StepRecord]
    waits: dict[int, WaitRecord]


class WorkflowCommands(TopicCommands):
    _group: GroupCommit | None = None

    @property
    def group(self) -> GroupCommit:
        """Where running workflows' commands queue for a shared transaction
        (engine/group.py)."""
        group = self._group
        if group is None:
            group = self._group = GroupCommit(self.transact)
        return group

    def _grouped(self, body: Callable[[WriteTx, Batch], T], run_id: str) -> T:
        """Run a running workflow's command (on ``run_id``) in a transaction shared with
        those of the workflows running beside it."""
        return self.group.run(body, run_id)

    # -- what a running workflow records ---------------------------------------------------
    def history(self, run_id: str) -> History:
        with self.store.read() as tx:
            return History(
                {s.number: s for s in tx.records(STEPS, where=("run_id", run_id))},
                {w.number: w for w in tx.records(WAITS, where=("run_id", run_id))},
            )

    @staticmethod
    def _holding(tx: WriteTx, b: Batch, worker: str, run_id: str, attempt_id: str) -> Run:
        tx.load_runs([run_id], b.state)
        run = b.state.runs.get(run_id)
        att = run.open_attempt() if run is not None else None
        if (
            run is None
            or run.state != RunState.RUNNING
            or att is None
            or att.attempt_id != attempt_id
            or run.lease_owner != worker
        ):
            raise Fenced(f"attempt {attempt_id} no longer holds run {run_id}")
        return run

    def record_step(
        self,
        worker: str,
        attempt_id: str,
        step: StepRecord,
        will_retry: bool = False,
        launches: Sequence[Any] = (),
        again: bool = False,
    ) -> None:
        """Record a step's end (or, ``will_retry``, one failed try of it) with its start,
        and what a completed step launched (its submissions and messages). ``again``: the
        step failed for good in an earlier attempt and ran again (its record is replaced)."""

        def body(tx: WriteTx, b: Batch) -> None:
            run = self._holding(tx, b, worker, step.run_id, attempt_id)
            if again:  # the reducer replaces only a record it sees failed
                tx.load_records(STEPS, [step.step_id], b.state)
            # (otherwise a step recorded twice is refused by its create-only row: no read)
            b.emit(E.step_started(run, b.now, step.number, step.name))
            b.emit(E.step_ended(run, b.now, step, will_retry))
            if launches and step.state == "completed":
                self.launch(tx, b, launches, run)

        self._grouped(body, step.run_id)

    def start_child(
        self, worker: str, attempt_id: str, run_id: str, number: int, req: SubmitRequest
    ) -> tuple[str, str]:
        """Submit a child run as step ``number`` of a workflow (its output: the child's
        run id), in one transaction; returns the child's run id and task id."""

        def body(tx: WriteTx, b: Batch) -> tuple[str, str]:
            run = self._holding(tx, b, worker, run_id, attempt_id)
            if req.execution_id is None and run.execution_id is not None:
                req.execution_id = f"{run.execution_id}/{number}"
            sub = submit_one(tx, b, req, {})
            child = sub.run_ids[0]
            self._launch_step(b, run, number, f"submit:{req.name}", child)
            return child, sub.task_id

        return self._grouped(body, run_id)

    def publish_step(
        self, worker: str, attempt_id: str, run_id: str, number: int, req: PublishRequest
    ) -> MessageRecord:
        """Publish a message as step ``number`` of a workflow (its output: the message),
        in one transaction."""

        def body(tx: WriteTx, b: Batch) -> MessageRecord:
            run = self._holding(tx, b, worker, run_id, attempt_id)
            msg = self.publish_in(tx, b, req, {}, run)
            self._launch_step(b, run, number, f"publish:{req.topic}", message_doc(msg))
            return msg

        return self._grouped(body, run_id)

    @staticmethod
    def _launch_step(b: Batch, run: Run, number: int, name: str, output: Any) -> None:
        """Step ``number`` of ``run``, a launch of its own, completed now with ``output``
        (a step recorded twice is refused by its create-only row)."""
        b.emit(E.step_started(run, b.now, number, name))
        done = StepRecord(
            step_id=step_key(run.run_id, number),
            run_id=run.run_id,
            number=number,
            name=name,
            state="completed",
            output=output,
            started_at=b.now,
            finished_at=b.now,
        )
        b.emit(E.step_ended(run, b.now, done))
        b.wake = True

    def begin_wait(
        self, worker: str, attempt_id: str, wait: WaitRecord, options: TaskOptions
    ) -> WaitOutcome:
        """A workflow sleeps or waits (``wait``: the record to start, or the one a replay
        found still waiting). When it can go on at once (a buffered signal, children
        already ended, a wake time passed) nothing suspends; otherwise the attempt ends
        ``suspended`` with the wait's kind as reason, until its wake time or timeout."""

        def body(tx: WriteTx, b: Batch) -> WaitOutcome:
            run = self._holding(tx, b, worker, wait.run_id, attempt_id)
            tx.load_records(WAITS, [wait.wait_id], b.state)
            rec: WaitRecord | None = b.state.kind(WAITS).get(wait.wait_id)
            if rec is None:
                if wait.kind == "child" and self._all_ended(tx, b, wait.children):
                    return WaitOutcome(False)  # nothing to wait for: nothing recorded
                b.emit(E.wait_started(run, b.now, wait))
                rec = b.state.kind(WAITS)[wait.wait_id]
            if rec.state != "waiting":
                return WaitOutcome(False, rec.payload, rec.timed_out)
            if rec.kind == "signal":
                sig = self._pending_signal(tx, b, run.run_id, rec.name)
                if sig is not None and (rec.until is None or sig.sent_at <= rec.until):
                    self._deliver(b, run, rec, sig)
                    return WaitOutcome(False, sig.payload)
            if rec.kind == "child" and self._all_ended(tx, b, rec.children):
                b.emit(E.wait_completed(run, b.now, rec, timed_out=False))
                return WaitOutcome(False)
            if rec.until is not None and rec.until <= b.now:
                timed_out = rec.kind != "sleep"
                b.emit(E.wait_completed(run, b.now, rec, timed_out=timed_out))
                return WaitOutcome(False, None, timed_out)
            b.close_attempt(run, options, AttemptResult.SUSPENDED, suspended=(rec.kind, rec.until))
            return WaitOutcome(True)

        return self._grouped(body, wait.run_id)

    @staticmethod
    def _all_ended(tx: WriteTx, b: Batch, run_ids: Sequence[str]) -> bool:
        tx.load_runs(run_ids, b.state)
        return all(RunState(b.state.runs[r].state) in TERMINAL for r in run_ids)

    @staticmethod
    def _pending_signal(
        tx: WriteTx, b: Batch, run_id: str, name: str | None
    ) -> SignalRecord | None:
        """The earliest signal ``name`` of the run that no wait received yet."""
        sigs: list[SignalRecord] = tx.records(SIGNALS, where=("run_id", run_id))
        loaded = b.state.kind(SIGNALS)
        for s in sigs:
            loaded.setdefault(s.signal_id, s)
        pending = [
            s
            for s in sorted(loaded.values(), key=lambda s: s.number)
            if s.run_id == run_id and s.name == name and s.received_by is None
        ]
        return pending[0] if pending else None

    @staticmethod
    def _deliver(b: Batch, run: Run, wait: WaitRecord, sig: SignalRecord) -> None:
        b.emit(E.signal_received(run, b.now, sig.signal_id, sig.name, wait.wait_id))
        b.emit(E.wait_completed(run, b.now, wait, timed_out=False))

    # -- signals ----------------------------------------------------------------------------
    def signal(
        self, target: str, name: str, payload: Any, idempotency_key: str | None = None
    ) -> bool:
        """Record a signal for the workflow run ``target`` (an execution id or a run id);
        a run suspended waiting for ``name`` receives it in the same transaction. False
        when ``idempotency_key`` was sent to it already (nothing is recorded)."""

        def body(tx: WriteTx, b: Batch) -> bool:
            run = self._target(tx, b, target)
            sigs: list[SignalRecord] = tx.records(SIGNALS, where=("run_id", run.run_id))
            if idempotency_key is not None and any(
                s.idempotency_key == idempotency_key for s in sigs
            ):
                return False  # sent already
            number = max((s.number for s in sigs), default=0) + 1
            sid = signal_key(run.run_id, number)
            for s in sigs:
                b.state.kind(SIGNALS)[s.signal_id] = s
            b.emit(E.signal_sent(run, b.now, sid, name, payload, idempotency_key))
            if run.state != RunState.SUSPENDED or run.waiting is None:
                return True  # kept until a wait_for(name) takes it (never, once it ended)
            tx.load_records(WAITS, [run.waiting], b.state)
            wait: WaitRecord | None = b.state.kind(WAITS).get(run.waiting)
            if wait is None or wait.kind != "signal" or wait.name != name:
                return True
            if wait.state != "waiting":
                return True
            if wait.until is not None and wait.until <= b.now:
                # its timeout came before this signal (no worker woke it yet): the wait
                # ends timed out, and the signal is kept for the next wait_for(name)
                self._wake_suspended(tx, b, [run])
                return True
            first = self._pending_signal(tx, b, run.run_id, name)
            assert first is not None
            self._deliver(b, run, wait, first)
            b.change(run, RunState.READY, "signal")
            return True

        return self.transact(body)[0]

    @staticmethod
    def _target(tx: WriteTx, b: Batch, target: str) -> Run:
        """The run an execution id (or a run id) names; UnknownExecution when none."""
        tx.load_records(EXECUTIONS, [target], b.state)
        ex: ExecutionRecord | None = b.state.kind(EXECUTIONS).get(target)
        run_id = ex.run_id if ex is not None else target
        tx.load_runs([run_id], b.state)
        run = b.state.runs.get(run_id)
        if run is None:
            raise UnknownExecution(
                f"no workflow execution or run {target!r} in this store; list runs with "
                "`mainspring runs`"
            )
        if not run.workflow:  # (a plain task's run would keep a signal no one receives)
            raise UnknownExecution(
                f"run {target!r} is a run of task {run.task_name!r}, not of a workflow: "
                "only workflows receive signals"
            )
        return run

    # -- queries ------------------------------------------------------------------------------
    def execution(self, execution_id: str) -> Run:
        with self.store.read() as tx:
            exes: list[ExecutionRecord] = tx.records(
                EXECUTIONS, where=("execution_id", execution_id)
            )
            run = tx.get_run(exes[0].run_id) if exes else None
        if run is None:
            raise UnknownExecution(
                f"no workflow execution {execution_id!r} in this store; a workflow started "
                "without one is found by its run id"
            )
        return run

    def steps(self, run_id: str) -> list[StepRecord]:
        with self.store.read() as tx:
            return list(tx.records(STEPS, where=("run_id", run_id)))

    def waits(self, run_id: str) -> list[WaitRecord]:
        with self.store.read() as tx:
            return list(tx.records(WAITS, where=("run_id", run_id)))

    # -- what wakes or ends workflows (housekeeping, and after every command) ------------------
    def _wake_suspended(self, tx: WriteTx, b: Batch, runs: Sequence[Run]) -> None:
        """Suspended runs whose wake time or wait timeout came: end the wait, make them
        ready (called by promotion, with the due runs loaded)."""
        keys = [r.waiting for r in runs if r.waiting is not None]
        tx.load_records(WAITS, keys, b.state)
        waits = b.state.kind(WAITS)
        for run in runs:
            rec: WaitRecord | None = waits.get(run.waiting) if run.waiting else None
            timed_out = rec is not None and rec.kind != "sleep"
            if rec is not None and rec.state == "waiting":
                b.emit(E.wait_completed(run, b.now, rec, timed_out=timed_out))
            b.change(run, RunState.READY, "timeout" if timed_out else "woken")

    def _enforce_deadlines(self, tx: WriteTx, b: Batch) -> None:
        due = tx.records(DEADLINES, at_most=("at", b.now), limit=DEADLINE_LIMIT)
        if not due:
            return
        ids = [d.run_id for d in due]
        tx.load_runs(ids, b.state)
        for rid in ids:
            run = b.state.runs.get(rid)
            if run is not None and RunState(run.state) not in TERMINAL:
                b.cancel(run, "deadline")

    def _settle(self, tx: WriteTx, b: Batch) -> None:
        """After a command's own decisions: a canceled workflow's children are canceled,
        a workflow waiting for children that have all ended goes on, and a delivery that
        ended gets its receipt."""
        done = 0
        while done < len(b.ended):  # (cancels below end more runs: they are settled too)
            run = b.state.runs[b.ended[done]]
            done += 1
            if run.delivery is not None:
                self._receipt(tx, b, run)
            if run.state == RunState.CANCELED and run.children:
                tx.load_runs(run.children, b.state)
                for cid in run.children:
                    child = b.state.runs[cid]
                    if RunState(child.state) not in TERMINAL:
                        b.cancel(child, "parent_canceled")
            if run.parent_run_id is not None:
                self._child_ended(tx, b, run.parent_run_id)

    def _child_ended(self, tx: WriteTx, b: Batch, parent_id: str) -> None:
        tx.load_runs([parent_id], b.state)
        parent = b.state.runs.get(parent_id)
        if parent is None or parent.state != RunState.SUSPENDED or parent.waiting is None:
            return
        tx.load_records(WAITS, [parent.waiting], b.state)
        wait: WaitRecord | None = b.state.kind(WAITS).get(parent.waiting)
        if wait is None or wait.kind != "child" or wait.state != "waiting":
            return
        if self._all_ended(tx, b, wait.children):
            b.emit(E.wait_completed(parent, b.now, wait, timed_out=False))
            b.change(parent, RunState.READY, "child")
