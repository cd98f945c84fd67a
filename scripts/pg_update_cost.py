"""What the server spends on a worker's rewrite of a run's row, run by hand (a measurement,
not a test):

    .venv/bin/python scripts/pg_update_cost.py [--runs N] [--batch K] [--rounds R]

A worker turn rewrites each run it starts and each run it records with one statement per
turn (store/pg_tx.py ``_UPDATE_RUNS``): its state, lease and document. A state change is
never a HOT update in today's schema, since ``state`` is in the predicates of the run
table's partial indexes: each rewrite adds an entry to the primary key, the task and time
indexes and the index of the new state. This measures the server's execution time
(``EXPLAIN ANALYZE``) of that statement over K ready runs (as a turn with K runs to start
makes it) on copies of the runs table, each rolled back and vacuumed after:

- ``as is``: every index of ``ms_runs``;
- ``primary key only``: no other index, so no entries but the key's;
- ``primary key, fillfactor 50``: room on every page, so the rewrite is HOT (no index
  entry at all): what a run row whose indexed columns never change would cost.

The difference is what the run's hot state kept out of index predicates (a narrow queue
table beside it) could save on the server per rewrite, before the rows that queue table
itself inserts and deletes. Run nothing else beside it.
"""

from __future__ import annotations

import argparse
import re
import statistics

import msgspec
import psycopg
from _noop_store import fill, pg_database

from mainspring.store.pg_tx import _UPDATE_RUNS

COPIES = {
    "as is": "CREATE TABLE {t} (LIKE ms_runs INCLUDING ALL)",
    "primary key only": "CREATE TABLE {t} (LIKE ms_runs INCLUDING DEFAULTS); "
    "ALTER TABLE {t} ADD PRIMARY KEY (run_id)",
    "primary key, fillfactor 50": "CREATE TABLE {t} (LIKE ms_runs INCLUDING DEFAULTS) "
    "WITH (fillfactor = 50); ALTER TABLE {t} ADD PRIMARY KEY (run_id)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=1400, help="rows per statement (a turn's)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with pg_database("pg_update_cost") as url:
        measure(url, args)


def measure(url: str, args: argparse.Namespace) -> None:
    fill(url, args.runs)
    with psycopg.connect(url, autocommit=True) as con:
        rows = con.execute(
            "SELECT run_id, due_at, doc::text FROM ms_runs "
            "ORDER BY priority DESC, scheduled_at, run_id LIMIT %s",
            (args.batch,),
        ).fetchall()
        # the columns a start changes (store/pg_tx.py ``_RunChange``), as a turn sends them
        change = msgspec.json.encode(
            [
                {"run_id": r, "state": "running", "due_at": due, "holds_key": False,
                 "lease_owner": "w1", "lease_expires_at": 2e9,
                 "doc": msgspec.Raw(doc.encode()), "doc_text": None, "concurrency_key": None}
                for r, due, doc in rows
            ]
        ).decode()  # fmt: skip
        tables = {}
        for n, (name, ddl) in enumerate(COPIES.items()):
            t = tables[name] = f"runs_{n}"
            for stmt in ddl.format(t=t).split("; "):
                con.execute(stmt)
            con.execute(f"INSERT INTO {t} SELECT * FROM ms_runs")
            con.execute(f"VACUUM ANALYZE {t}")
        con.execute("CHECKPOINT")
        times: dict[str, list[float]] = {name: [] for name in COPIES}
        for _ in range(args.rounds):
            for name, t in tables.items():
                con.execute("BEGIN")
                plan = con.execute(
                    "EXPLAIN (ANALYZE) " + _UPDATE_RUNS.replace("ms_runs", t),
                    (change, len(rows)),
                ).fetchall()
                con.execute("ROLLBACK")
                con.execute(f"VACUUM {t}")
                found = re.search(r"Execution Time: ([\d.]+) ms", "\n".join(r[0] for r in plan))
                assert found, plan
                times[name].append(float(found.group(1)) * 1000 / len(rows))
    print(
        f"the worker's run update (store/pg_tx.py _UPDATE_RUNS) of {len(rows):,} ready runs "
        f"to running, among {args.runs:,}; server execution time per row, "
        f"median of {args.rounds} (min-max):"
    )
    for name, us in times.items():
        print(f"  {name + ':':<30} {statistics.median(us):5.1f} us ({min(us):.1f}-{max(us):.1f})")


if __name__ == "__main__":
    main()
