"""Huey 3.5 on SQLite (``SqliteHuey``), thread workers.

Durability: SqliteHuey opens its one connection in WAL mode (``journal_mode='wal'``, its
default) and maps ``fsync=True`` to ``PRAGMA synchronous=FULL`` (``fsync=False`` is OFF, and
the default ``None`` leaves SQLite's compiled-in default). It has no NORMAL setting, so the
NORMAL level uses a two-line storage subclass that issues ``PRAGMA synchronous=NORMAL`` on
the connection it creates; everything else is stock Huey.

Wake-up: the consumer polls an empty queue; it is tuned to a fixed 50 ms interval
(``initial_delay=0.05, backoff=1.0, max_delay=0.05``; the default backs off to 10 s), and
the W4 result wait polls every 50 ms too (``Result.get(backoff=1.0)``, which starts at
50 ms). Results are stored only in W4, where the producer needs them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from huey import Huey, SqliteHuey
from huey.consumer import Consumer
from huey.storage import SqliteStorage

from . import timing

MODULE = "peers.huey_peer"
POLL = 0.05


class NormalSqliteStorage(SqliteStorage):
    """SqliteStorage with ``PRAGMA synchronous=NORMAL`` (Huey offers only FULL or OFF)."""

    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn.execute("pragma synchronous=NORMAL")
        return conn


class HueyPeer(timing.Peer):
    name = "huey"
    batch_api = None
    notes = (
        "consumer with 8 threads, `SqliteHuey(journal_mode='wal', fsync=True)` for FULL; "
        "empty-queue poll fixed at 50 ms (default backs off to 10 s); "
        "W4 waits with `Result.get(blocking=True, backoff=1.0)` (50 ms polls); "
        "no batch enqueue API (`task.map()` is a loop of single enqueues)"
    )

    def __init__(self) -> None:
        self.huey: Huey | None = None
        self.noop: Any = None
        self.ping: Any = None

    def version(self) -> str:
        import huey

        return str(huey.__version__)

    def open(self, db: str, sync: str, role: str) -> None:
        options: dict[str, Any] = {"filename": db, "journal_mode": "wal", "results": True}
        if sync == "full":
            self.huey = SqliteHuey("bench", fsync=True, **options)
        else:
            self.huey = Huey("bench", storage_class=NormalSqliteStorage, **options)

        @self.huey.task(name="bench.noop")
        def noop(x: str) -> None:
            timing.handle()

        @self.huey.task(name="bench.ping")
        def ping(x: str) -> str:
            return x

        self.noop, self.ping = noop, ping

    def durability(self) -> dict[str, str]:
        assert self.huey is not None
        conn = self.huey.storage.conn
        return timing.sqlite_pragmas(lambda sql: conn.execute(sql).fetchone()[0])

    def enqueue(self, x: str) -> None:
        self.noop(x)

    def run_worker(self, concurrency: int, started: Callable[[], None]) -> None:
        assert self.huey is not None
        logging.getLogger("huey").setLevel(logging.WARNING)
        consumer = Consumer(
            self.huey,
            workers=concurrency,
            worker_type="thread",
            initial_delay=POLL,
            backoff=1.0,
            max_delay=POLL,
            periodic=False,
            check_worker_health=False,
        )
        started()
        consumer.run()

    def round_trip(self, x: str, timeout: float) -> None:
        result = self.ping(x)
        if result.get(blocking=True, timeout=timeout, backoff=1.0) != x:
            raise RuntimeError("ping returned a wrong value")

    def close(self) -> None:
        if self.huey is not None:
            self.huey.storage.close()


if __name__ == "__main__":
    timing.main(HueyPeer, MODULE)
