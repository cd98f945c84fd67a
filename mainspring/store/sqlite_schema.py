"""Opening a SQLite store's file: create it, migrate it (one process at a time, under a
lock beside the file, in one transaction, with the data steps only this store has), or
refuse a file that is not mainspring's (store/sqlite_file.py looks)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..core.errors import StoreError
from .dialect import Dialect
from .notify import notify_dir
from .rows import records_of_v1_rows
from .schema import APP_ID, SCHEMA_VERSION, migration
from .sqlite_file import check_existing, newer

if TYPE_CHECKING:
    from .sqlite import SQLiteStore


def _migrate_log_v2(con: sqlite3.Connection) -> None:
    """Version 2: the events of version 1's log, one record each."""
    cur = con.execute(
        "SELECT seq, event_id, type, at, task_id, run_id, attempt_id, correlation_id, "
        "execution_id, data FROM ms_log_v1 ORDER BY seq"
    )
    while rows := cur.fetchmany(5000):
        records, runs = records_of_v1_rows(rows)
        con.executemany("INSERT INTO ms_log (seq, last_seq, events) VALUES (?, ?, ?)", records)
        con.executemany("INSERT INTO ms_log_runs (run_id, seq) VALUES (?, ?)", runs)
    con.execute("DROP TABLE ms_log_v1")


_MIGRATE_DATA = {2: _migrate_log_v2}


def open_schema(store: SQLiteStore, dialect: Dialect) -> None:
    """Open the store's file: create it, migrate it (one process at a time) or refuse it."""
    version = _version(store)
    if version == SCHEMA_VERSION:
        store._con()  # validate we can connect
        return
    if not store.migrate:
        raise StoreError(
            f"{store.path!r} has mainspring schema version {version or 'none'}, this version "
            f"needs {SCHEMA_VERSION}; run `mainspring migrate --store URL` (or open it without "
            "auto_migrate=false / migrate=False)"
        )
    # Creating or migrating: one process at a time, and each looks again once it holds
    # the lock (two processes opening a new file at once: one creates, the other finds
    # it made; SQLite alone would have the second fail switching to WAL, "locked").
    with _opening(store):
        if _version(store) == SCHEMA_VERSION:
            store._con()
            return
        _migrate(store, dialect)


def _version(store: SQLiteStore) -> int:
    """The schema version of the file at the store's path (0: none yet), refusing
    what is not ours to open or create."""
    directory = os.path.dirname(store.path) or "."
    if os.path.isdir(store.path):
        raise StoreError(f"{store.path!r} is a directory, not a mainspring store file")
    if os.path.exists(store.path):
        version = check_existing(store.path)
        if version == 0 and not store.create:  # (empty: making it a store is creating one)
            raise StoreError(
                f"no mainspring store at {store.path!r}: the file is empty (check --store / "
                "MAINSPRING_STORE; commands that only read never create a store)"
            )
        return version
    if not store.create:
        raise StoreError(
            f"no mainspring store at {store.path!r}: the file does not exist (check "
            "--store / MAINSPRING_STORE; commands that only read never create a store)"
        )
    if not os.path.isdir(directory):
        raise StoreError(
            f"cannot create store {store.path!r}: directory {directory!r} does not exist"
        )
    return 0


@contextmanager
def _opening(store: SQLiteStore) -> Iterator[None]:
    """Hold the store's creation lock (an exclusive flock on a file beside the
    notification sockets) for as long as the block runs."""
    directory = notify_dir(os.path.realpath(store.path))  # (no file yet: by its path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(directory, "open.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # (closing releases the lock)


def _migrate(store: SQLiteStore, dialect: Dialect) -> None:
    con = store._con()
    try:
        con.execute("PRAGMA journal_mode = WAL")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {store.path!r}: {exc}") from None
    con.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        current = 0
        if "ms_meta" in tables:
            row = con.execute("SELECT value FROM ms_meta WHERE key = 'schema_version'").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:  # written since we looked (never mark it down)
                raise StoreError(newer(store.path, current))
        elif tables:
            raise StoreError(f"{store.path!r} is not a mainspring store")
        for v in range(current + 1, SCHEMA_VERSION + 1):
            for stmt in migration(v, dialect):
                con.execute(stmt)
            if v in _MIGRATE_DATA:
                _MIGRATE_DATA[v](con)
        con.execute("INSERT OR REPLACE INTO ms_meta (key, value) VALUES ('app', ?)", (APP_ID,))
        con.execute(
            "INSERT OR REPLACE INTO ms_meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
