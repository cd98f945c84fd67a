"""Why a run is where it is: reasons read from the stored state, most decisive first.

Each reason is a code (docs/api.md, "why"), a sentence a person reads, and data. Times in
the data are Unix seconds here; the facade shows them as datetimes. A suspended workflow
says what it waits for, read from the wait record ``Run.waiting`` names.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..core.model import Run, Task, WaitRecord, WorkerRecord
from ..core.reducer import QUEUES, RATES, WAITS, WORKERS
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


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _wait_of(tx: ReadTx, run: Run) -> WaitRecord | None:
    """The wait a suspended workflow is in: ``run.waiting`` while that wait is still open
    and is what the run suspended for (a wait that ended within an attempt stays named
    there when the attempt later suspends for another reason)."""
    if run.waiting is None or run.reason not in ("sleep", "signal", "child"):
        return None
    found: list[WaitRecord] = tx.records(WAITS, where=("wait_id", run.waiting))
    if not found or found[0].state != "waiting" or found[0].kind != run.reason:
        return None
    return found[0]


def suspended(tx: ReadTx, run: Run) -> Why:
    """Why a suspended run waits: a workflow's sleep, signal or children, a replay that
    diverged from its history, or a handler's ``ms.Suspend`` (until resumed)."""
    wait = _wait_of(tx, run)
    data: dict[str, Any] = {"reason": run.reason}
    if wait is not None and wait.kind == "sleep":
        data["until"] = wait.until
        text = "the workflow is sleeping"
        if wait.until is not None:
            text += f" until {_utc(wait.until)}; it is ready again then"
        return Why("suspended", text + " (no worker slot is held)", data)
    if wait is not None and wait.kind == "signal":
        data["waiting_for"] = wait.name
        data["until"] = wait.until
        text = f"the workflow is waiting for signal {wait.name!r}"
        if wait.until is not None:
            text += f" (timeout at {_utc(wait.until)})"
        target = shlex.quote(run.execution_id or run.run_id)
        name = shlex.quote(wait.name or "")
        return Why("suspended", text + f"; send it with `mainspring signal {target} {name}`", data)
    if wait is not None:
        data["waiting_for"] = list(wait.children)
        ended = sum(
            1
            for rid in wait.children
            if (child := tx.get_run(rid)) is not None and RunState(child.state) in TERMINAL
        )
        n = len(wait.children)
        return Why(
            "suspended",
            f"the workflow is waiting for {n} child run{'s' if n != 1 else ''} to end "
            f"({ended} ended so far)",
            data,
        )
    if run.reason == "nondeterminism":
        # (the error reads "NonDeterminism: <what diverged, what to do>")
        detail = (run.error or "").split("NonDeterminism: ", 1)[-1]
        return Why(
            "suspended",
            "the workflow is suspended (nondeterminism): "
            + (detail or "its replay diverged from its history; deploy code that replays it"),
            data,
        )
    return Why(
        "suspended",
        f"the run is suspended ({run.error or run.reason}); resume it to run it again",
        data,
    )


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
        return [suspended(tx, run)]
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
    limit = None if task is None else task.options.rate_limit
    if state == RunState.READY and run.rate_key is not None and limit is not None:
        account = tx.records(RATES, where=("key", run.rate_key))
        recent = [t for t in (account[0].starts if account else []) if t > now - limit.per]
        if len(recent) >= limit.count:
            out.append(
                Why(
                    "rate_limited",
                    f"its rate limit ({limit.count} per {limit.per:g} s) is used up: the next "
                    "start is allowed when the oldest of those starts leaves the window",
                    {"next_at": recent[0] + limit.per, "key": run.rate_key},
                )
            )
    flag = tx.records(QUEUES, where=("name", run.queue))
    if flag and flag[0].paused_at is not None:
        out.append(
            Why(
                "queue_paused",
                f"queue {run.queue!r} is paused: none of its runs is leased until it is "
                f"resumed (`mainspring resume --queue {run.queue}`)",
                {"queue": run.queue, "paused_at": flag[0].paused_at},
            )
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
