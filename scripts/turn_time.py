"""Where a worker turn's time goes on SQLite, run by hand (a measurement, not a test).

    .venv/bin/python scripts/turn_time.py [full|normal|off]    # default: full

It drains 10,000 no-op tasks with one in-process worker (8 threads), timing every
``Engine.cycle`` and, inside it, every statement the worker's connection runs (the
statement, not the Python around it: a proxy around the connection times ``execute`` and
``executemany``). It prints per turn: the worker loop's whole turn, the part in
``Engine.cycle``, the SQL in it (COMMIT included, so the WAL sync at ``full``) and the
rest of the cycle (Python: decisions, events, encoding). The proxy adds a little to SQL.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import threading
import time
from typing import Any

from _noop_store import noop_store

from mainspring.engine import engine as engine_mod
from mainspring.store import sqlite as sq

N = 10_000
sql_seconds = 0.0
cycle_seconds = 0.0


class _Timed:
    """A sqlite3 connection whose statements in the worker's loop thread are timed."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def _timed(self, run: Any, *args: Any) -> Any:
        global sql_seconds
        began = time.perf_counter()
        try:
            return run(*args)
        finally:
            if threading.current_thread().name.startswith("mainspring-worker"):
                sql_seconds += time.perf_counter() - began

    def execute(self, *args: Any) -> Any:
        return self._timed(self._con.execute, *args)

    def executemany(self, *args: Any) -> Any:
        return self._timed(self._con.executemany, *args)


def main() -> None:
    global cycle_seconds
    sync = sys.argv[1] if len(sys.argv) > 1 else "full"
    connect = sq.SQLiteStore._connect
    sq.SQLiteStore._connect = lambda self: _Timed(connect(self))  # type: ignore[assignment,return-value]
    cycle = engine_mod.Engine.cycle

    def timed_cycle(self: Any, *args: Any, **kw: Any) -> Any:
        global cycle_seconds
        began = time.perf_counter()
        try:
            return cycle(self, *args, **kw)
        finally:
            cycle_seconds += time.perf_counter() - began

    engine_mod.Engine.cycle = timed_cycle  # type: ignore[method-assign]
    app, path = noop_store("turn_time.db", N, sync)
    cycle_seconds = 0.0
    began = time.perf_counter()
    with app.worker(concurrency=8) as w:
        w.run_until_idle(timeout=600)
        turns = w.cycles
    took = time.perf_counter() - began
    ms_per = 1000 / turns
    print(
        f"synchronous={sync}: {N / took:,.0f} runs/s, {turns} turns; per turn "
        f"{took * ms_per:.2f} ms: Engine.cycle {cycle_seconds * ms_per:.2f} ms "
        f"(SQL {sql_seconds * ms_per:.2f}, the rest {(cycle_seconds - sql_seconds) * ms_per:.2f})"
        f", outside it {(took - cycle_seconds) * ms_per:.2f}"
    )
    app.close()
    shutil.rmtree(path.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
