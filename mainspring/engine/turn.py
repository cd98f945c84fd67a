"""The worker's commands: its turn (group commit), housekeeping, renewals and release.

A worker's loop calls ``cycle`` once per turn: one transaction that records finished
attempts, expires stale leases, derives due cron occurrences, promotes due runs, and
leases and starts new attempts (docs/architecture.md, "The hot path").
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core import events as E
from ..core.errors import MainspringError, StoreError
from ..core.ids import uuid7
from ..core.model import ORDERED_KEYS, RateRecord, Run
from ..core.reducer import RATES
from ..core.schedule import cron_step, derives_more
from ..core.states import TERMINAL, AttemptResult, RunState
from ..store.base import WriteTx
from ..store.rows import Fence, fence_of
from . import registry
from .batch import Batch
from .endings import LaunchRefused, as_handled
from .messages import CycleResult, Finished, Leased, snapshot_decoder, snapshot_run
from .registry import Registration
from .transact import Stale
from .workflows import WorkflowCommands

#: How many rows each housekeeping step handles per cycle.
STEP_LIMIT = 500
#: How many spent rate limit accounts a turn's lease leaves out of its later pages by name.
_MAX_PASSED = 400


class WorkerTurns(WorkflowCommands):
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
        commands: bool = False,
        start_now: int | None = None,
    ) -> CycleResult:
        """One worker turn in one transaction (see the module docstring).

        ``start_now``: how many of the runs leased will start their handlers at once (the
        rest wait for a slot, ``prefetch``); a run whose task has a rate limit is leased
        only among those, since its limit counts attempts as they start (None: all).

        ``held`` names the runs whose handlers this worker is running; with
        ``housekeeping``, the result's ``lost`` lists those it no longer holds (canceled,
        or the lease expired), so their handlers can be told. With ``housekeeping`` or
        ``next_due``, the result's ``next_due`` is the store's next due time. With
        ``commands``, the commands running workflows queued (engine/group.py) are decided
        in the same transaction.
        """
        if housekeeping and not finished and not held and not commands:
            # an idle worker's poll: one cheap read, and a write only when there is work
            with self.store.read() as rtx:
                work, due = rtx.probe(self.clock.now(), names if want > 0 else [], queues)
            if not work:
                return CycleResult([], [], [], due)

        accepted: list[str] = []
        rejected: list[str] = []
        queued = self.group.take() if commands else []
        decided: list[tuple[bool, object]] = []
        # The attempts that ended are decided before the write lock is taken, on the runs
        # as this worker leased them (``Finished.snapshot``), when the store can write them
        # only if unchanged since; if any changed meanwhile (a renewal, a cancel, an
        # expiry), the transaction is dropped and they are decided again under the lock.
        ahead: list[tuple[Fence, str]] = []  # (the row as leased, run id)
        decide_ahead = (
            self.store.fenced_updates
            and bool(finished)
            and all(
                f.snapshot is not None
                and f.options is not None
                and not f.launches
                and f.options.topic is None  # (a delivery looks for its receipt: as_handled)
                for f in finished
            )
        )

        def prepare(b: Batch) -> None:
            ahead.clear()
            if decide_ahead:
                for f in finished:
                    assert f.snapshot is not None
                    run = snapshot_decoder.decode(f.snapshot)
                    ahead.append((f.fence or fence_of(run), f.run_id))  # (before it changes)
                    b.state.runs[f.run_id] = run
                self._record_finished(b, worker, finished, accepted, rejected)

        def body(tx: WriteTx, b: Batch) -> CycleResult:
            nonlocal decide_ahead, decided
            st = b.state
            if queued:
                decided = self.group.decide(queued, tx, b)
            if ahead:
                fences = [fence for fence, _ in ahead]
                if not tx.update_runs_if_unchanged(fences, [st.runs[rid] for _, rid in ahead]):
                    decide_ahead = False
                    raise Stale("a finished run changed since it was leased")
                st.dirty_runs.difference_update(rid for _, rid in ahead)  # written just now
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
                handled = as_handled(tx, b, finished)
                self._record_finished(b, worker, handled, accepted, rejected)
                # what a successful attempt launched is written with its result (lineage)
                ok = set(accepted)
                for f in handled:
                    if f.launches and f.run_id in ok and f.result == AttemptResult.SUCCESS:
                        try:
                            self.launch(tx, b, f.launches, st.runs[f.run_id])
                        except MainspringError as exc:
                            if isinstance(exc, StoreError):
                                raise  # (the store's failure, not the launch's)
                            raise LaunchRefused(f.run_id, exc) from exc
            if finished and housekeeping:
                b.flush(tx)  # so that promotion sees runs that went to retry_wait
            # when retries were decided here, say when the first comes due, so that the
            # worker wakes for it rather than at its next poll
            waits = [st.runs[r].due_at for r in accepted if st.runs[r].state == RunState.RETRY_WAIT]
            due = min(waits) if waits else None
            lost: list[str] = []
            if housekeeping:
                self._expire(tx, b)  # first: a lease of this worker's it expires is lost now
                if held:
                    owners = tx.lease_owners(held)
                    lost = [rid for rid in held if owners.get(rid) != worker]
                self._derive_cron(tx, b)
                self._promote(tx, b)
                self._enforce_deadlines(tx, b)
            if housekeeping or next_due:
                b.flush(tx)  # (the retries decided above are due times too)
                due = tx.next_due()
            leased: list[Leased] = []
            if want > 0 and names:  # (a paused engine has no candidates)
                leased = self._lease(tx, b, worker, names, queues, want, lease_seconds, start_now)
                if b.next_at is not None:  # a rate limit frees a start then
                    due = b.next_at if due is None else min(due, b.next_at)
            return CycleResult(leased, accepted, rejected, due, lost)

        while True:
            try:
                out, b = self.transact(body, prepare, fences=want > 0)
            except LaunchRefused as refused:
                # only that attempt fails: the others' results and the leases go on
                finished = [
                    refused.report(f) if f.run_id == refused.run_id else f for f in finished
                ]
                continue
            except BaseException as exc:
                self.group.failed(queued, exc)
                raise
            break
        self.group.finish(queued, decided)
        _fence(out.leased, b)
        return out

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
                suspended=None if f.suspend_reason is None else (f.suspend_reason, None),
                failure_class=f.failure_class,
                retry_class=f.retry_class,
            )
            accepted.append(f.run_id)

    def housekeeping(self) -> int:
        """Expire leases, derive cron occurrences and promote due runs; returns events written."""

        def body(tx: WriteTx, b: Batch) -> None:
            self._expire(tx, b)
            self._derive_cron(tx, b)
            self._promote(tx, b)
            self._enforce_deadlines(tx, b)

        return len(self.transact(body)[1].events)

    def _expire(self, tx: WriteTx, b: Batch) -> None:
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
                b.emit(E.lease(E.LEASE_EXPIRED, run, b.now, run.lease_owner))
                if run.state == RunState.LEASED:
                    b.change(run, RunState.READY, "lease_expired")
        b.flush(tx)

    def _derive_cron(self, tx: WriteTx, b: Batch) -> None:
        ids = tx.cron_due_task_ids(b.now, STEP_LIMIT)
        if not ids:
            return
        st = b.state
        tx.load_tasks(ids, st, lock=True)  # (claimed already where the store claims)
        for tid in ids:
            task = st.tasks[tid]
            if not derives_more(task):
                # found due, but spent: a row written before it knew (a task's row is
                # derived from the task; rewriting it records nothing new)
                st.dirty_tasks.add(tid)
                continue
            if task.cursor is None or task.cursor > b.now:
                continue
            step = cron_step(task.policy, task.derived, task.cursor, b.now)
            if step.skip_overdue:
                overdue = tx.run_ids_of_task(tid, scheduled_at=task.cursor)
                tx.load_runs(overdue, st)  # locked where the store locks: decide on them now
                for rid in overdue:
                    if st.runs[rid].state in (RunState.SCHEDULED, RunState.READY):
                        b.cancel(st.runs[rid], "misfire_skipped")
            for at in step.create:
                b.derive(task, at)
        b.flush(tx)

    def _promote(self, tx: WriteTx, b: Batch) -> None:
        ids = tx.due_run_ids(b.now, STEP_LIMIT)
        if not ids:
            return
        st = b.state
        tx.load_runs(ids, st)
        woken: list[Run] = []
        for rid in ids:
            run = st.runs[rid]
            if run.due_at > b.now:
                continue
            if run.state in (RunState.SCHEDULED, RunState.RETRY_WAIT):
                b.change(run, RunState.READY, "due" if run.state == RunState.SCHEDULED else "retry")
            elif run.state == RunState.SUSPENDED:
                woken.append(run)
        if woken:
            self._wake_suspended(tx, b, woken)
        b.flush(tx)

    def _lease(
        self,
        tx: WriteTx,
        b: Batch,
        worker: str,
        names: Sequence[str],
        queues: Sequence[str] | None,
        want: int,
        lease_seconds: float,
        start_now: int | None = None,
    ) -> list[Leased]:
        st = b.state
        chosen: list[Run] = []
        holders: dict[str, set[str] | None] = {}
        heads: dict[str, str] = {}  # ordered keys: the run that may go next
        considered: set[str] = set()
        rooms: dict[str, tuple[float, float | None]] = {}  # rate limit: starts left, next at
        page = max(want, 8)  # further pages only when keys leave candidates behind
        offset = 0
        wanted = list(names)
        passed: list[str] = []  # accounts with a key found spent: later pages leave them out
        while len(chosen) < want:
            cands = tx.ready_candidates(b.now, queues, wanted, page, offset, passed)
            accounts = {c.rate_key for c in cands if c.rate_key is not None} - set(rooms)
            if accounts:
                free = tx.rate_accounts_free(sorted(accounts))
                for busy in accounts - free:
                    rooms[busy] = (0, None)  # another turn is deciding it: not this one
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
                # an ordered subscriber's next delivery is its first ready one, which this
                # page may have skipped (locked by another turn that has committed since)
                heads.update(
                    tx.key_heads(
                        sorted(
                            k for k in found if k.startswith(ORDERED_KEYS) and found[k] is not None
                        )
                    )
                )
            limited = 0  # candidates of this page held back by their rate limit
            spent: set[str] = set()  # tasks over a limit without a key: all their runs wait
            keyed: set[str] = set()  # accounts with a key over their limit
            for c in cands:
                if len(chosen) >= want:
                    break
                if c.run_id in considered:
                    continue  # pages shift when other writers free rows: a run comes back
                considered.add(c.run_id)
                run = st.runs.setdefault(c.run_id, c)
                if run.state != RunState.READY:
                    continue
                rk = run.rate_key
                if rk is not None:
                    if start_now is not None and len(chosen) >= start_now:
                        continue  # it would wait for a slot, its start already counted
                    if rk not in rooms:
                        rooms[rk] = self._rate_room(tx, b, run)
                    room, next_at = rooms[rk]
                    if room <= 0:
                        if next_at is not None:  # (the worker wakes for it)
                            b.next_at = next_at if b.next_at is None else min(b.next_at, next_at)
                        limited += 1
                        # (a limit without a key: the task's account)
                        (spent if rk == run.task_name else keyed).add(rk)
                        continue  # over its rate limit: the run waits ready
                k = run.concurrency_key
                if k is not None:
                    held_by = holders[k]
                    if held_by is None:
                        continue  # another transaction is deciding this key right now
                    if len(held_by - {run.run_id}) >= run.concurrency_limit:
                        continue  # the key is full: leave the run ready
                    if heads.get(k, run.run_id) != run.run_id:
                        continue  # an earlier run of an ordered key goes first
                    held_by.add(run.run_id)
                if rk is not None:
                    room, next_at = rooms[rk]
                    rooms[rk] = (room - 1, next_at)
                chosen.append(run)
            if len(cands) < page:
                break
            keyed.difference_update(passed)
            if len(passed) + len(keyed) > _MAX_PASSED:
                keyed.clear()  # (a statement's list has room for so many: page on instead)
            if spent or keyed:
                # leave those tasks' and accounts' runs out, and look again from the top
                # (runs considered already are passed over)
                wanted = [n for n in wanted if n not in spent]
                if not wanted:
                    break
                passed += sorted(keyed)
                offset = 0
            elif offset >= 1000:
                break
            else:
                offset += page
            if limited == len(cands):
                # a page all held back by rate limits (one account's backlog ahead of the
                # others): look further, in bigger steps, so that runs of other accounts
                # behind it start
                page = min(page * 4, 1000)
        if not chosen:
            return []
        tx.load_tasks([r.task_id for r in chosen], st)
        expires = b.now + lease_seconds
        out: list[Leased] = []
        for run in chosen:
            task = st.tasks[run.task_id]
            b.change(run, RunState.LEASED, "leased")
            b.emit(E.lease(E.LEASE_ACQUIRED, run, b.now, worker, expires))
            b.change(run, RunState.RUNNING, "started")
            attempt_id = uuid7()
            number = len(run.attempts) + 1
            b.emit(E.attempt_started(run, b.now, attempt_id, number=number, worker=worker))
            out.append(Leased.of(run, task, attempt_id, number, expires, snapshot_run(run)))
        return out

    @staticmethod
    def _rate_room(tx: WriteTx, b: Batch, run: Run) -> tuple[float, float | None]:
        """How many more attempts of ``run``'s rate limit account may start now, and when
        the next one may when none can (its account loaded, and locked where writers
        lock, for the starts this transaction adds)."""
        assert run.rate_key is not None
        tx.load_tasks([run.task_id], b.state)
        limit = b.state.tasks[run.task_id].options.rate_limit
        if limit is None:
            return float("inf"), None
        tx.load_records(RATES, [run.rate_key], b.state)
        account: RateRecord | None = b.state.kind(RATES).get(run.rate_key)
        recent = [t for t in (account.starts if account else []) if t > b.now - limit.per]
        room = limit.count - len(recent)
        return room, (recent[0] + limit.per if room <= 0 and recent else None)

    # -- the worker registry (engine/registry.py) --------------------------------------------
    def register_worker(self, reg: Registration, lease_seconds: float) -> None:
        """Record a starting worker in the store (``app.workers()``)."""
        self.transact(lambda tx, b: registry.heartbeat(tx, b, reg, lease_seconds))

    def worker_left(self, worker_id: str) -> None:
        """A worker stopped cleanly: remove it from the registry at once."""
        self.transact(lambda tx, b: registry.leave(tx, b, worker_id))

    def renew(
        self,
        worker: str,
        run_ids: Sequence[str],
        lease_seconds: float,
        snapshots: dict[str, bytes] | None = None,
        heartbeat: Registration | None = None,
        fences: dict[str, Fence] | None = None,
    ) -> set[str]:
        """Extend this worker's leases. Returns the run ids whose lease it no longer holds.

        ``snapshots`` (when given) gets each renewed run's new ``Leased.snapshot``, and
        ``fences`` its ``Leased.fence`` (of the runs whose row the store kept one). With
        ``heartbeat``, the worker's registry record is renewed in the same transaction."""
        if not run_ids and heartbeat is None:
            return set()

        def body(tx: WriteTx, b: Batch) -> set[str]:
            if heartbeat is not None:
                registry.heartbeat(tx, b, heartbeat, lease_seconds)
            lost: set[str] = set()
            if not run_ids:
                return lost
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
                renewed = max(expires, run.lease_expires_at)
                b.emit(E.lease(E.LEASE_RENEWED, run, b.now, worker, renewed))
                if snapshots is not None:
                    snapshots[rid] = snapshot_run(run)
            return lost

        lost, b = self.transact(body, fences=fences is not None)
        if fences is not None and b.state.fences is not None:
            fences.update(b.state.fences)
        return lost

    def release(self, worker: str, run_ids: Sequence[str], reason: str) -> None:
        """Give up this worker's leases (graceful stop): their attempts end as ``lost``."""
        if not run_ids:
            return

        def body(tx: WriteTx, b: Batch) -> None:
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
                    b.emit(E.lease(E.LEASE_RELEASED, run, b.now, worker))
                    b.change(run, RunState.READY, "released")
            b.wake = True

        self.transact(body)


def _fence(leased: Sequence[Leased], b: Batch) -> None:
    """Give each run leased in ``b``'s transaction the row the store wrote of it."""
    fences = b.state.fences
    if fences:
        for lz in leased:
            lz.fence = fences.get(lz.run_id)
