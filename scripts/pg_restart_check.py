"""Fault check, run by hand: restart PostgreSQL while two worker processes drain 3,000 runs.

    .venv/bin/python scripts/pg_restart_check.py     # needs pg_ctlcluster and a local server

It restarts the server (``pg_ctlcluster ... restart``), so it is not part of ``make test``,
which shares that server with every other test. It prints how many runs completed, how
many executed twice (and whether those had a ``lost`` attempt) and whether ``verify`` is ok.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

import mainspring as ms

SERVER = os.environ.get("MAINSPRING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
URL = SERVER + "?schema=restart_check"
TMP = Path(tempfile.gettempdir())
EXECUTIONS = TMP / "mainspring-restart-executions.txt"
N = 3000


def make_app() -> tuple[ms.App, ms.TaskFunction]:  # type: ignore[type-arg]
    app = ms.App(store=URL, lease_seconds=3)

    @app.task(name="work")
    def work(i: int) -> int:
        time.sleep(0.005)
        with EXECUTIONS.open("a") as f:
            f.write(f"{ms.context().run_id}\n")
        return i

    return app, work


def worker() -> None:
    make_app()[0].run_worker(concurrency=8)


def main() -> None:
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute("DROP SCHEMA IF EXISTS restart_check CASCADE")
    EXECUTIONS.unlink(missing_ok=True)
    app, work = make_app()
    app.submit_many(work, [((i,), {}) for i in range(N)])
    logs = [(TMP / f"mainspring-restart-w{k}.log").open("w") for k in range(2)]
    workers = [subprocess.Popen([sys.executable, __file__, "worker"], stderr=log) for log in logs]
    time.sleep(2.5)
    print("completed before the restart:", app.stats()["completed"])
    began = time.time()
    version = os.listdir("/etc/postgresql")[0]
    restart = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]
    subprocess.run(restart, check=True)
    print(f"restart took {time.time() - began:.1f} s")
    stats: dict[str, int] = {}
    while time.time() < began + 120:
        try:
            stats = app.stats()
        except ms.StoreError as exc:
            print("stats:", exc)
        if stats.get("completed") == N:
            break
        time.sleep(0.5)
    print(f"{stats} {time.time() - began:.1f} s after the restart began")
    for w in workers:
        w.terminate()
        w.wait()
    for log in logs:
        log.close()
    counts = collections.Counter(EXECUTIONS.read_text().split())
    twice = {r for r, n in counts.items() if n > 1}
    with_lost = {
        r.run_id for r in app.runs(limit=10**6) if any(a.result == "lost" for a in r.attempts)
    }
    print(
        f"runs executed: {len(counts)}; twice: {len(twice)}, with a lost attempt: {len(twice & with_lost)}"
    )
    print("verify ok:", app.verify().ok)
    app.close()


if __name__ == "__main__":
    worker() if sys.argv[1:] == ["worker"] else main()
