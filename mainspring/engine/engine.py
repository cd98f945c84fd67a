"""The engine: commands in, events out, one transaction each.

Every public method here is a command. It opens one write transaction, loads the
records it needs into a (partial) reducer ``State``, decides which events follow from the
current state (``Batch.emit`` applies each through the reducer at once, so an event the
reducer would refuse is never written), saves the events and the touched records in that
same transaction, and wakes waiting workers after the commit.

Workers drive the engine through ``cycle``: one transaction that records finished
attempts, expires stale leases, derives due cron occurrences, promotes due runs and leases
and starts new attempts. That is the group commit of the hot path.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from ..core import events as E
from ..core.clock import Clock, SystemClock
from ..core.errors import IdempotencyConflict, InvalidSchedule, UnknownRun
from ..core.ids import uuid7
from ..core.model import Event, Policy, Run, Task, TaskOptions
from ..core.reducer import State, apply, replay
from ..core.retry import decide
from ..core.schedule import cron_step, initial_occurrences, validate_policy
from ..core.states import TERMINAL, AttemptResult, RunState
from ..store.base import Conflict, Store, Tx

#: How many rows each housekeeping step handles per cycle.
STEP_LIMIT = 500
#: How often a command is re-run when a concurrent transaction conflicted with it.
MAX_CONFLICT_RETRIES = 30

T = TypeVar("T")


class Batch:
    """Events decided in one transaction, each applied to ``state`` as it is emitted."""

    def __init__(self, state: State, now: float) -> None:
        self.state = state
        self.now = now
        self.events: list[Event] = []
        self.saved = 0
        self.wake = False
        self.ended: list[str] = []  # runs that reached a terminal state

    def emit(self, ev: Event) -> None:
        apply(self.state, ev)  # validates; raises before anything is written
        self.events.append(ev)
        if ev.type == E.RUN_STATE_CHANGED:
            to = ev.data["to"]
            if to == RunState.READY:
                self.wake = True
            elif to in TERMINAL and ev.run_id is not None:
                self.ended.append(ev.run_id)

    def flush(self, tx: Tx) -> None:
        """Write what was decided so far (still inside the transaction)."""
        tx.save(self.state, self.events[self.saved :])
        self.saved = len(self.events)

    # -- building blocks -------------------------------------------------------------
    def change(self, run: Run, to: RunState, reason: str, **extra: Any) -> None:
        self.emit(E.state_changed(run, to.value, self.now, reason, **extra))

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
    ) -> RunState:
        """Close the open attempt of a running run, drop its lease, apply the retry decision."""
        att = run.open_attempt()
        assert att is not None
        if result == AttemptResult.LOST and error is not None:
            error = f"lost: {error}"  # a failed run's error then says why it failed
        data: dict[str, Any] = {"result": result.value, "error": error, "output": output}
        if traceback:
            data["traceback"] = traceback
        owner = run.lease_owner
        if lease_event == E.LEASE_EXPIRED and owner is not None:
            self.emit(E.run_event(E.LEASE_EXPIRED, run, self.now, owner=owner))
            owner = None
        self.emit(E.run_event(E.ATTEMPT_FINISHED, run, self.now, att.attempt_id, **data))
        if owner is not None:
            self.emit(E.run_event(E.LEASE_RELEASED, run, self.now, owner=owner))
        d = decide(run, options, result, self.now, retry_delay=retry_delay)
        extra: dict[str, Any] = {}
        if d.due_at is not None:
            extra["due_at"] = d.due_at
        self.change(run, d.to, d.reason, **extra)
        return d.to

    def cancel(self, run: Run, reason: str) -> None:
        if run.state == RunState.RUNNING and run.open_attempt() is not None:
            att = run.open_attempt()
            assert att is not None
            self.emit(
                E.run_event(
                    E.ATTEMPT_FINISHED,
                    run,
                    self.now,
                    att.attempt_id,
                    result=AttemptResult.TERMINAL.value,
                    error=f"canceled: {reason}",
                    output=None,
                )
            )
        if run.lease_owner is not None:
            self.emit(E.run_event(E.LEASE_RELEASED, run, self.now, owner=run.lease_owner))
        self.change(run, RunState.CANCELED, reason)


@dataclass
class SubmitRequest:
    """A submission, with the facade's resolved options."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: TaskOptions
    policy: Policy = field(default_factory=Policy)
    idempotency_key: str | None = None
    execution_id: str | None = None
    correlation_id: str | None = None
    concurrency_key: str | None = None


@dataclass
class Submitted:
    task_id: str
    run_ids: list[str]
    replayed: bool = False


@dataclass
class Finished:
    """A worker's report of one attempt's end."""

    run_id: str
    attempt_id: str
    result: AttemptResult
    output: Any = None
    error: str | None = None
    traceback: str | None = None
    retry_delay: float | None = None
    options: TaskOptions | None = None  # the task's options, as leased (saves a lookup)
    snapshot: bytes | None = None  # ``Leased.snapshot``: lets the engine decide before locking


@dataclass
class Leased:
    """A run this worker now holds, with its open attempt."""

    run_id: str
    task_id: str
    task_name: str
    attempt_id: str
    attempt: int
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float | None
    lease_expires_at: float
    execution_id: str | None
    correlation_id: str | None
    idempotency_key: str | None
    options: TaskOptions
    #: the run as the leasing transaction stored it (``snapshot_run``); a worker hands it
    #: back in ``Finished`` so that the next turn decides the attempt's end before it takes
    #: the store's write lock, and writes it only if the stored run is still exactly this
    snapshot: bytes | None = None


#: Encoding of ``Leased.snapshot`` (internal to one worker process: never stored).
_snap_enc = msgspec.msgpack.Encoder()
_snap_dec = msgspec.msgpack.Decoder(Run)


def snapshot_run(run: Run) -> bytes:
    return _snap_enc.encode(run)


class _Stale(Conflict):
    """A run decided ahead of the lock changed meanwhile: decide again, under the lock."""


@dataclass
class CycleResult:
    leased: list[Leased]
    accepted: list[str]  # run ids whose finished attempt was recorded
    rejected: list[str]  # run ids whose report was fenced out (lease lost, run canceled)
    next_due: float | None = None  # earliest time a scheduled / retry_wait run comes due
    lost: list[str] = field(default_factory=list)  # held runs this worker no longer holds


class Engine:
    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()

    # -- definitions ----------------------------------------------------------------------
    def define(self, name: str, options: dict[str, Any]) -> None:
        """Record a task definition (name and default options) if it changed."""
        with self.store.read() as rtx:
            if rtx.definition(name) == options:
                return

        def body(tx: Tx, b: Batch) -> None:
            if tx.definition(name) != options:
                b.emit(E.event(E.TASK_DEFINED, b.now, data={"name": name, "options": options}))

        self.transact(body)

    def definition(self, name: str) -> dict[str, Any] | None:
        with self.store.read() as tx:
            return tx.definition(name)

    # -- submission -----------------------------------------------------------------------
    def submit(self, req: SubmitRequest) -> Submitted:
        return self.submit_many([req])[0]

    def submit_many(self, reqs: Sequence[SubmitRequest]) -> list[Submitted]:
        for req in reqs:
            validate_policy(req.policy)
            if req.options.max_attempts < 1:
                raise InvalidSchedule(f"max_attempts must be >= 1, got {req.options.max_attempts}")

        def body(tx: Tx, b: Batch) -> list[Submitted]:
            seen: dict[tuple[str, str], Submitted] = {}
            out = [self._submit_one(tx, b, req, seen) for req in reqs]
            b.wake = bool(b.events)  # new runs, or a new next-due time for sleeping workers
            return out

        return self.transact(body)[0]

    def _submit_one(
        self, tx: Tx, b: Batch, req: SubmitRequest, seen: dict[tuple[str, str], Submitted]
    ) -> Submitted:
        if req.idempotency_key is not None:
            ikey = (req.name, req.idempotency_key)
            existing = tx.task_by_idempotency(req.name, req.idempotency_key)
            if existing is None and ikey in seen:
                existing = b.state.tasks[seen[ikey].task_id]
            if existing is not None:
                if existing.args != req.args or existing.kwargs != req.kwargs:
                    raise IdempotencyConflict(
                        f"idempotency key {req.idempotency_key!r} of task {req.name!r} was "
                        f"already used with other arguments (task {existing.task_id}); use a "
                        f"new key for a new submission"
                    )
                run_ids = tx.run_ids_of_task(existing.task_id) or (
                    seen[ikey].run_ids if ikey in seen else []
                )
                return Submitted(existing.task_id, run_ids, replayed=True)
        now = b.now
        occurrences = initial_occurrences(req.policy, now)
        if not occurrences:
            raise InvalidSchedule(
                f"the schedule of {req.name!r} has no occurrence after now ({req.policy.cron!r}); "
                "check the expression's year and date fields"
            )
        task_id = uuid7()
        b.emit(
            E.event(
                E.TASK_CREATED,
                now,
                task_id=task_id,
                correlation_id=req.correlation_id,
                execution_id=req.execution_id,
                data={
                    "name": req.name,
                    "args": req.args,
                    "kwargs": req.kwargs,
                    "policy": msgspec.to_builtins(req.policy),
                    "options": msgspec.to_builtins(req.options),
                    "idempotency_key": req.idempotency_key,
                    "concurrency_key": req.concurrency_key,
                },
            )
        )
        task = b.state.tasks[task_id]
        run_ids = [self._derive(b, task, at) for at in occurrences]
        sub = Submitted(task_id, run_ids)
        if req.idempotency_key is not None:
            seen[(req.name, req.idempotency_key)] = sub
        return sub

    def _derive(self, b: Batch, task: Task, at: float) -> str:
        run_id = uuid7()
        b.emit(
            E.event(
                E.RUN_CREATED,
                b.now,
                task_id=task.task_id,
                run_id=run_id,
                correlation_id=task.correlation_id,
                execution_id=task.execution_id,
                data={
                    "state": RunState.SCHEDULED.value,
                    "scheduled_at": at,
                    "index": task.derived,
                    "priority": task.options.priority,
                    "queue": task.options.queue,
                    "concurrency_key": task.concurrency_key,
                },
            )
        )
        run = b.state.runs[run_id]
        if at <= b.now:
            b.change(run, RunState.READY, "due")
        return run_id

    # -- operator commands -------------------------------------------------------------
    def cancel_run(self, run_id: str, reason: str = "canceled") -> bool:
        def body(tx: Tx, b: Batch) -> bool:
            run = self._one_run(tx, b, run_id)
            if RunState(run.state) in TERMINAL:
                return False
            b.cancel(run, reason)
            return True

        return self.transact(body)[0]

    @staticmethod
    def _one_run(tx: Tx, b: Batch, run_id: str) -> Run:
        tx.load_runs([run_id], b.state)
        run = b.state.runs.get(run_id)
        if run is None:
            raise UnknownRun(f"no run {run_id!r} in this store; list runs with `mainspring runs`")
        return run

    def cancel_task(self, task_id: str) -> bool:
        def body(tx: Tx, b: Batch) -> bool:
            tx.load_tasks([task_id], b.state, lock=True)
            task = b.state.tasks.get(task_id)
            if task is None:
                raise UnknownRun(f"no task {task_id!r} in this store")
            if task.canceled:
                return False
            b.emit(
                E.event(
                    E.TASK_CANCELED,
                    b.now,
                    task_id=task_id,
                    correlation_id=task.correlation_id,
                    execution_id=task.execution_id,
                    data={"reason": "canceled"},
                )
            )
            ids = tx.run_ids_of_task(task_id, active_only=True)
            tx.load_runs(ids, b.state)
            for rid in ids:
                run = b.state.runs[rid]
                if RunState(run.state) not in TERMINAL:  # it may have ended meanwhile
                    b.cancel(run, "task_canceled")
            return True

        return self.transact(body)[0]

    def resume_run(self, run_id: str) -> bool:
        def body(tx: Tx, b: Batch) -> bool:
            run = self._one_run(tx, b, run_id)
            if run.state != RunState.SUSPENDED:
                return False
            b.change(run, RunState.READY, "resumed")
            return True

        return self.transact(body)[0]

    def set_paused(self, paused: bool) -> bool:
        """Pause or resume the engine. Returns False when it already was so."""

        def body(tx: Tx, b: Batch) -> bool:
            b.state.paused = tx.paused(lock=True)
            if b.state.paused == paused:
                return False
            b.emit(E.event(E.ENGINE_PAUSED if paused else E.ENGINE_RESUMED, b.now))
            b.wake = not paused
            return True

        return self.transact(body)[0]

    # -- the worker's group commit ---------------------------------------------------------
    def cycle(
        self,
        worker: str,
        names: Sequence[str],
        queues: Sequence[str] | None,
        finished: Sequence[Finished],
        want: int,
        lease_seconds: float,
        housekeeping: bool = True,
        held: Sequence[str] = (),
        next_due: bool = False,
    ) -> CycleResult:
        """One worker turn in one transaction (see the module docstring).

        ``held`` names the runs whose handlers this worker is running; with
        ``housekeeping``, the result's ``lost`` lists those it no longer holds (canceled,
        or the lease expired), so their handlers can be told. With ``housekeeping`` or
        ``next_due``, the result's ``next_due`` is the store's next due time.
        """
        if housekeeping and not finished and not held:
            # an idle worker's poll: one cheap read, and a write only when there is work
            with self.store.read() as rtx:
                work, due = rtx.probe(self.clock.now(), names if want > 0 else [], queues)
            if not work:
                return CycleResult([], [], [], due)

        accepted: list[str] = []
        rejected: list[str] = []
        # The attempts that ended are decided before the write lock is taken, on the runs
        # as this worker leased them (``Finished.snapshot``), when the store can write them
        # only if unchanged since; if any changed meanwhile (a renewal, a cancel, an
        # expiry), the transaction is dropped and they are decided again under the lock.
        ahead: list[Run] = []
        decide_ahead = (
            self.store.fenced_updates
            and bool(finished)
            and all(f.snapshot is not None and f.options is not None for f in finished)
        )

        def prepare(b: Batch) -> None:
            ahead.clear()
            if decide_ahead:
                for f in finished:
                    assert f.snapshot is not None
                    ahead.append(_snap_dec.decode(f.snapshot))
                    b.state.runs[f.run_id] = _snap_dec.decode(f.snapshot)
                self._record_finished(b, worker, finished, accepted, rejected)

        def body(tx: Tx, b: Batch) -> CycleResult:
            nonlocal decide_ahead
            st = b.state
            if ahead:
                if not tx.update_runs_if_unchanged(ahead, [st.runs[r.run_id] for r in ahead]):
                    decide_ahead = False
                    raise _Stale("a finished run changed since it was leased")
                st.dirty_runs.difference_update(r.run_id for r in ahead)  # written just now
            elif finished:
                tx.load_runs([f.run_id for f in finished], st)
                tx.load_tasks(
                    [
                        st.runs[f.run_id].task_id
                        for f in finished
                        if f.options is None and f.run_id in st.runs
                    ],
                    st,
                )
                self._record_finished(b, worker, finished, accepted, rejected)
            if finished and housekeeping:
                b.flush(tx)  # so that promotion sees runs that went to retry_wait
            # when retries were decided here, say when the first comes due, so that the
            # worker wakes for it rather than at its next poll
            waits = [st.runs[r].due_at for r in accepted if st.runs[r].state == RunState.RETRY_WAIT]
            due = min(waits) if waits else None
            lost: list[str] = []
            if housekeeping:
                if held:
                    owners = tx.lease_owners(held)
                    lost = [rid for rid in held if owners.get(rid) != worker]
                self._expire(tx, b)
                self._derive_cron(tx, b)
                self._promote(tx, b)
            if housekeeping or next_due:
                b.flush(tx)  # (the retries decided above are due times too)
                due = tx.next_due()
            leased: list[Leased] = []
            if want > 0 and names:  # (a paused engine has no candidates)
                leased = self._lease(tx, b, worker, names, queues, want, lease_seconds)
            return CycleResult(leased, accepted, rejected, due, lost)

        return self.transact(body, prepare)[0]

    @staticmethod
    def _record_finished(
        b: Batch,
        worker: str,
        finished: Sequence[Finished],
        accepted: list[str],
        rejected: list[str],
    ) -> None:
        """Close the attempts ``finished`` reports, in ``b``; fence out stale reports."""
        accepted.clear()
        rejected.clear()
        st = b.state
        for f in finished:
            run = st.runs.get(f.run_id)
            att = run.open_attempt() if run is not None else None
            if (
                run is None
                or run.state != RunState.RUNNING
                or att is None
                or att.attempt_id != f.attempt_id
                or run.lease_owner != worker
            ):
                rejected.append(f.run_id)  # fenced: the lease was lost meanwhile
                continue
            b.close_attempt(
                run,
                f.options or st.tasks[run.task_id].options,
                f.result,
                error=f.error,
                output=f.output,
                traceback=f.traceback,
                retry_delay=f.retry_delay,
            )
            accepted.append(f.run_id)

    def housekeeping(self) -> int:
        """Expire leases, derive cron occurrences and promote due runs; returns events written."""

        def body(tx: Tx, b: Batch) -> None:
            self._expire(tx, b)
            self._derive_cron(tx, b)
            self._promote(tx, b)

        return len(self.transact(body)[1].events)

    def transact(
        self,
        body: Callable[[Tx, Batch], T],
        prepare: Callable[[Batch], None] | None = None,
    ) -> tuple[T, Batch]:
        """Run ``body`` in one write transaction and save what it decided.

        ``body`` gets the transaction and a fresh ``Batch``; what it emits is written with
        its records in the same transaction. When the batch says ``wake`` (a run became
        ready, or something else waiting workers should look at), the commit wakes them. When the store reports a ``Conflict`` (another
        transaction got in the way: a deadlock, a duplicate idempotency key, a connection
        lost before the commit) nothing was written, and ``body`` runs again from scratch.

        ``prepare`` decides on records known ahead before the write transaction begins
        (``cycle``: attempts that ended); ``body`` then checks that they are unchanged.
        """
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            b = Batch(State(), self.clock.now())
            if prepare is not None:
                prepare(b)
            try:
                with self.store.write() as tx:
                    out = body(tx, b)
                    b.flush(tx)
                    if b.wake:
                        tx.wake_on_commit()
                    if b.ended:
                        tx.ended_on_commit(b.ended)
                return out, b
            except Conflict as exc:
                if attempt == MAX_CONFLICT_RETRIES:
                    raise
                if isinstance(exc, _Stale):
                    continue  # no one to wait for: body now decides under the lock
                time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.25)))
        raise AssertionError("unreachable")

    def _expire(self, tx: Tx, b: Batch) -> None:
        ids = tx.expired_lease_run_ids(b.now, STEP_LIMIT)
        if not ids:
            return
        st = b.state
        tx.load_runs(ids, st)
        tx.load_tasks([st.runs[i].task_id for i in ids], st)
        for rid in ids:
            run = st.runs[rid]
            if run.lease_owner is None:
                continue
            if run.state == RunState.RUNNING and run.open_attempt() is not None:
                b.close_attempt(
                    run,
                    st.tasks[run.task_id].options,
                    AttemptResult.LOST,
                    error=f"the lease of worker {run.lease_owner} expired (the worker "
                    "stopped renewing it)",
                    lease_event=E.LEASE_EXPIRED,
                )
            else:
                b.emit(E.run_event(E.LEASE_EXPIRED, run, b.now, owner=run.lease_owner))
                if run.state == RunState.LEASED:
                    b.change(run, RunState.READY, "lease_expired")
        b.flush(tx)

    def _derive_cron(self, tx: Tx, b: Batch) -> None:
        ids = tx.cron_due_task_ids(b.now, STEP_LIMIT)
        if not ids:
            return
        st = b.state
        tx.load_tasks(ids, st, lock=True)  # (claimed already where the store claims)
        for tid in ids:
            task = st.tasks[tid]
            if task.canceled or task.cursor is None or task.cursor > b.now:
                continue
            step = cron_step(task.policy, task.derived, task.cursor, b.now)
            if step.skip_overdue:
                overdue = [
                    r.run_id
                    for r in tx.query_runs(None, None, 10_000, task_id=tid)
                    if r.scheduled_at == task.cursor
                ]
                tx.load_runs(overdue, st)  # locked where the store locks: decide on them now
                for rid in overdue:
                    if st.runs[rid].state in (RunState.SCHEDULED, RunState.READY):
                        b.cancel(st.runs[rid], "misfire_skipped")
            for at in step.create:
                self._derive(b, task, at)
        b.flush(tx)

    def _promote(self, tx: Tx, b: Batch) -> None:
        ids = tx.due_run_ids(b.now, STEP_LIMIT)
        if not ids:
            return
        st = b.state
        tx.load_runs(ids, st)
        for rid in ids:
            run = st.runs[rid]
            if run.state in (RunState.SCHEDULED, RunState.RETRY_WAIT) and run.due_at <= b.now:
                b.change(run, RunState.READY, "due" if run.state == RunState.SCHEDULED else "retry")
        b.flush(tx)

    def _lease(
        self,
        tx: Tx,
        b: Batch,
        worker: str,
        names: Sequence[str],
        queues: Sequence[str] | None,
        want: int,
        lease_seconds: float,
    ) -> list[Leased]:
        st = b.state
        chosen: list[Run] = []
        holders: dict[str, set[str] | None] = {}
        considered: set[str] = set()
        page = max(want, 8)  # further pages only when keys leave candidates behind
        offset = 0
        while len(chosen) < want:
            cands = tx.ready_candidates(b.now, queues, names, page, offset)
            keys = {c.concurrency_key for c in cands if c.concurrency_key is not None}
            keys -= set(holders)
            if keys:
                found = tx.key_holders(sorted(keys))
                for key, ids in found.items():
                    # runs changed in this transaction but not yet saved: memory is current
                    holders[key] = (
                        None
                        if ids is None
                        else {i for i in ids if i not in st.runs or st.runs[i].holds_key}
                    )
            for c in cands:
                if len(chosen) >= want:
                    break
                if c.run_id in considered:
                    continue  # pages shift when other writers free rows: a run comes back
                considered.add(c.run_id)
                run = st.runs.setdefault(c.run_id, c)
                if run.state != RunState.READY:
                    continue
                k = run.concurrency_key
                if k is not None:
                    held_by = holders[k]
                    if held_by is None:
                        continue  # another transaction is deciding this key right now
                    if len(held_by - {run.run_id}) >= run.concurrency_limit:
                        continue  # the key is full: leave the run ready
                    held_by.add(run.run_id)
                chosen.append(run)
            if len(cands) < page or offset >= 1000:
                break
            offset += page
        if not chosen:
            return []
        tx.load_tasks([r.task_id for r in chosen], st)
        expires = b.now + lease_seconds
        out: list[Leased] = []
        for run in chosen:
            task = st.tasks[run.task_id]
            b.change(run, RunState.LEASED, "leased")
            b.emit(E.run_event(E.LEASE_ACQUIRED, run, b.now, owner=worker, expires_at=expires))
            b.change(run, RunState.RUNNING, "started")
            attempt_id = uuid7()
            number = len(run.attempts) + 1
            b.emit(
                E.run_event(E.ATTEMPT_STARTED, run, b.now, attempt_id, number=number, worker=worker)
            )
            out.append(
                Leased(
                    run_id=run.run_id,
                    task_id=run.task_id,
                    task_name=run.task_name,
                    attempt_id=attempt_id,
                    attempt=number,
                    args=task.args,
                    kwargs=task.kwargs,
                    timeout=task.options.timeout,
                    lease_expires_at=expires,
                    execution_id=run.execution_id,
                    correlation_id=run.correlation_id,
                    idempotency_key=run.idempotency_key,
                    options=task.options,
                    snapshot=snapshot_run(run),
                )
            )
        return out

    def renew(
        self,
        worker: str,
        run_ids: Sequence[str],
        lease_seconds: float,
        snapshots: dict[str, bytes] | None = None,
    ) -> set[str]:
        """Extend this worker's leases. Returns the run ids whose lease it no longer holds.

        ``snapshots`` (when given) gets each renewed run's new ``Leased.snapshot``."""
        if not run_ids:
            return set()

        def body(tx: Tx, b: Batch) -> set[str]:
            lost: set[str] = set()
            tx.load_runs(run_ids, b.state)
            expires = b.now + lease_seconds
            for rid in run_ids:
                run = b.state.runs.get(rid)
                if run is None or run.lease_owner != worker or RunState(run.state) in TERMINAL:
                    lost.add(rid)
                    continue
                assert run.lease_expires_at is not None
                if run.lease_expires_at <= b.now:
                    lost.add(rid)  # already expired: another worker may take it; stop trusting
                    continue
                b.emit(
                    E.run_event(
                        E.LEASE_RENEWED,
                        run,
                        b.now,
                        owner=worker,
                        expires_at=max(expires, run.lease_expires_at),
                    )
                )
                if snapshots is not None:
                    snapshots[rid] = snapshot_run(run)
            return lost

        return self.transact(body)[0]

    def release(self, worker: str, run_ids: Sequence[str], reason: str) -> None:
        """Give up this worker's leases (graceful stop): their attempts end as ``lost``."""
        if not run_ids:
            return

        def body(tx: Tx, b: Batch) -> None:
            st = b.state
            tx.load_runs(run_ids, st)
            tx.load_tasks([r.task_id for r in st.runs.values()], st)
            for rid in run_ids:
                run = st.runs.get(rid)
                if run is None or run.lease_owner != worker:
                    continue
                if run.state == RunState.RUNNING and run.open_attempt() is not None:
                    b.close_attempt(
                        run, st.tasks[run.task_id].options, AttemptResult.LOST, error=reason
                    )
                elif run.state == RunState.LEASED:
                    b.emit(E.run_event(E.LEASE_RELEASED, run, b.now, owner=worker))
                    b.change(run, RunState.READY, "released")
            b.wake = True

        self.transact(body)

    # -- queries ------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        with self.store.read() as tx:
            run = tx.get_run(run_id)
        if run is None:
            raise UnknownRun(f"no run {run_id!r} in this store; list runs with `mainspring runs`")
        return run

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
        due. Runs of other tasks and queues do not count (a burst worker's stop)."""
        with self.store.read() as tx:
            return tx.paused() or tx.is_idle(self.clock.now(), names, queues)

    def verify(self, progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Replay the whole log from empty and compare with the stored projection.

        ``progress(done, total)`` is called as the replay goes (events replayed of those
        in the log), every few thousand events and at the end."""
        problems: list[str] = []
        with self.store.read(snapshot=True) as tx:
            stored = tx.snapshot()
            events: Iterable[Event] = tx.iter_all_events()
            if progress is not None:
                events = _reporting(events, tx.last_seq(), progress)
            try:
                replayed = replay(events)
            except Exception as exc:
                return [f"the log does not replay: {exc}"]
        for rid in sorted(set(stored.runs) | set(replayed.runs)):
            a, r = stored.runs.get(rid), replayed.runs.get(rid)
            if a is None:
                problems.append(f"run {rid}: in the log but missing from the stored state")
            elif r is None:
                problems.append(f"run {rid}: in the stored state but never created in the log")
            elif a != r:
                diffs = [
                    f"{f}: stored {getattr(a, f)!r}, log says {getattr(r, f)!r}"
                    for f in a.__struct_fields__
                    if getattr(a, f) != getattr(r, f)
                ]
                problems.append(f"run {rid}: " + "; ".join(diffs))
        for tid in sorted(set(stored.tasks) | set(replayed.tasks)):
            ta, tr = stored.tasks.get(tid), replayed.tasks.get(tid)
            if ta is None:
                problems.append(f"task {tid}: in the log but missing from the stored state")
            elif tr is None:
                problems.append(f"task {tid}: in the stored state but never created in the log")
            elif ta != tr:
                diffs = [
                    f"{f}: stored {getattr(ta, f)!r}, log says {getattr(tr, f)!r}"
                    for f in ta.__struct_fields__
                    if getattr(ta, f) != getattr(tr, f)
                ]
                problems.append(f"task {tid}: " + "; ".join(diffs))
        if stored.definitions != replayed.definitions:
            problems.append("task definitions differ from the log")
        if stored.paused != replayed.paused:
            problems.append(f"engine paused: stored {stored.paused}, log says {replayed.paused}")
        return problems


def _reporting(
    events: Iterable[Event], total: int, progress: Callable[[int, int], None]
) -> Iterator[Event]:
    done = 0
    for done, ev in enumerate(events, 1):
        if done % 5000 == 0:
            progress(done, total)
        yield ev
    progress(done, total)
