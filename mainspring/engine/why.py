"""Why a run is where it is: reasons read from the stored state, most decisive first.

Each reason is a code (docs/api.md, "why"), a sentence a person reads, and data. Times in
the data are Unix seconds here; the facade shows them as datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.model import Run, Task, WorkerRecord
from ..core.reducer import WORKERS
from ..core.states import TERMINAL, AttemptResult, RunState
from ..store.base import ReadTx

#: Attempt results that do not count toward ``max_attempts``.
_UNCOUNTED = (AttemptResult.SUSPENDED.value, AttemptResult.LOST.value)


@dataclass(frozen=True)
class Why:
    code: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


def serves(worker: WorkerRecord, run: Run) -> bool:
    """Does this worker lease runs like ``run`` (its task name, in its queue)?"""
    return run.task_name in worker.tasks and (worker.queues is None or run.queue in worker.queues)


def explain(tx: ReadTx, run: Run, task: Task | None, now: float) -> list[Why]:
    state = RunState(run.state)
    if state in TERMINAL:
        return [
            Why(
                "terminal",
                f"the run ended {state.value} ({run.reason})"
                + (f": {run.error}" if run.error and state != RunState.COMPLETED else ""),
                {"reason": run.reason, "error": run.error},
            )
        ]
    if state in (RunState.LEASED, RunState.RUNNING):
        verb = "holds the lease and runs it" if state == RunState.RUNNING else "has leased it"
        return [
            Why(
                state.value,
                f"worker {run.lease_owner} {verb}; the lease expires at its time unless renewed",
                {"worker_id": run.lease_owner, "lease_expires_at": run.lease_expires_at},
            )
        ]
    if state == RunState.SUSPENDED:
        return [
            Why(
                "suspended",
                f"the run is suspended ({run.error or run.reason}); resume it to run it again",
                {"reason": run.reason},
            )
        ]
    out: list[Why] = []
    if state == RunState.SCHEDULED and run.due_at > now:
        out.append(Why("not_due", "the run is not due yet", {"due_at": run.due_at}))
    if state == RunState.RETRY_WAIT:
        counted = sum(1 for a in run.attempts if a.result not in _UNCOUNTED)
        left = None if task is None else max(task.options.max_attempts - counted, 0)
        out.append(
            Why(
                "retry_wait",
                f"attempt {len(run.attempts)} failed; the next try comes after the backoff"
                + (f" ({left} attempt(s) left)" if left is not None else ""),
                {"due_at": run.due_at, "attempts_left": left},
            )
        )
    if tx.paused():
        out.append(
            Why("engine_paused", "the engine is paused: no run is leased until it is resumed")
        )
    if state == RunState.READY and run.concurrency_key is not None:
        holders = (tx.key_holders([run.concurrency_key]).get(run.concurrency_key) or set()) - {
            run.run_id
        }
        if len(holders) >= run.concurrency_limit:
            out.append(
                Why(
                    "key_held",
                    f"concurrency key {run.concurrency_key!r} is held by {len(holders)} run(s), "
                    f"its limit is {run.concurrency_limit}",
                    {
                        "key": run.concurrency_key,
                        "held_by": sorted(holders),
                        "limit": run.concurrency_limit,
                    },
                )
            )
    workers: list[WorkerRecord] = tx.records(WORKERS)
    if not any(w.expires_at > now and serves(w, run) for w in workers):
        out.append(
            Why(
                "no_worker",
                f"no live worker serves task {run.task_name!r} in queue {run.queue!r}; start "
                "one with `mainspring worker APP`",
                {"task": run.task_name, "queue": run.queue},
            )
        )
    if state == RunState.READY and not out:
        ahead = tx.ready_ahead(run)
        out.append(
            Why(
                "eligible",
                f"the run is ready and nothing holds it back; {ahead} ready run(s) of queue "
                f"{run.queue!r} come first",
                {"ahead": ahead},
            )
        )
    return out
