"""mainspring on SQLite or PostgreSQL, driven only through its public API (docs/api.md).

The two backends differ only in the store URL. SQLite: ``sqlite:////abs/store.db``
(``synchronous=FULL``, the engine's default) or ``sqlite:////abs/store.db?synchronous=normal``.
PostgreSQL (``--backend postgres``, the ``mainspring-pg`` row): the URL of the fresh
database the harness made, ``postgresql://user@host:port/bench_...``, with the server's
settings. Producer: ``task.submit(x)``; batch: ``app.submit_many(task, [((x,), {}), ...])``
when the App offers it. Workers: ``app.run_worker(concurrency=8)`` (threads) in a worker
process. W4 waits with ``RunHandle.result(timeout=...)``; wake-up is whatever the engine does
by default.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import timing

try:
    import mainspring as ms
except Exception as exc:  # the engine may not be importable yet: report it in the row
    ms = None
    IMPORT_ERROR: Exception | None = exc
else:
    IMPORT_ERROR = None

MODULE = "peers.mainspring_peer"


def _has_submit_many() -> bool:
    return ms is not None and hasattr(ms.App, "submit_many")


def _reachable(root: Any, wanted: Callable[[Any], bool], depth: int = 4) -> list[Any]:
    """Objects reachable from ``root`` through instance attributes for which ``wanted``."""
    found: list[Any] = []
    seen: set[int] = set()
    layer = [root]
    for _ in range(depth):
        below = []
        for obj in layer:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if wanted(obj):
                found.append(obj)
                continue
            items: list[Any] = []
            if isinstance(obj, dict):
                items = list(obj.values())
            elif isinstance(obj, list | tuple | set):
                items = list(obj)
            elif hasattr(obj, "__dict__") and not isinstance(obj, type):
                items = list(vars(obj).values())
            below.extend(items)
        layer = below
    return found


def _is_psycopg(obj: Any) -> bool:
    """A psycopg connection or connection pool (``psycopg``/``psycopg_pool``)."""
    module = type(obj).__module__
    return module.startswith("psycopg") and (hasattr(obj, "execute") or hasattr(obj, "getconn"))


def _psycopg_show(found: Any) -> Callable[[str], Any] | None:
    """``execute(sql) -> first value`` on a psycopg pool or idle connection of the engine."""
    if hasattr(found, "getconn"):  # a pool: borrow one of its connections, give it back

        def through_pool(sql: str) -> Any:
            with found.connection() as conn:
                return conn.execute(sql).fetchone()[0]

        return through_pool
    import psycopg

    if found.closed or found.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return None  # never step into a transaction of the engine's

    def on_connection(sql: str) -> Any:
        value = found.execute(sql).fetchone()[0]
        if not found.autocommit:
            found.rollback()  # end the read-only transaction this opened
        return value

    return on_connection


class MainspringPeer(timing.Peer):
    name = "mainspring"
    backends = ("sqlite", "postgres")
    batch_api = "App.submit_many (1,000 per call)" if _has_submit_many() else None

    @property
    def notes(self) -> str:  # type: ignore[override]
        store = (
            "store URL `postgresql://…/bench_…` (a fresh database, server settings)"
            if self.backend == "postgres"
            else "store URL `sqlite:////…/store.db` (FULL is the default) or with "
            "`?synchronous=normal`"
        )
        return (
            f"{store}; `app.run_worker(concurrency=8)` threads per process; W4 waits with "
            "`RunHandle.result()`; engine-default wake-up"
        )

    def __init__(self) -> None:
        if ms is None:
            raise RuntimeError(f"cannot import mainspring: {IMPORT_ERROR!r}")
        self.app: Any = None
        self.noop: Any = None
        self.ping: Any = None
        self.db = ""
        self.sync = "full"

    def version(self) -> str:
        found = getattr(ms, "__version__", None)
        if found:
            return str(found)
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("mainspring")
        except PackageNotFoundError:
            return "dev"

    def open(self, db: str, sync: str, role: str) -> None:
        assert ms is not None
        self.db, self.sync = db, sync
        if self.backend == "postgres":
            url = db  # postgresql://…/bench_<peer>_<phase>_<pid>, made by the harness
        else:
            url = f"sqlite:///{Path(db).resolve()}"
            if sync == "normal":
                url += "?synchronous=normal"
        self.app = ms.App(store=url)

        if os.environ.get("BENCH_ASYNC"):  # the handler as ``async def`` (benchmarks/scale.py)

            @self.app.task(name="bench.noop")
            async def noop(x: str) -> None:
                await timing.handle_async()

        else:

            @self.app.task(name="bench.noop")
            def noop(x: str) -> None:
                timing.handle()

        @self.app.task(name="bench.ping")
        def ping(x: str) -> str:
            return x

        if hasattr(self.app, "open"):  # (an App opens its store on first use)
            self.app.open()  # now, so durability() finds its connections

        self.noop, self.ping = noop, ping

    def durability(self) -> dict[str, str]:
        if self.backend == "postgres":
            return self._pg_durability()
        for conn in _reachable(self.app, lambda obj: isinstance(obj, sqlite3.Connection)):
            try:
                return timing.sqlite_pragmas(lambda sql, c=conn: c.execute(sql).fetchone()[0])
            except sqlite3.Error:
                continue  # e.g. a connection owned by another thread
        # Not reachable from outside: journal_mode is stored in the file, synchronous is not.
        assert self.db is not None
        with sqlite3.connect(self.db) as conn:
            journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).upper()
        return {
            "journal_mode": journal,
            "synchronous": self.sync.upper(),
            "source": "journal_mode read from the file; synchronous as requested in the URL",
        }

    def _pg_durability(self) -> dict[str, str]:
        # Pools first: a bare connection may be the engine's LISTEN connection.
        candidates = sorted(
            _reachable(self.app, _is_psycopg), key=lambda o: not hasattr(o, "getconn")
        )
        for found in candidates:
            execute = _psycopg_show(found)
            if execute is None:
                continue
            try:
                return timing.pg_settings(execute)
            except Exception:
                continue
        # The engine's connections are not reachable: ask the same database with psql.
        found = timing.pg_settings(lambda sql: timing.psql(self.db, sql))
        found["source"] = "read with psql on the same database (engine connection not reachable)"
        return found

    def enqueue(self, x: str) -> None:
        self.noop.submit(x)

    def enqueue_batch(self, xs: list[str]) -> None:
        if not hasattr(self.app, "submit_many"):
            raise timing.Unsupported("App.submit_many is not available")
        self.app.submit_many(self.noop, [((x,), {}) for x in xs])

    def completed(self, stamps: Path) -> int:
        return int(self.app.stats().get("completed", 0))

    def run_worker(self, concurrency: int, started: Callable[[], None]) -> None:
        started()
        prefetch = int(os.environ.get("BENCH_PREFETCH", "0"))  # (benchmarks/scale.py)
        self.app.run_worker(concurrency=concurrency, prefetch=prefetch)

    def round_trip(self, x: str, timeout: float) -> None:
        if self.ping.submit(x).result(timeout=timeout) != x:
            raise RuntimeError("ping returned a wrong value")

    def close(self) -> None:
        app, self.app = self.app, None
        closer = getattr(app, "close", None)
        if callable(closer):
            closer()


if __name__ == "__main__":
    timing.main(MainspringPeer, MODULE)
