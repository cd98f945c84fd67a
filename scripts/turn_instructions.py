"""How many instructions a worker's turns execute per run, run by hand (a measurement, not a
test):

    .venv/bin/python scripts/turn_instructions.py [--backend sqlite|postgres] [--runs N]
        [--turn K]

It submits N no-op runs into a fresh store (a SQLite file, or a throwaway database on
``$MAINSPRING_TEST_PG``), then, in a child process under ``valgrind --tool=callgrind``,
drains them with ``Engine.cycle`` alone, in one thread: each turn records the attempts the
last one started (the ``Finished`` reports a worker hands back, with their snapshot and
fence) and leases and starts up to K more. A second child does the same but drains
nothing; the difference, divided by N, is what the turns cost per run: the engine's
decisions, the events, their encoding, the SQL client, the store's rows. No handler, no
thread, no worker loop (``scripts/worker_cpu.py`` measures those, in seconds).

Instruction counts, unlike timings, repeat from run to run on a shared machine (within
about 1% here: the SQL client polls the server a varying number of times), so they show
what a change to the hot path saves where timed drains cannot. Needs valgrind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from _noop_store import fill, pg_database, reports


def drain(url: str, turn: int) -> int:
    """Drain the store at ``url`` with ``Engine.cycle`` in turns of ``turn``; runs drained."""
    from mainspring.engine import Engine
    from mainspring.store import open_store

    store = open_store(url)
    eng = Engine(store)
    finished: list[Any] = []
    done = 0
    while True:
        res = eng.cycle("w1", ["noop"], None, finished, turn, 30.0, housekeeping=False)
        done += len(finished)
        finished = reports(res.leased)
        if not finished:
            store.close()
            return done


@contextlib.contextmanager
def store(backend: str, runs: int) -> Iterator[str]:
    """The URL of a fresh store holding ``runs`` ready no-op runs."""
    if backend == "postgres":
        with pg_database("turn_instructions") as url:
            yield url
            return
    tmp = tempfile.mkdtemp()
    try:
        yield f"sqlite:///{tmp}/turns.db?synchronous=off"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def counted(url: str, turn: int, drained: bool) -> int:
    """Instructions of a child process that opens the store and drains it (or not)."""
    out = tempfile.mktemp(prefix="callgrind.")
    try:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                url,
                str(turn),
                "1" if drained else "0",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out)
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found, done.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        url, turn, drained = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
        if drained:
            drain(url, turn)
        else:  # the same imports and store opening, no turn
            from mainspring.store import open_store

            open_store(url).close()
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--turn", type=int, default=200, help="runs leased per turn at most")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    counts = []
    for drained in (False, True):
        with store(args.backend, args.runs) as url:
            fill(url, args.runs)
            counts.append(counted(url, args.turn, drained))
    per_run = (counts[1] - counts[0]) / args.runs
    print(
        f"{args.backend}: {args.runs:,} no-op runs drained by Engine.cycle in turns of "
        f"{args.turn} (Python {sys.version.split()[0]}): {per_run:,.0f} instructions per run"
    )


if __name__ == "__main__":
    main()
