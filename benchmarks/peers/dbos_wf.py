"""DBOS 3.x durable workflows (the workflow group), on SQLite or PostgreSQL.

Same store set-up, durability read-back and producer (``DBOSClient``) as ``dbos_peer``
(this driver subclasses it). ``wf.flow`` is a 3-step workflow (``@DBOS.step()`` x3);
``wf.sleeper`` sleeps with ``DBOS.sleep`` until a wake time given as its argument and
then stamps the time it resumed.

Queues, registered by the worker process (``DBOS.launch()``):

* ``wf``: ``worker_concurrency=8``, ``polling_interval_sec=0.05`` (default 1 s): WF1 and
  WF2, as DBOS runs work on workers (8 slots per process, as for mainspring).
* ``sleep``: no concurrency limit, same polling. A DBOS workflow that sleeps keeps its
  thread (``DBOS.sleep`` checkpoints the wake time, then ``time.sleep``), so a queue
  capped at 8 would hold 8 sleepers at a time: holding 10,000 sleepers takes 10,000
  threads (DBOS's executor is unbounded by default).

WF1 waits with ``handle.get_result(polling_interval_sec=0.05)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from dbos import DBOS

from . import timing, wf_timing
from .dbos_peer import POLL, DbosPeer

MODULE = "peers.dbos_wf"
FLOW = {"queue_name": "wf", "workflow_name": "wf.flow"}
SLEEPER = {"queue_name": "sleep", "workflow_name": "wf.sleeper"}


class DbosWorkflows(wf_timing.WorkflowPeer, DbosPeer):
    name = "dbos"

    @property
    def notes(self) -> str:  # type: ignore[override]
        store = (
            "`system_database_url` = the fresh database (DBOS's default pool and settings)"
            if self.backend == "postgres"
            else "WAL set on the file before DBOS opens it, synchronous set on every "
            "connection (DBOS sets neither)"
        )
        return (
            "`@DBOS.workflow` + 3 `@DBOS.step`s; producer `DBOSClient.enqueue` (WF1), "
            "`enqueue_in_transaction` x1,000 per transaction (WF2 preload, WF3); queue `wf` "
            "worker_concurrency=8, queue `sleep` unlimited (a sleeping DBOS workflow holds "
            f"a thread), both polling_interval_sec={POLL} (default 1.0); {store}; WF1 waits "
            f"with `get_result(polling_interval_sec={POLL})`"
        )

    def open(self, db: str, sync: str, role: str) -> None:
        super().open(db, sync, role)
        if role != "worker":
            return

        @DBOS.step(name="wf.s1")
        def s1(x: int) -> float:
            return time.time()

        @DBOS.step(name="wf.s2")
        def s2(t: float) -> float:
            return t

        @DBOS.step(name="wf.s3")
        def s3(t: float) -> float:
            return t

        @DBOS.workflow(name="wf.flow")
        def flow(x: int) -> int:
            t = s3(s2(s1(x)))
            timing.stamp(t)
            return x + 3

        @DBOS.workflow(name="wf.sleeper")
        def sleeper(wake: float) -> None:
            DBOS.sleep(max(0.0, wake - time.time()))
            timing.stamp(wake)

    def run_worker(self, concurrency: int, started: Callable[[], None]) -> None:
        DBOS.launch()
        DBOS.register_queue(
            "wf",
            worker_concurrency=concurrency,
            polling_interval_sec=POLL,
            on_conflict="always_update",
        )
        DBOS.register_queue("sleep", polling_interval_sec=POLL, on_conflict="always_update")
        started()
        threading.Event().wait()

    def round_trip(self, x: str, timeout: float) -> None:
        assert self.client is not None
        i = int(x.rsplit("-", 1)[-1])
        handle = self.client.enqueue(FLOW, i)  # type: ignore[arg-type]
        if handle.get_result(polling_interval_sec=POLL) != i + 3:
            raise RuntimeError("the workflow returned a wrong value")

    def _enqueue_many(self, options: Any, args: list[Any]) -> None:
        assert self.client is not None and self.engine is not None
        for i in range(0, len(args), timing.BATCH_SIZE):
            with self.engine.begin() as conn:
                for a in args[i : i + timing.BATCH_SIZE]:
                    self.client.enqueue_in_transaction(conn, options, a)

    def submit_flows(self, xs: list[int]) -> None:
        self._enqueue_many(FLOW, xs)

    def submit_sleepers(self, wakes: list[float]) -> None:
        self._enqueue_many(SLEEPER, wakes)

    def _count(self, sql: str, **params: Any) -> int:
        if self.reader is not None:  # SQLite: DBOS's own file, a plain reader
            named = sql.replace("dbos.", "")
            for key, value in params.items():
                named = named.replace(f":{key}", repr(value))
            return int(self.reader.execute(named).fetchone()[0])
        assert self.engine is not None
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(sql), params).scalar() or 0)

    def flows_done(self) -> int:
        return self._count(
            "SELECT count(*) FROM dbos.workflow_status WHERE name = :n AND status = 'SUCCESS'",
            n="wf.flow",
        )

    def asleep(self) -> int:
        return self._count(
            "SELECT count(*) FROM dbos.operation_outputs WHERE function_name = :f", f="DBOS.sleep"
        )

    def store_counts(self) -> dict[str, Any]:
        sql = "SELECT status, count(*) FROM dbos.workflow_status GROUP BY status"
        if self.reader is not None:
            rows = self.reader.execute(sql.replace("dbos.", "")).fetchall()
        else:
            assert self.engine is not None
            with self.engine.connect() as conn:
                rows = list(conn.execute(sa.text(sql)))
        return {str(status): int(count) for status, count in rows}


if __name__ == "__main__":
    wf_timing.main(DbosWorkflows, MODULE)
