"""The engine: commands in, events out, one transaction each.

Every public method here is a command. It opens one write transaction, loads the
records it needs into a (partial) reducer ``State``, decides which events follow from the
current state (``Batch.emit`` applies each through the reducer at once, so an event the
reducer would refuse is never written), saves the events and the touched records in that
same transaction, and wakes waiting workers after the commit.

Workers drive the engine through ``cycle`` (engine/turn.py): one transaction that records
finished attempts, expires stale leases, derives due cron occurrences, promotes due runs
and leases and starts new attempts. That is the group commit of the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..core import events as E
from ..core.errors import (
    InvalidArgument,
    UnknownRun,
    UnknownTask,
)
from ..core.model import QueueRecord, Run, WorkerRecord
from ..core.reducer import QUEUES, WORKERS
from ..core.schedule import validate_policy
from ..core.states import TERMINAL, RunState
from ..store.base import WriteTx
from .batch import Batch
from .bulk import BulkCommands, rerun_in
from .compaction import CompactionCommands
from .group import GroupCommit
from .messages import SubmitRequest, Submitted, TaskView
from .submission import submit_one
from .turn import WorkerTurns
from .verify import verify
from .why import Why, explain


def _check(req: SubmitRequest) -> None:
    """What a submission must be before it is decided (nothing written otherwise)."""
    validate_policy(req.policy)
    if req.options.max_attempts < 1:
        raise InvalidArgument(f"max_attempts must be >= 1, got {req.options.max_attempts}")


class Engine(WorkerTurns, BulkCommands, CompactionCommands):
    """Submission, operator commands and queries; the worker's commands come from
    ``WorkerTurns`` (engine/turn.py)."""

    # -- definitions ----------------------------------------------------------------------
    def define_many(self, definitions: dict[str, dict[str, Any]]) -> None:
        """Record task definitions (name and default options), those that changed only."""
        with self.store.read() as rtx:
            if all(rtx.definition(n) == d for n, d in definitions.items()):
                return

        def body(tx: WriteTx, b: Batch) -> None:
            for name, options in sorted(definitions.items()):
                if tx.definition(name) != options:
                    b.emit(E.task_defined(b.now, name, options))

        self.transact(body)

    def definition(self, name: str) -> dict[str, Any] | None:
        with self.store.read() as tx:
            return tx.definition(name)

    # -- submission -----------------------------------------------------------------------
    _submits: GroupCommit | None = None

    def submit(self, req: SubmitRequest, *, connection: Any = None) -> Submitted:
        """One submission. Callers submitting at the same time (the threads of a web
        server) share a commit: the first to find none under way commits every submission
        queued so far (engine/group.py). Its own group, never a worker loop's: a submit
        from a loop's thread (an ``on_attempt`` callback) must not wait for that loop."""
        if connection is not None:
            return self.submit_many([req], connection=connection)[0]
        _check(req)
        group = self._submits
        if group is None:
            group = self._submits = GroupCommit(self.transact)

        def body(tx: WriteTx, b: Batch) -> Submitted:
            out = submit_one(tx, b, req, b.submitted)
            b.wake = b.wake or bool(b.events)  # (as in submit_many)
            return out

        return group.run(body)

    def submit_many(
        self, reqs: Sequence[SubmitRequest], *, connection: Any = None
    ) -> list[Submitted]:
        """Submit in one transaction; with ``connection``, inside the caller's open
        transaction on it (``Transactor.transact``)."""
        for req in reqs:
            _check(req)

        def body(tx: WriteTx, b: Batch) -> list[Submitted]:
            seen: dict[tuple[str, str], Submitted] = {}
            out = [submit_one(tx, b, req, seen) for req in reqs]
            b.wake = bool(b.events)  # new runs, or a new next-due time for sleeping workers
            return out

        return self.transact(body, connection=connection)[0]

    def rerun(self, run_id: str) -> Submitted:
        """A new once-run of the task and arguments of ``run_id`` (in any state): a new
        task of policy once with the original's name, arguments and options, whose run
        says ``rerun_of``. The original task and its run accounting are left as they are."""
        return self.transact(lambda tx, b: rerun_in(tx, b, self._one_run(tx, b, run_id)))[0]

    # -- operator commands -------------------------------------------------------------
    def cancel_run(self, run_id: str, reason: str = "canceled") -> bool:
        def body(tx: WriteTx, b: Batch) -> bool:
            run = self._one_run(tx, b, run_id)
            if RunState(run.state) in TERMINAL:
                return False
            b.cancel(run, reason)
            return True

        return self.transact(body)[0]

    @staticmethod
    def _one_run(tx: WriteTx, b: Batch, run_id: str) -> Run:
        tx.load_runs([run_id], b.state)
        run = b.state.runs.get(run_id)
        if run is None:
            raise UnknownRun(f"no run {run_id!r} in this store; list runs with `mainspring runs`")
        return run

    def cancel_task(self, task_id: str) -> bool:
        def body(tx: WriteTx, b: Batch) -> bool:
            tx.load_tasks([task_id], b.state, lock=True)
            task = b.state.tasks.get(task_id)
            if task is None:
                raise UnknownTask(
                    f"no task {task_id!r} in this store; list tasks with `mainspring tasks --all`"
                )
            if task.canceled:
                return False
            b.emit(E.task_canceled(task, b.now, "canceled"))
            ids = tx.run_ids_of_task(task_id, active_only=True)
            tx.load_runs(ids, b.state)
            for rid in ids:
                run = b.state.runs[rid]
                if RunState(run.state) not in TERMINAL:  # it may have ended meanwhile
                    b.cancel(run, "task_canceled")
            return True

        return self.transact(body)[0]

    def resume_run(self, run_id: str) -> bool:
        def body(tx: WriteTx, b: Batch) -> bool:
            run = self._one_run(tx, b, run_id)
            if run.state != RunState.SUSPENDED:
                return False
            b.change(run, RunState.READY, "resumed")
            return True

        return self.transact(body)[0]

    def set_paused(self, paused: bool) -> bool:
        """Pause or resume the engine. Returns False when it already was so."""

        def body(tx: WriteTx, b: Batch) -> bool:
            if paused:
                tx.hold_leasing()  # no lease decided before it commits after it
            b.state.paused = tx.paused(lock=True)
            if b.state.paused == paused:
                return False
            b.emit(E.engine_paused(b.now, paused))
            b.wake = not paused
            return True

        return self.transact(body)[0]

    def set_queue_paused(self, queue: str, paused: bool) -> bool:
        """Pause or resume leasing from one queue. Returns False when it already was so."""

        def body(tx: WriteTx, b: Batch) -> bool:
            if paused:
                tx.hold_leasing()  # no lease decided before it commits after it
            tx.load_records(QUEUES, [queue], b.state)
            rec: QueueRecord | None = b.state.kind(QUEUES).get(queue)
            if (rec is not None and rec.paused_at is not None) == paused:
                return False
            b.emit(E.queue_paused(b.now, queue, paused))
            b.wake = not paused
            return True

        return self.transact(body)[0]

    def queues(self) -> tuple[list[QueueRecord], dict[str, dict[str, int]], dict[str, float]]:
        """The queues' flags, their runs per state, and their oldest ready run's time."""
        with self.store.read(snapshot=True) as tx:
            flags: list[QueueRecord] = tx.records(QUEUES)
            counts, oldest = tx.queue_counts()
        return flags, counts, oldest

    # -- queries ------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        with self.store.read() as tx:
            run = tx.get_run(run_id)
        if run is None:
            raise UnknownRun(f"no run {run_id!r} in this store; list runs with `mainspring runs`")
        return run

    def why(self, run_id: str) -> tuple[Run, list[Why]]:
        """The run and why it is where it is (engine/why.py)."""
        with self.store.read(snapshot=True) as tx:
            run = tx.get_run(run_id)
            if run is None:
                raise UnknownRun(
                    f"no run {run_id!r} in this store; list runs with `mainspring runs`"
                )
            return run, explain(tx, run, tx.get_task(run.task_id), self.clock.now())

    def tasks(
        self, active: bool = True, limit: int = 100, task_id: str | None = None
    ) -> list[TaskView]:
        """Tasks in creation order (or the one ``task_id``) with their run counts and next
        occurrence; raises UnknownTask for an unknown ``task_id``."""
        with self.store.read(snapshot=True) as tx:
            if task_id is not None:
                one = tx.get_task(task_id)
                if one is None:
                    raise UnknownTask(
                        f"no task {task_id!r} in this store; list tasks with `mainspring tasks --all`"
                    )
                tasks = [one]
            else:
                tasks = tx.query_tasks(active, limit)
            ids = [t.task_id for t in tasks]
            counts = tx.task_run_counts(ids)
            nxt = tx.next_scheduled(ids)
        return [
            TaskView(
                t,
                counts[t.task_id],
                None if t.canceled or t.policy.kind == "once" else nxt.get(t.task_id),
            )
            for t in tasks
        ]

    def workers(self) -> list[tuple[WorkerRecord, list[str]]]:
        """Live workers (heartbeat not expired), each with the runs it holds."""
        now = self.clock.now()
        with self.store.read(snapshot=True) as tx:
            live = [w for w in tx.records(WORKERS) if w.expires_at > now]
            held = tx.runs_held_by([w.worker_id for w in live])
        return [(w, held[w.worker_id]) for w in live]

    def is_idle(self) -> bool:
        with self.store.read() as tx:
            return tx.is_idle(self.clock.now())

    def paused(self) -> bool:
        """Whether the engine is paused (``app.pause()``): it leases nothing then."""
        with self.store.read() as tx:
            return tx.paused()

    def nothing_for(self, names: Sequence[str], queues: Sequence[str] | None) -> bool:
        """Nothing a worker of these tasks (and queues) could do, now or by waiting: the
        engine is paused, or no run of them is ready, leased, running, in retry_wait or
        due. Runs of other tasks and queues, and of paused queues, do not count (a burst
        worker's stop)."""
        with self.store.read() as tx:
            return tx.paused() or tx.is_idle(self.clock.now(), names, queues)

    def verify(self, progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Replay the log from the latest snapshot (or from empty) and compare with the
        stored projection (engine/verify.py)."""
        return verify(self.store, progress)
