"""Procrastinate 3.x on PostgreSQL (psycopg 3), async workers: the no-op is an async task.

Schema: ``app.schema_manager.apply_schema()`` on the fresh database. Producer: the sync API
of an ``App(connector=PsycopgConnector(conninfo=url))`` opened with ``app.open()`` (which
makes procrastinate use its synchronous psycopg pool): ``task.defer(x=...)``, one call per
task; batch: ``task.batch_defer(*[{"x": ...}, ...])``, 1,000 jobs per call.

Workers: ``app.run_worker_async(concurrency=8)``: up to 8 jobs in flight per process, run as
asyncio tasks (the tasks are ``async def``; a sync task would go to a thread). Wake-up:
LISTEN/NOTIFY (``listen_notify=True``, the default) with the default fallback poll
``fetch_job_polling_interval=5 s``; nothing to tune to 50 ms. Jobs stay in the jobs table
with status ``succeeded`` (``delete_jobs="never"``, the default).

W4: procrastinate stores no return value and has no completion wait; the producer polls
``job_manager.get_job_status(job_id)`` every 50 ms (as the SQLite group's polling peers
wait), and checks that it is ``succeeded``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from procrastinate import App, PsycopgConnector
from procrastinate.jobs import Status

from . import timing

MODULE = "peers.procrastinate_peer"
POLL = 0.05
NOOP, PING = "bench.noop", "bench.ping"
# Its warning that the App lives in ``__main__`` is about importing tasks by path, which
# the harness does not do (the worker registers the same tasks in code).
logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
SETTINGS_SQL = (
    "SELECT current_setting('synchronous_commit') AS synchronous_commit, "
    "current_setting('fsync') AS fsync, "
    f"({timing.UNLOGGED_SQL}) AS unlogged_tables"
)


def _settings(row: dict[str, Any]) -> dict[str, str]:
    by_sql = {
        "SHOW synchronous_commit": row["synchronous_commit"],
        "SHOW fsync": row["fsync"],
        timing.UNLOGGED_SQL: row["unlogged_tables"],
    }
    return timing.pg_settings(lambda sql: by_sql[sql])


class ProcrastinatePeer(timing.Peer):
    name = "procrastinate"
    backends = ("postgres",)
    batch_api = "Task.batch_defer (1,000 jobs per call)"
    notes = (
        "psycopg 3 (`PsycopgConnector`; sync pool for the producer); "
        "`run_worker_async(concurrency=8)`: up to 8 async jobs in flight per process; "
        "LISTEN/NOTIFY wake-up, fallback poll `fetch_job_polling_interval` left at 5 s; "
        "jobs kept as `succeeded` (default); no result storage: W4 polls "
        "`get_job_status` every 50 ms"
    )

    def __init__(self) -> None:
        self.app: App | None = None
        self.noop: Any = None
        self.ping: Any = None
        self.found: dict[str, str] | None = None

    def version(self) -> str:
        from importlib.metadata import version

        return version("procrastinate")

    def open(self, db: str, sync: str, role: str) -> None:
        self.app = App(connector=PsycopgConnector(conninfo=db))

        @self.app.task(name=NOOP)
        async def noop(x: str) -> None:
            await timing.handle_async()

        @self.app.task(name=PING)
        async def ping(x: str) -> str:
            return x

        self.noop, self.ping = noop, ping
        if role == "worker":
            return  # the worker opens the app inside its own event loop (run_worker)
        self.app.open()
        connector = self.app.connector.get_sync_connector()
        exists = connector.execute_query_one(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS found"
        )
        if not exists["found"]:
            self.app.schema_manager.apply_schema()
        self.found = _settings(connector.execute_query_one(SETTINGS_SQL))

    def durability(self) -> dict[str, str]:
        assert self.found is not None
        return self.found

    def enqueue(self, x: str) -> None:
        self.noop.defer(x=x)

    def enqueue_batch(self, xs: list[str]) -> None:
        self.noop.batch_defer(*({"x": x} for x in xs))

    def completed(self, stamps: Path) -> int:
        assert self.app is not None
        row = self.app.connector.get_sync_connector().execute_query_one(
            "SELECT count(*) AS n FROM procrastinate_jobs "
            f"WHERE task_name = '{NOOP}' AND status = 'succeeded'"
        )
        return int(row["n"])

    def run_worker(self, concurrency: int, started: Callable[[], None]) -> None:
        assert self.app is not None
        app = self.app
        logging.getLogger("procrastinate").setLevel(logging.WARNING)

        async def main() -> None:
            async with app.open_async():
                # read back on the worker's own pool
                self.found = _settings(await app.connector.execute_query_one_async(SETTINGS_SQL))
                started()
                await app.run_worker_async(concurrency=concurrency, wait=True)

        asyncio.run(main())

    def round_trip(self, x: str, timeout: float) -> None:
        assert self.app is not None
        job_id = self.ping.defer(x=x)
        deadline = time.monotonic() + timeout
        while True:
            status = self.app.job_manager.get_job_status(job_id)
            if status not in (Status.TODO, Status.DOING):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status.value} after {timeout:.0f}s")
            time.sleep(POLL)
        if status != Status.SUCCEEDED:
            raise RuntimeError(f"ping ended with status {status.value!r}")

    def close(self) -> None:
        app, self.app = self.app, None
        if app is not None:
            app.close()


if __name__ == "__main__":
    timing.main(ProcrastinatePeer, MODULE)
