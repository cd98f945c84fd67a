"""PgQueuer 1.x on PostgreSQL (asyncpg), async workers: the no-op is an async entrypoint.

Schema: ``Queries.install()`` on the fresh database (PgQueuer's default durability,
``durable``: every table logged). Producer: ``Queries.enqueue("bench.noop", payload)``, one
call per task; batch: the same call with lists, 1,000 jobs in one INSERT. The payload is the
16-byte argument as bytes (PgQueuer payloads are bytes). The producer is synchronous, so its
coroutines run on one private event loop over one asyncpg connection.

Workers: one asyncpg connection per process (PgQueuer's own model: queries and LISTEN share
it), a bare ``QueueManager`` (the queue half of ``PgQueuer``; the scheduler half is not
used) with ``run(batch_size=4, max_concurrent_tasks=8)``: at most 8 jobs in flight per
process (PgQueuer requires ``max_concurrent_tasks >= 2 * batch_size``), run as asyncio
tasks. Wake-up: LISTEN/NOTIFY on every insert (PgQueuer's trigger), with its default
fallback poll ``dequeue_timeout=30 s``; nothing to tune to 50 ms. Completion is written
through PgQueuer's status buffer (flushed every ~0.1 s or every ``batch_size`` jobs) and
moves the job from the queue table to the log table.

W4: PgQueuer stores no return value; the producer waits for the job's terminal status with
PgQueuer's ``CompletionWatcher`` (LISTEN/NOTIFY plus a status query after its default
50 ms debounce), and checks that it is ``successful``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from pgqueuer import Job, Queries, QueueManager
from pgqueuer.core.completion import CompletionWatcher
from pgqueuer.db import AsyncpgDriver

from . import timing

MODULE = "peers.pgqueuer_peer"
NOOP, PING = "bench.noop", "bench.ping"
# dequeue batch; with max_concurrent_tasks = 2 * 4 = 8 jobs in flight (benchmarks/scale.py
# sets its own, BENCH_PGQ_BATCH, for many jobs in flight)
BATCH_SIZE = int(os.environ.get("BENCH_PGQ_BATCH", "4"))

T = TypeVar("T")


async def _settings(conn: asyncpg.Connection) -> dict[str, str]:
    found = {}
    for sql in ("SHOW synchronous_commit", "SHOW fsync", timing.UNLOGGED_SQL):
        found[sql] = await conn.fetchval(sql)
    return timing.pg_settings(lambda sql: found[sql])


class PgqueuerPeer(timing.Peer):
    name = "pgqueuer"
    backends = ("postgres",)
    batch_api = "Queries.enqueue with lists (1,000 jobs, one INSERT)"
    notes = (
        "asyncpg; one connection per worker process; bare `QueueManager.run(batch_size=4, "
        "max_concurrent_tasks=8)`: up to 8 async jobs in flight per process; LISTEN/NOTIFY "
        "wake-up, fallback poll `dequeue_timeout` left at 30 s; default `durable` schema "
        "(all tables logged); no result storage: W4 waits for status `successful` with "
        "`CompletionWatcher` (NOTIFY + 50 ms debounce, its default)"
    )

    def __init__(self) -> None:
        self.url = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.conn: Any = None
        self.queries: Queries | None = None
        self.watcher: CompletionWatcher | None = None
        self.found: dict[str, str] | None = None
        self.enqueued = 0

    def version(self) -> str:
        import pgqueuer

        return str(pgqueuer.__version__)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    def open(self, db: str, sync: str, role: str) -> None:
        self.url = db
        if role == "worker":
            return  # the worker connects inside its own event loop (run_worker)
        self.loop = asyncio.new_event_loop()

        async def connect() -> None:
            self.conn = await asyncpg.connect(db)
            self.queries = Queries(AsyncpgDriver(self.conn))
            if not await self.queries.schema_is_installed():
                await self.queries.install()
            self.found = await _settings(self.conn)

        self._run(connect())

    def durability(self) -> dict[str, str]:
        assert self.found is not None
        return self.found

    def enqueue(self, x: str) -> None:
        assert self.queries is not None
        self._run(self.queries.enqueue(NOOP, x.encode()))
        self.enqueued += 1

    def enqueue_batch(self, xs: list[str]) -> None:
        assert self.queries is not None
        n = len(xs)
        self._run(self.queries.enqueue([NOOP] * n, [x.encode() for x in xs], [0] * n))
        self.enqueued += n

    def completed(self, stamps: Path) -> int:
        # A finished job leaves the queue table (for the log table): done = sent - left.
        assert self.queries is not None and self.conn is not None
        table = self.queries.qbe.settings.queue_table
        sql = f"SELECT count(*) FROM {table} WHERE entrypoint = $1"
        left = self._run(self.conn.fetchval(sql, NOOP))
        return self.enqueued - int(left)

    def run_worker(self, concurrency: int, started: Callable[[], None]) -> None:
        logging.getLogger("pgqueuer").setLevel(logging.WARNING)

        async def main() -> None:
            conn = await asyncpg.connect(self.url)
            self.found = await _settings(conn)  # read back on the worker's own connection
            qm = QueueManager(Queries(AsyncpgDriver(conn)))

            @qm.entrypoint(NOOP)
            async def noop(job: Job) -> None:
                await timing.handle_async()

            @qm.entrypoint(PING)
            async def ping(job: Job) -> None:
                pass

            started()
            await qm.run(
                batch_size=min(BATCH_SIZE, max(1, concurrency // 2)),
                max_concurrent_tasks=concurrency,
            )

        asyncio.run(main())

    def round_trip(self, x: str, timeout: float) -> None:
        assert self.queries is not None

        async def trip() -> str:
            if self.watcher is None:
                self.watcher = CompletionWatcher(self.queries.driver, queries=self.queries)
                await self.watcher.__aenter__()
            [job_id] = await self.queries.enqueue(PING, x.encode())
            return await asyncio.wait_for(self.watcher.wait_for(job_id), timeout)

        status = self._run(trip())
        if status != "successful":
            raise RuntimeError(f"ping ended with status {status!r}")

    def close(self) -> None:
        loop, self.loop = self.loop, None
        if loop is None:
            return
        try:
            if self.watcher is not None:
                loop.run_until_complete(self.watcher.__aexit__(None, None, None))
            if self.conn is not None:
                loop.run_until_complete(self.conn.close())
        finally:
            self.watcher = self.conn = self.queries = None
            loop.close()


if __name__ == "__main__":
    timing.main(PgqueuerPeer, MODULE)
