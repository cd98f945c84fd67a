"""What a run's log events cost in CPython on their own, run by hand (a measurement, not a
test):

    .venv/bin/python scripts/event_floor.py [N]        # default: 20,000 runs

A worker writes seven of the ten events of a run's life: leased, lease.acquired, running
and attempt.started in the turn that starts it; attempt.finished, lease.released and
completed in the turn that records it. This builds those events for N ready runs, in turns
of 64 as a worker's group commit makes them, and applies each to the state (the engine's
own ``Batch``, reducer and event builders), with no store, no SQL, no threads and no
handler; then again with what the store encodes of them (the run's document at both turns,
the turn's log record, the worker's snapshot of each started run); then again with each
run's no-op handler called as a worker calls it (its ``Leased``, ``ms.context()``, the
attempt's span and outcome, the ``Finished`` report), in this thread. It prints the CPU per
run of each: the part of a worker's CPU per run that the log's design (seven events a run,
contract section 4) and the handler's call fix in CPython, whatever the store, the SQL
client, the threads and the worker loop around them cost.
"""

from __future__ import annotations

import sys
import time

from _noop_store import noop_store

from mainspring.core import events as E
from mainspring.core.ids import uuid7
from mainspring.core.model import Run
from mainspring.core.reducer import State, replay
from mainspring.core.states import AttemptResult, RunState
from mainspring.engine import Leased
from mainspring.engine.batch import Batch
from mainspring.engine.messages import snapshot_decoder, snapshot_run
from mainspring.store.rows import encode_record, encoder, run_doc
from mainspring.worker.execute import Attempt, call_sync, make_context

TURN = 64  # runs per turn, as a worker with 64 in flight records and starts them


def ready_runs(n: int) -> tuple[State, list[Run]]:
    """A state holding ``n`` ready runs, replayed from a store's log."""
    app, _ = noop_store("floor.db", n, "off")
    with app.engine.store.read() as tx:
        state = replay(tx.iter_all_events(since=0))
    app.close()
    return state, [r for r in state.runs.values() if r.state == RunState.READY]


def noop(x: str) -> None:
    pass


def call(state: State, run: Run, attempt_id: str, expires: float) -> None:
    """Call the run's handler as a worker does (worker/worker.py ``_dispatch``, execute.py)."""
    lz = Leased.of(run, state.tasks[run.task_id], attempt_id, 1, expires, b"")
    ctx = make_context(lz, lambda: None, "worker")
    call_sync(Attempt(lz, noop, ctx, None, expires))


def cpu_per_run(n: int, encoded: bool, called: bool = False) -> float:
    """Microseconds of CPU per run for its seven worker events (and their encoding, and
    its handler's call)."""
    state, runs = ready_runs(n)
    began = time.process_time()
    for i in range(0, len(runs), TURN):
        turn = runs[i : i + TURN]
        now = time.time()
        start = Batch(state, now)
        for run in turn:
            start.change(run, RunState.LEASED, "leased")
            start.emit(E.lease(E.LEASE_ACQUIRED, run, now, "worker", now + 30))
            start.change(run, RunState.RUNNING, "started")
            attempt_id = uuid7()
            start.emit(E.attempt_started(run, now, attempt_id, number=1, worker="worker"))
            if called:
                call(state, run, attempt_id, now + 30)
        if encoded:
            encoder.encode([run_doc(r) for r in turn])
            encode_record(start.events)
            snapshots = [snapshot_run(r) for r in turn]
        finish = Batch(state, now)
        for run in turn:
            options = state.tasks[run.task_id].options
            finish.close_attempt(run, options, AttemptResult.SUCCESS, output=None)
        if encoded:
            [snapshot_decoder.decode(s) for s in snapshots]
            encoder.encode([run_doc(r) for r in turn])
            encode_record(finish.events)
    return (time.process_time() - began) / len(runs) * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(f"{n:,} runs, turns of {TURN}; CPU per run (Python {sys.version.split()[0]}):")
    print(f"  7 worker events built and applied:            {cpu_per_run(n, False):6.1f} us")
    print(f"  ... and encoded as the store writes them:     {cpu_per_run(n, True):6.1f} us")
    print(f"  ... and each run's handler called:            {cpu_per_run(n, True, True):6.1f} us")


if __name__ == "__main__":
    main()
