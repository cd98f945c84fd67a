"""DBOS 3.x on SQLite or PostgreSQL, queue-based: the no-op is a workflow run from a DBOS queue.

Producer: ``DBOSClient.enqueue`` (the API for enqueueing from outside the application);
batch: ``DBOSClient.enqueue_in_transaction`` 1,000 times inside one caller-owned SQLAlchemy
transaction. Workers: ``DBOS.launch()`` plus ``DBOS.register_queue("bench",
worker_concurrency=8, polling_interval_sec=0.05)``; each worker process has its own
executor id and the same explicit application version.

PostgreSQL (``--backend postgres``): ``system_database_url`` is the fresh database the
harness made (DBOS 3 has only the system database); DBOS's own settings otherwise, the
server's ``synchronous_commit``/``fsync``, read back with ``SHOW`` through DBOS's engine.

Durability on SQLite: DBOS sets no journal mode or ``synchronous`` (so by default it runs
a rollback journal with SQLite's default ``synchronous=FULL``). For an equal footing the
harness creates the file in WAL mode before DBOS first opens it (WAL is persistent in the
file) and a SQLAlchemy ``connect`` listener sets ``PRAGMA synchronous`` on every connection
of every engine in the process, DBOS's own included. Both are read back through DBOS's
engine.

Wake-up: DBOS polls its queue every ``polling_interval_sec`` (default 1 s, tuned to 50 ms
here) and waits a full interval between polls, so one worker process starts at most
``worker_concurrency`` workflows per interval. W4 waits with
``handle.get_result(polling_interval_sec=0.05)``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSClient
from sqlalchemy import event

from . import timing

MODULE = "peers.dbos_peer"
QUEUE = "bench"
POLL = 0.05
APP_VERSION = "bench"
NOOP = {"queue_name": QUEUE, "workflow_name": "bench.noop"}
PING = {"queue_name": QUEUE, "workflow_name": "bench.ping"}

_sync = {"level": "FULL"}
_listening = False


def _set_synchronous(dbapi_conn: Any, _record: Any) -> None:
    if isinstance(dbapi_conn, sqlite3.Connection):
        dbapi_conn.execute(f"PRAGMA synchronous={_sync['level']}")


def _configure(sync: str) -> None:
    global _listening
    _sync["level"] = sync.upper()
    if not _listening:
        event.listen(sa.engine.Engine, "connect", _set_synchronous)
        _listening = True


def _engine_settings(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return timing.sqlite_pragmas(lambda sql: conn.exec_driver_sql(sql).scalar())
        return timing.pg_settings(lambda sql: conn.exec_driver_sql(sql).scalar())


class DbosPeer(timing.Peer):
    name = "dbos"
    backends = ("sqlite", "postgres")
    batch_api = "DBOSClient.enqueue_in_transaction x1000 in one transaction"

    @property
    def notes(self) -> str:  # type: ignore[override]
        store = (
            "`system_database_url` = the fresh database (DBOS's default pool and settings)"
            if self.backend == "postgres"
            else "WAL set on the file before DBOS opens it (DBOS sets no journal mode itself)"
        )
        return (
            "queue `bench` with worker_concurrency=8 per process, polling_interval_sec=0.05 "
            f"(default 1.0; DBOS sleeps one interval between polls); {store}; producer uses "
            "`DBOSClient`; W4 waits with `get_result(polling_interval_sec=0.05)`"
        )

    def __init__(self) -> None:
        self.url = ""
        self.client: DBOSClient | None = None
        self.engine: sa.Engine | None = None
        self.reader: sqlite3.Connection | None = None
        self.role = ""

    def version(self) -> str:
        from importlib.metadata import version

        return version("dbos")

    def open(self, db: str, sync: str, role: str) -> None:
        pg = self.backend == "postgres"
        if not pg:
            _configure(sync)
        self.url = db if pg else f"sqlite:///{db}"
        self.role = role
        if role == "producer":
            path = Path(db)
            if pg or not path.exists():
                if not pg:
                    with sqlite3.connect(path) as conn:
                        conn.execute("PRAGMA journal_mode=WAL")
                # DBOSClient never migrates: let a short-lived DBOS process create the schema.
                cmd = [sys.executable, "-m", MODULE, "init", "--db", db, "--sync", sync]
                cmd += ["--backend", self.backend]
                subprocess.run(cmd, check=True, cwd=None if pg else path.parent, timeout=120)
            self.client = DBOSClient(system_database_url=self.url)
            # Our own engine for the batch transaction (and for counting on PostgreSQL).
            self.engine = sa.create_engine(
                self.url.replace("postgresql://", "postgresql+psycopg://", 1)
            )
            if not pg:
                self.reader = sqlite3.connect(path, timeout=30)
            return
        # worker or init: a real DBOS application
        config: Any = {
            "name": "bench",
            "system_database_url": self.url,
            "log_level": "WARNING",
            "application_version": APP_VERSION,
            "executor_id": f"bench-{role}-{os.getpid()}",
        }
        DBOS(config=config)

        @DBOS.workflow(name="bench.noop")
        def noop(x: str) -> None:
            timing.stamp(time.time())

        @DBOS.workflow(name="bench.ping")
        def ping(x: str) -> str:
            return x

        if role == "init":
            DBOS.launch()
            DBOS.register_queue(QUEUE, worker_concurrency=8, polling_interval_sec=POLL)
            DBOS.destroy()

    def durability(self) -> dict[str, str]:
        if self.role == "worker":
            from dbos._dbos import _get_dbos_instance

            return _engine_settings(_get_dbos_instance()._sys_db.engine)
        assert self.client is not None
        return _engine_settings(self.client._sys_db.engine)

    def enqueue(self, x: str) -> None:
        assert self.client is not None
        self.client.enqueue(NOOP, x)  # type: ignore[arg-type]

    def enqueue_batch(self, xs: list[str]) -> None:
        assert self.client is not None and self.engine is not None
        with self.engine.begin() as conn:
            for x in xs:
                self.client.enqueue_in_transaction(conn, NOOP, x)  # type: ignore[arg-type]

    def completed(self, stamps: Path) -> int:
        if self.reader is None:  # PostgreSQL: DBOS's tables are in schema "dbos"
            assert self.engine is not None
            sql = "SELECT count(*) FROM dbos.workflow_status WHERE name = :n AND status = 'SUCCESS'"
            with self.engine.connect() as conn:
                return int(conn.execute(sa.text(sql), {"n": "bench.noop"}).scalar() or 0)
        sql = "SELECT count(*) FROM workflow_status WHERE name = ? AND status = 'SUCCESS'"
        return int(self.reader.execute(sql, ("bench.noop",)).fetchone()[0])

    def run_worker(self, concurrency: int, started: Callable[[], None]) -> None:
        DBOS.launch()
        DBOS.register_queue(
            QUEUE,
            worker_concurrency=concurrency,
            polling_interval_sec=POLL,
            on_conflict="always_update",
        )
        started()
        threading.Event().wait()

    def round_trip(self, x: str, timeout: float) -> None:
        assert self.client is not None
        handle = self.client.enqueue(PING, x)  # type: ignore[arg-type]
        if handle.get_result(polling_interval_sec=POLL) != x:
            raise RuntimeError("ping returned a wrong value")

    def close(self) -> None:
        client, engine, reader = self.client, self.engine, self.reader
        self.client = self.engine = self.reader = None
        if client is not None:
            client.destroy()
        if engine is not None:
            engine.dispose()
        if reader is not None:
            reader.close()


if __name__ == "__main__":
    timing.main(DbosPeer, MODULE)
