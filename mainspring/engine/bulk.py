"""Bulk operations: canceling or rerunning every run that matches a filter, a page of
runs per transaction, so that a store of any size is worked through without one long
transaction holding the writers up (docs/operations.md, "Bulk operations")."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence

from ..core import events as E
from ..core.ids import uuid7
from ..core.model import Policy, Run
from ..core.reducer import CALLS, EXECUTIONS, IDEMPOTENCY, SIGNALS, STEPS, WAITS
from ..core.schedule import derives_more
from ..core.states import TERMINAL, RunState
from ..store.base import ReadTx, WriteTx
from .batch import Batch
from .messages import Submitted
from .transact import Transactor

#: Runs per transaction of a bulk operation.
PAGE = 500

Progress = Callable[[int, int], None]


def rerun_in(tx: WriteTx, b: Batch, old: Run) -> Submitted:
    """Decide a rerun of ``old``: a new task of policy once with its task's name,
    arguments and options, whose run says ``rerun_of``."""
    tx.load_tasks([old.task_id], b.state)
    orig = b.state.tasks[old.task_id]
    task_id = uuid7()
    b.emit(
        E.task_created(
            b.now,
            task_id,
            name=orig.name,
            args=orig.args,
            kwargs=orig.kwargs,
            policy=Policy(kind="once"),
            options=orig.options,
            idempotency_key=None,
            concurrency_key=old.concurrency_key,
            correlation_id=orig.correlation_id,
            execution_id=None,
            rerun_of=old.run_id,
        )
    )
    b.wake = True
    return Submitted(task_id, [b.derive(b.state.tasks[task_id], b.now, rerun_of=old.run_id)])


def _records_of(tx: WriteTx, b: Batch, runs: list[Run]) -> dict[str, dict[str, list[str]]]:
    """The records that go with each of ``runs`` when it is pruned, keys by kind: a
    workflow's steps, waits and signals, a run's ``@app.transaction`` calls, a workflow's
    execution id and the idempotency keys a debounce kept for it. (A delivery's receipt
    stays, as its message does: a rerun of the delivery still waiting must find it.)"""
    owned: dict[str, dict[str, list[str]]] = {}
    for kind in (STEPS, WAITS, SIGNALS, CALLS):
        for key in tx.keys_under(kind, [f"{r.run_id}/" for r in runs]):
            owned.setdefault(key.split("/", 1)[0], {}).setdefault(kind, []).append(key)
    for key, rid in tx.keys_by(IDEMPOTENCY, "run_id", [r.run_id for r in runs]):
        owned.setdefault(rid, {}).setdefault(IDEMPOTENCY, []).append(key)
    keys = {r.run_id: r.execution_id for r in runs if r.execution_id is not None}
    tx.load_records(EXECUTIONS, sorted(set(keys.values())), b.state)
    found = b.state.kind(EXECUTIONS)
    for rid, key in keys.items():
        if key in found and found[key].run_id == rid:
            owned.setdefault(rid, {})[EXECUTIONS] = [key]
    return owned


def _without_live_parents(tx: ReadTx, runs: list[Run]) -> list[Run]:
    """``runs`` but the children of workflows that have not ended: a workflow reads its
    children's outcomes when it replays, so they stay until it ends. (Read without a lock:
    a run that ended never runs again, so a parent seen running at worst keeps its child
    until the next prune.)"""
    parents = sorted({r.parent_run_id for r in runs if r.parent_run_id is not None})
    if not parents:
        return runs
    live = {p.run_id for p in tx.runs_of(parents) if RunState(p.state) not in TERMINAL}
    return [r for r in runs if r.parent_run_id not in live]


class BulkCommands(Transactor):
    def prune(
        self,
        cutoff: float,
        states: Sequence[str],
        task: str | None = None,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
        max_pages: int | None = None,
    ) -> int:
        """Remove the runs in ``states`` (terminal) of ``task`` that ended before
        ``cutoff``, and the tasks left with nothing to derive and no run (``run.pruned``,
        ``task.pruned``), a page per transaction; how many runs. ``dry_run``: count only;
        ``max_pages``: stop after that many pages with something to prune."""
        total = pages = 0
        for state in states:
            after = ""
            while True:
                with self.store.read() as rtx:
                    ids = rtx.run_ids_matching(state, task, None, after, PAGE)
                    ended = [r for r in rtx.runs_of(ids) if r.updated_at <= cutoff]
                    old = [r.run_id for r in _without_live_parents(rtx, ended)]
                if old and not dry_run:
                    total += self.transact(
                        functools.partial(self._prune_page, ids=old, cutoff=cutoff)
                    )[0]
                    pages += 1
                    if max_pages is not None and pages >= max_pages:
                        return total
                elif dry_run:
                    total += len(old)
                if progress is not None:
                    progress(total, total)
                if len(ids) < PAGE:
                    break
                after = ids[-1]
        return total

    @staticmethod
    def _prune_page(tx: WriteTx, b: Batch, *, ids: list[str], cutoff: float) -> int:
        tx.load_runs(ids, b.state)
        runs = [
            run
            for rid in ids
            if (run := b.state.runs.get(rid)) is not None
            and RunState(run.state) in TERMINAL
            and run.updated_at <= cutoff  # (else it changed since it was read)
        ]
        runs = _without_live_parents(tx, runs)
        owned = _records_of(tx, b, runs)
        tasks: set[str] = set()
        for run in runs:
            b.emit(E.run_pruned(run, b.now, owned.get(run.run_id)))
            tasks.add(run.task_id)
        pruned = len(runs)
        tx.load_tasks(sorted(tasks), b.state, lock=True)
        # runs each task has left: those stored, less those pruned here (one query a page)
        stored = tx.task_run_counts(sorted(tasks))
        gone = Counter(r.task_id for r in runs)
        kept = {r.task_id for r in b.state.runs.values()}
        for tid in sorted(tasks):
            t = b.state.tasks.get(tid)
            if t is None:
                continue
            left = sum(stored[tid].values()) - gone[tid]
            if not derives_more(t) and not left and tid not in kept:
                b.emit(E.task_pruned(t, b.now))
        return pruned

    def matching(
        self, states: Sequence[str], task: str | None = None, queue: str | None = None
    ) -> list[str]:
        """The ids of every run in one of ``states`` (of ``task``, in ``queue``), in id
        order, as of one moment (one snapshot: a run that changes state meanwhile is
        listed once, not twice or not at all)."""
        ids: list[str] = []
        with self.store.read(snapshot=True) as tx:
            for state in states:
                found: list[str] = []
                while True:
                    page = tx.run_ids_matching(state, task, queue, found[-1] if found else "", PAGE)
                    found += page
                    if len(page) < PAGE:
                        break
                ids += found
        return sorted(ids)

    def cancel_runs(
        self,
        run_ids: list[str],
        progress: Progress | None = None,
        states: Sequence[str] | None = None,
    ) -> int:
        """Cancel the runs of ``run_ids`` that have not ended (``states``: that are in one
        of these), a page per transaction (a workflow's children with it); how many were
        canceled."""
        run_ids = list(dict.fromkeys(run_ids))  # (each once: a second cancel is refused)
        done = 0
        for i in range(0, len(run_ids), PAGE):
            page = run_ids[i : i + PAGE]

            def body(tx: WriteTx, b: Batch, page: list[str] = page) -> int:
                tx.load_runs(page, b.state)
                runs = [b.state.runs[r] for r in page if r in b.state.runs]
                live = [
                    r
                    for r in runs
                    if RunState(r.state) not in TERMINAL and (states is None or r.state in states)
                ]
                for run in live:
                    b.cancel(run, "canceled")
                return len(live)

            done += self.transact(body)[0]
            if progress is not None:
                progress(min(i + PAGE, len(run_ids)), len(run_ids))
        return done

    def rerun_runs(
        self, run_ids: list[str], states: Sequence[str], progress: Progress | None = None
    ) -> list[Submitted]:
        """Rerun each of ``run_ids`` still in one of ``states`` (``Engine.rerun``), a page
        per transaction."""
        out: list[Submitted] = []
        for i in range(0, len(run_ids), PAGE):
            page = run_ids[i : i + PAGE]

            def body(tx: WriteTx, b: Batch, page: list[str] = page) -> list[Submitted]:
                tx.load_runs(page, b.state)
                # (each only if still in one of those states: it may have started since it
                # was listed, and its rerun would do its work twice)
                runs = [run for r in page if (run := b.state.runs.get(r)) is not None]
                return [rerun_in(tx, b, run) for run in runs if run.state in states]

            out += self.transact(body)[0]
            if progress is not None:
                progress(min(i + PAGE, len(run_ids)), len(run_ids))
        return out
