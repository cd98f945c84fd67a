"""Writing inside the caller's own transaction (``Store.write_in``, docs/transactions.md):
what both stores share, and SQLite's connection proxy and wake-up after the caller's commit.

The caller commits, not us, so nothing of ours runs at their commit. PostgreSQL's
``NOTIFY`` is sent inside their transaction and delivered only if it commits. SQLite has no
commit hook in Python's ``sqlite3``: ``CommitWatcher`` waits for the write lock on a
connection of its own (the caller's transaction holds it until it ends, committed or
rolled back), then looks whether the record we appended is there, and wakes the workers
if it is.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import InvalidArgument

log = logging.getLogger("mainspring.store")

#: The savepoint our work runs in, inside the caller's transaction.
SAVEPOINT = "ms_write"

#: How to get at the DB-API connection from the usual frameworks (error messages, docs).
WHERE_FROM = (
    "Django: django.db.connection.connection inside transaction.atomic(); SQLAlchemy: "
    "session.connection().connection.driver_connection"
)


def not_this_store(display_url: str, why: str, driver: str) -> InvalidArgument:
    """The error for a ``connection=`` that does not reach the store."""
    return InvalidArgument(
        f"connection= must be a {driver} connection to the store's own database "
        f"({display_url}), inside the transaction to write in; {why}. Pass that "
        f"connection ({WHERE_FROM}), or submit without connection="
    )


class SQLiteCaller:
    """The caller's ``sqlite3`` connection as ``SQLiteTx`` uses one: rows as plain tuples,
    whatever ``row_factory`` the caller set on it."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.raw = con

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> sqlite3.Cursor:
        cur = self.raw.cursor()
        cur.row_factory = None
        return cur.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        cur = self.raw.cursor()
        cur.row_factory = None
        return cur.executemany(sql, parameters)


@dataclass
class Written:
    """What a write in a caller's transaction appended, and what its commit must tell."""

    seq: int  # the first seq of its log record
    record: bytes  # the record's ``events``: a seq reused after a rollback differs
    wake: bool
    ended: list[str] = field(default_factory=list)
    rows: int = 0  # events and run rows: what the checkpointer counts


class CommitWatcher:
    """Tells the workers of the SQLite writes made in callers' transactions once those
    commit: one daemon thread per store and process, started on first use.

    A round takes every write handed in so far and waits for the database's write lock
    (``BEGIN IMMEDIATE``, through ``busy_timeout``): once it has it, every transaction that
    wrote one of them has ended, since each held the lock from its write on. The records
    still there were committed; the others were rolled back. It does not queue on the
    store's writer ``flock``: a caller whose transaction is still open could be waiting
    there for a write of its own, behind us. A round that cannot get the lock gives up
    quietly (workers poll anyway)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        committed: Callable[[list[Written]], None],
    ) -> None:
        self._connect = connect
        self._committed = committed
        self._cond = threading.Condition()
        self._items: list[Written] = []
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False

    def watch(self, item: Written) -> None:
        with self._cond:
            if self._closed:
                return
            self._items.append(item)
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()  # (a forked child starts a thread of its own)
                self._thread = threading.Thread(
                    target=self._run, name="mainspring-commit-watcher", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify()

    def _run(self) -> None:
        con: sqlite3.Connection | None = None
        try:
            while True:
                with self._cond:
                    while not self._items and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                    items, self._items = self._items, []
                try:
                    con = con or self._connect()
                    found = self._present(con, items)
                except sqlite3.Error as exc:
                    log.debug("no wake-up after a caller's commit: %s", exc)
                    continue
                if found:
                    try:
                        self._committed(found)
                    except Exception as exc:  # (the store closed meanwhile)
                        log.debug("no wake-up after a caller's commit: %s", exc)
        finally:
            if con is not None:
                con.close()

    @staticmethod
    def _present(con: sqlite3.Connection, items: list[Written]) -> list[Written]:
        """The items whose record is in the log, read under the write lock."""
        con.execute("BEGIN IMMEDIATE")
        try:
            return [
                it
                for it in items
                if con.execute(
                    "SELECT 1 FROM ms_log WHERE seq = ? AND events = ?", (it.seq, it.record)
                ).fetchone()
            ]
        finally:
            con.execute("ROLLBACK")
