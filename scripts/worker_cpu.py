"""Where a PostgreSQL worker's CPU goes, run by hand (a measurement, not a test):

    .venv/bin/python scripts/worker_cpu.py [--runs N] [--slots N] [--ahead K] [--async]
        [--switch-interval S]

It submits N no-op runs into a throwaway database, then drains them with one worker
(``app.run_worker(burst=True)``, ``slots`` handlers, ``prefetch = ahead x slots``) and
prints the CPU per run, from the worker's release to its end:

- by thread: the worker's loop (its turns: leases, records, the engine and the store), the
  handler threads (or the event loop of ``async def`` handlers), the main thread;
- the part of the loop's spent in the store layer (``store/sql.py``, ``store/pg_tx.py``:
  statements, the SQL client, rows read and encoded), timed per call with
  ``time.thread_time``;
- the PostgreSQL server's processes (``/proc``, through psutil; run nothing else beside it).

What the worker must do of each run in CPython whatever the store costs is
``scripts/event_floor.py``'s.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import threading
import time
from typing import Any

import psutil
from _noop_store import pg_database, submit_noops

import mainspring as ms
from mainspring.store import pg_tx, sql
from mainspring.worker import worker as worker_mod


def server_cpu() -> float:
    """CPU seconds of every PostgreSQL process on this machine so far."""
    total = 0.0
    for p in psutil.process_iter(["name", "cpu_times"]):
        if (p.info["name"] or "").startswith("postgres") and p.info["cpu_times"]:
            total += p.info["cpu_times"].user + p.info["cpu_times"].system
    return total


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads, by the name of their kind."""
    tick = os.sysconf("SC_CLK_TCK")
    kinds = {
        t.native_id: re.sub(r"-(h\d+|[0-9a-z]+:.*)$", "", t.name) for t in threading.enumerate()
    }
    out: collections.Counter[str] = collections.Counter()
    for tid, kind in kinds.items():
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        out[kind] += (int(fields[11]) + int(fields[12])) / tick
    return dict(out)


class StoreClock:
    """Times every method of the store's transactions, outermost calls only, per thread."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = threading.local()

    def wrap(self, cls: type) -> None:
        for name, fn in list(vars(cls).items()):
            if callable(fn) and not name.startswith("__"):
                setattr(cls, name, self._timed(fn))

    def _timed(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if getattr(self._depth, "in", False):
                return fn(*args, **kwargs)
            self._depth.__dict__["in"] = True
            began = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.thread_time() - began
                self._depth.__dict__["in"] = False

        return timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30_000)
    ap.add_argument("--slots", type=int, default=100)
    ap.add_argument("--ahead", type=int, default=16, help="prefetch this many runs per slot")
    ap.add_argument("--async", dest="is_async", action="store_true", help="async def handler")
    ap.add_argument(
        "--switch-interval",
        type=float,
        help="sys.setswitchinterval (default 0.005 s): how long a thread holds the GIL "
        "while others wait for it, so what the loop's hand-offs to the handlers cost",
    )
    args = ap.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    with pg_database("worker_cpu") as url:
        measure(url, args)


def measure(url: str, args: argparse.Namespace) -> None:
    app = ms.App(store=url)
    if args.is_async:

        @app.task(name="noop")
        async def anoop(x: str) -> None:
            pass

        noop: Any = anoop
    else:

        @app.task(name="noop")
        def noop(x: str) -> None:
            pass

    n = args.runs
    submit_noops(app, noop, n)
    clock = StoreClock()
    for cls in (pg_tx.PostgresTx, sql.SqlWriteTx, sql.SqlReadTx):
        clock.wrap(cls)
    seen: dict[str, float] = {}
    stop = worker_mod.Worker.stop

    def stopping(self: worker_mod.Worker, *a: Any, **kw: Any) -> None:
        seen.update(thread_cpu())  # before its threads end
        stop(self, *a, **kw)

    worker_mod.Worker.stop = stopping  # type: ignore[method-assign]
    before = thread_cpu()
    server_before, began, wall = server_cpu(), time.process_time(), time.monotonic()
    app.run_worker(concurrency=args.slots, prefetch=args.ahead * args.slots, burst=True)
    cpu, wall = time.process_time() - began, time.monotonic() - wall
    server = server_cpu() - server_before
    app.close()
    us = 1e6 / n
    print(
        f"{n:,} no-op runs, {args.slots} slots, prefetch {args.ahead * args.slots}, "
        f"{'async def' if args.is_async else 'def'} handler (Python {sys.version.split()[0]}): "
        f"{n / wall:,.0f} runs/s"
    )
    print(f"  worker process, CPU per run:            {cpu * us:6.1f} us")
    for kind, seconds in sorted(seen.items(), key=lambda kv: -kv[1]):
        spent = seconds - before.get(kind, 0.0)
        if spent * us >= 0.05:
            print(f"    thread {kind + ':':<30} {spent * us:6.1f} us")
    print(f"    of the loop's, in the store layer:    {clock.seconds * us:6.1f} us")
    print(f"  PostgreSQL server, CPU per run:         {server * us:6.1f} us")


if __name__ == "__main__":
    main()
