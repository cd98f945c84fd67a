"""The embedded store: one SQLite file in WAL mode, shared by processes on one machine.

Write transactions are ``BEGIN IMMEDIATE``, so writers are serialized by SQLite itself:
each appends its log record numbered after the last one, so ``seq`` is strictly
increasing in commit order, and a decision made inside a write transaction sees every
earlier commit. A write inside the caller's own transaction (``write_in``) takes the same
lock before it decides, and holds it until the caller commits.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import quote

from ..core.errors import InvalidArgument, StoreError
from ..core.model import Run, Task
from .base import Store, Waiter, auto_migrate_of
from .caller_tx import SAVEPOINT, CommitWatcher, SQLiteCaller, Written, not_this_store
from .checkpoint import Checkpointer
from .dialect import Dialect
from .notify import MAX_NAMED, Notifier, SocketEndedWaiter, SocketWaiter, notify_dir
from .rows import (
    Fence,
    doc_written,
    encode_record,
    encoder,
    lease_columns,
    record_run_ids,
    run_columns,
    run_doc,
    task_columns,
)
from .schema import SCHEMA_VERSION
from .sql import SqlReadTx, SqlWriteTx
from .sqlite_file import parse_url
from .sqlite_schema import open_schema

#: The safety valve: a commit that finds this many pages in the WAL checkpoints inline
#: (SQLite's own automatic checkpoint), should the background copy fall behind.
WAL_AUTOCHECKPOINT_PAGES = 10000
#: A WAL that grew past this while a long reader held it back (a compaction's snapshot, a
#: backup) is cut back to it when it next starts over, rather than stay that large.
WAL_SIZE_LIMIT = WAL_AUTOCHECKPOINT_PAGES * 4096

log = logging.getLogger("mainspring.store")

DIALECT = Dialect(
    placeholder="?",
    ddl={
        **dict.fromkeys(("int", "bigint", "seq", "bool"), "INTEGER"),
        **dict.fromkeys(("json", "bytes"), "BLOB"),
        "text": "TEXT",
        "real": "REAL",
        "true": "1",
        "false": "0",
        "counter": "",
        "log_options": "",
        "log_storage": "",
        "log_runs_options": " WITHOUT ROWID",
        "random_id": "lower(hex(randomblob(16)))",
    },
    hints=True,
    true="1",
    max_list=500,
)


_INSERT_RUNS = f"INSERT INTO ms_runs ({DIALECT.run_cols}) VALUES ({', '.join('?' * 13)})"
_UPSERT_TASKS = (
    f"INSERT OR REPLACE INTO ms_tasks ({DIALECT.task_cols}) VALUES ({', '.join('?' * 7)})"
)
# Only the columns a run's events can change: SQLite rewrites the entry of every index
# that mentions a column of the SET list, changed or not (the key's index mentions
# holds_key already; a debounce changes a scheduled run's key).
_RUN_UPDATE = (
    "UPDATE ms_runs SET state = ?, due_at = ?, holds_key = ?, lease_owner = ?, "
    "lease_expires_at = ?, doc = ?, concurrency_key = ? WHERE run_id = ?"
)
# ... only over the run as it was read (``SQLiteTx.update_runs_if_unchanged``)
_RUN_UPDATE_IF_UNCHANGED = (
    _RUN_UPDATE + " AND state = ? AND due_at = ? AND holds_key = ? AND lease_owner IS ? "
    "AND lease_expires_at IS ? AND doc = ?"
)

# The record numbered after the last one, in one statement (store/rows.py)
_APPEND_RECORD = (
    "INSERT INTO ms_log (seq, last_seq, events) SELECT s + 1, s + ?, ? FROM "
    "(SELECT coalesce((SELECT last_seq FROM ms_log ORDER BY seq DESC LIMIT 1), 0) AS s) "
    "RETURNING seq"
)


# Booleans are bound as ints: sqlite3 binds an exact int, float or str directly, and looks
# for an adapter for any other value (None and bytes too), raising and discarding two
# AttributeErrors on the way, a cost per value a turn's rows would pay.


def _run_row(r: Run) -> tuple[Any, ...]:
    cols = run_columns(r)
    return (*cols[:9], int(r.holds_key), *cols[10:], encoder.encode(run_doc(r)))


def _task_row(t: Task) -> tuple[Any, ...]:
    cols = task_columns(t)
    return (*cols[:4], int(t.canceled), cols[5], encoder.encode(t))


def _lease_row(cols: tuple[str, float, bool, str | None, float | None]) -> tuple[Any, ...]:
    """``rows.lease_columns`` as bound (``holds_key`` an int)."""
    state, due_at, holds_key, owner, expires = cols
    return (state, due_at, int(holds_key), owner, expires)


def _run_update(r: Run, fences: dict[str, Fence] | None = None) -> tuple[Any, ...]:
    doc = doc_written(r, fences)
    return (*_lease_row(lease_columns(r)), doc, r.concurrency_key, r.run_id)


# Any write takes SQLite's write lock (RESERVED) when it starts, even one that changes no
# row: what a caller's transaction that has only read so far needs before we decide.
_TAKE_WRITE_LOCK = "UPDATE ms_engine SET paused = paused WHERE 0"


def _unusable(exc: sqlite3.ProgrammingError) -> InvalidArgument:
    """A caller's connection that is closed, or another thread's."""
    return InvalidArgument(f"connection= cannot be used here: {exc}")


class _Executes(Protocol):
    """What a transaction runs its statements on: a ``sqlite3.Connection``, or the
    caller's behind ``SQLiteCaller``."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> sqlite3.Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor: ...


class _Connection:
    """How a SQLite transaction runs its statements: at once, on its connection."""

    DIALECT = DIALECT
    con: _Executes

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(query, params).fetchall()

    def _stream(self, query: str) -> Iterator[tuple[Any, ...]]:
        yield from self.con.execute(query)  # (sqlite3 steps the statement as it is read)

    def _write_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        self.con.executemany(query, rows)


class SQLiteReadTx(_Connection, SqlReadTx):
    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con


class SQLiteTx(_Connection, SqlWriteTx):
    """A write transaction; SQLite serializes them, so nothing here locks or skips rows."""

    con: sqlite3.Connection | SQLiteCaller

    def __init__(self, con: sqlite3.Connection | SQLiteCaller) -> None:
        super().__init__()
        self.con = con
        self.written = 0  # events and run rows saved: what the checkpointer counts
        self.appended: tuple[int, bytes] | None = None  # its log record: first seq, events

    def _saved(self, rows: int) -> None:
        self.written += rows

    def connection(self) -> sqlite3.Connection:
        con = self.con
        return con.raw if isinstance(con, SQLiteCaller) else con

    def _write_tasks(self, tasks: Sequence[Task], all_new: bool) -> None:
        self.con.executemany(_UPSERT_TASKS, [_task_row(t) for t in tasks])

    def _insert_runs(self, runs: Sequence[Run]) -> None:
        self.con.executemany(_INSERT_RUNS, [_run_row(r) for r in runs])

    def _update_runs(self, runs: Sequence[Run], fences: dict[str, Fence] | None) -> None:
        self.con.executemany(_RUN_UPDATE, [_run_update(r, fences) for r in runs])

    def update_runs_if_unchanged(self, fences: Sequence[Fence], after: Sequence[Run]) -> bool:
        pairs = sorted(zip(fences, after, strict=True), key=lambda p: p[1].run_id)
        rows = [(*_run_update(a), *_lease_row(fence[:5]), fence[5]) for fence, a in pairs]
        self.written += len(rows)
        return self.con.executemany(_RUN_UPDATE_IF_UNCHANGED, rows).rowcount == len(rows)

    def append_log(self) -> None:
        """Write the transaction's events as one log record (store/rows.py)."""
        evs = self.pending
        if not evs:
            return
        record = encode_record(evs)
        row = self.con.execute(_APPEND_RECORD, (len(evs), record)).fetchone()
        first = row[0]
        self.appended = (first, record)
        for i, ev in enumerate(evs):
            ev.seq = first + i  # (the events as committed: the App's log feed reads them)
        self.con.executemany(
            "INSERT INTO ms_log_runs (run_id, seq) VALUES (?, ?)",
            [(r, first) for r in record_run_ids(evs)],
        )
        self.pending = []


class SQLiteStore(Store):
    fenced_updates = True

    def __init__(self, url: str, *, create: bool = True, migrate: bool | None = None) -> None:
        self.url = url
        self.create = create
        path, query = parse_url(url)
        #: create or migrate the schema on open (False: refuse a store that is not current)
        self.migrate = (
            auto_migrate_of(query.get("auto_migrate", "true"), url) if migrate is None else migrate
        )
        self.path = os.path.abspath(path)
        sync = query.get("synchronous", "full").upper()
        if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StoreError(
                f"invalid synchronous={sync.lower()!r} in {url!r}: use off, normal, full or extra"
            )
        self.synchronous = sync
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        self._file: tuple[int, int] | None = None  # (device, inode) once it exists
        open_schema(self, DIALECT)
        self.schema_version = SCHEMA_VERSION
        st = os.stat(self.path)
        self._file = (st.st_dev, st.st_ino)
        # the processes of one file meet in one directory, by the file (device, inode),
        # not by its path: another path to it (a symlink, a hard link) is the same store
        shared = notify_dir(f"{st.st_dev}:{st.st_ino}")
        self._notifier = Notifier(shared)
        self._ended = Notifier(os.path.join(shared, "ended"))
        self._ended_waiters: list[SocketEndedWaiter] = []
        self._checkpointer = Checkpointer(self._connect)
        self._lock_path = os.path.join(shared, "write.lock")
        self._lock_fds: list[int] = []
        self._watcher = CommitWatcher(self._connect, self._caller_committed)

    # -- connections ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # once the store is open its file must be there: a connection opened later never
        # makes an empty one where it was deleted (``_check_file``)
        mode = "rwc" if self._file is None else "rw"
        try:
            con = sqlite3.connect(
                f"file:{quote(self.path)}?mode={mode}",
                uri=True,
                timeout=60,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store file {self.path!r}: {exc}") from None
        con.execute("PRAGMA busy_timeout = 60000")
        con.execute(f"PRAGMA synchronous = {self.synchronous}")
        con.execute("PRAGMA cache_size = -32000")
        con.execute("PRAGMA temp_store = MEMORY")
        con.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        con.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        return con

    def _con(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the store {self.url!r} is closed")
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            self._local.con = con
            with self._all_lock:
                self._all.append(con)
        return con

    # -- transactions -----------------------------------------------------------------------
    def _write_lock(self) -> int | None:
        """This thread's descriptor of the store's writer queue (None: none to be had).

        Writers queue on an exclusive ``flock`` before ``BEGIN IMMEDIATE``: the kernel
        hands the lock to a waiting writer the moment it is released, where SQLite's busy
        handler would have a writer that finds the database locked sleep 1, 2, 5... ms and
        try again. The flock only orders writers; SQLite's own lock still excludes them
        (a writer without the queue, e.g. another user's, waits through busy_timeout)."""
        got: tuple[int, int | None] | None = getattr(self._local, "lock", None)
        if got is not None and got[0] == os.getpid():
            return got[1]
        fd: int | None = None
        try:  # (a forked child opens its own: a shared descriptor would share the lock)
            os.makedirs(os.path.dirname(self._lock_path), mode=0o700, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with self._all_lock:
                self._lock_fds.append(fd)
        except OSError as exc:
            log.debug("no writer queue for %s: %s", self.path, exc)
        self._local.lock = (os.getpid(), fd)
        return fd

    def _check_file(self) -> None:
        """Refuse to write once the store's file was deleted or replaced under this process:
        its connections would go on writing to the old file, and all of it would be lost."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != self._file:
            what = "deleted" if st is None else "replaced by another file"
            raise StoreError(
                f"the store file {self.path!r} was {what} while this process had it open: "
                "nothing more is written to it; put the store's file back, or restart on the "
                "new one"
            )

    @contextmanager
    def write(self) -> Iterator[SQLiteTx]:
        self._check_file()
        con = self._con()
        queue = self._write_lock()
        if queue is not None:
            fcntl.flock(queue, fcntl.LOCK_EX)
        try:
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to {self.path!r}: {exc}") from None
            tx = SQLiteTx(con)
            try:
                yield tx
                tx.append_log()
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"write to {self.path!r} failed: {exc}") from exc
                raise
            try:
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                raise StoreError(f"commit to {self.path!r} failed: {exc}") from exc
        finally:
            if queue is not None:
                fcntl.flock(queue, fcntl.LOCK_UN)
        if tx.wake:
            self.notify()
        if tx.ended:
            ids = tx.ended
            self._ended.notify(b"*" if len(ids) > MAX_NAMED else ",".join(ids).encode())
        if tx.written:
            self._checkpointer.committed(tx.written)

    @contextmanager
    def write_in(self, connection: Any) -> Iterator[SQLiteTx]:
        """A write transaction inside the caller's transaction on ``connection`` (a
        ``sqlite3.Connection`` to this store's file), in a savepoint; never committed here.

        If no transaction is open on it, one is begun (``BEGIN IMMEDIATE``): it commits
        when the caller commits. Either way the write lock is taken before anything is
        decided, as in every write transaction, and the caller's transaction holds it until
        it ends: other writers of the store wait until then. Workers are woken once it
        commits (``CommitWatcher``)."""
        if not isinstance(connection, sqlite3.Connection):
            raise not_this_store(self.display_url, f"got {type(connection).__name__}", "sqlite3")
        if self._closed:
            raise StoreError(f"the store {self.url!r} is closed")
        con = SQLiteCaller(connection)
        text_factory = connection.text_factory
        try:
            connection.text_factory = str  # (our TEXT columns as str, whatever the caller's)
            try:
                began = not connection.in_transaction
            except sqlite3.ProgrammingError as exc:  # closed
                raise _unusable(exc) from None
            if began and getattr(connection, "autocommit", None) is True:
                # (Python 3.12's autocommit mode: commit() would not commit what we begin)
                raise InvalidArgument(
                    "connection= is in autocommit mode with no transaction open: begin one "
                    "first (conn.execute('BEGIN')), and commit it when done"
                )
            # The write lock first, then which database this is: a read first would open a
            # snapshot in the caller's transaction, which cannot take the lock once another
            # writer has committed since (SQLite refuses at once, without waiting).
            try:
                try:
                    con.execute("BEGIN IMMEDIATE" if began else _TAKE_WRITE_LOCK)
                except sqlite3.OperationalError as exc:
                    if "no such table" in str(exc):  # (not a mainspring store at all)
                        self._check_caller(con)
                    raise
                self._check_caller(con)
                con.execute(f"SAVEPOINT {SAVEPOINT}")
            except (sqlite3.Error, InvalidArgument) as exc:
                if began:
                    with contextlib.suppress(sqlite3.Error):
                        con.execute("ROLLBACK")
                if isinstance(exc, InvalidArgument):
                    raise
                if isinstance(exc, sqlite3.ProgrammingError):  # another thread's
                    raise _unusable(exc) from None
                raise StoreError(self._lock_refused(exc)) from exc
            tx = SQLiteTx(con)
            try:
                yield tx
                tx.append_log()
                con.execute(f"RELEASE {SAVEPOINT}")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    if began:  # the caller had no transaction: leave none, and no lock
                        con.execute("ROLLBACK")
                    else:
                        con.execute(f"ROLLBACK TO {SAVEPOINT}")
                        con.execute(f"RELEASE {SAVEPOINT}")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"write to {self.path!r} failed: {exc}") from exc
                raise
        finally:
            connection.text_factory = text_factory
        if tx.appended is not None and (tx.wake or tx.ended or tx.written):
            seq, record = tx.appended
            self._watcher.watch(Written(seq, record, tx.wake, list(tx.ended), tx.written))

    def _check_caller(self, con: SQLiteCaller) -> None:
        """Refuse a connection that is not to this store's file (its ``store_id``)."""
        try:
            row = con.execute("SELECT value FROM ms_meta WHERE key = 'store_id'").fetchone()
        except sqlite3.ProgrammingError as exc:  # closed, or another thread's
            raise _unusable(exc) from None
        except sqlite3.Error:
            row = None  # not a mainspring store at all
        if row is None or row[0] != self.store_id:
            why = "it is a connection to another database" + (
                "" if row is None else " (another mainspring store)"
            )
            raise not_this_store(self.display_url, why, "sqlite3")

    def _lock_refused(self, exc: sqlite3.Error) -> str:
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY_SNAPSHOT":
            return (
                f"cannot write to {self.path!r} in your transaction: another writer committed "
                "since it first read, so it cannot write any more; roll it back and run it "
                "again (or submit before reading)"
            )
        return f"cannot write to {self.path!r} in your transaction: {exc}"

    def _caller_committed(self, written: list[Written]) -> None:
        """Callers' transactions that wrote to the store committed (``CommitWatcher``)."""
        if any(w.wake for w in written):
            self.notify()
        ids = [r for w in written for r in w.ended]
        if ids:
            self._ended.notify(b"*" if len(ids) > MAX_NAMED else ",".join(ids).encode())
        rows = sum(w.rows for w in written)
        if rows:
            self._checkpointer.committed(rows)

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[SQLiteReadTx]:
        con = self._con()
        try:
            con.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path!r}: {exc}") from exc
        try:
            yield SQLiteReadTx(con)
        except sqlite3.Error as exc:
            raise StoreError(f"read from {self.path!r} failed: {exc}") from exc
        finally:
            with contextlib.suppress(sqlite3.Error):
                con.execute("COMMIT")

    def release_memory(self) -> None:
        """Empty this thread's page cache (up to ``cache_size`` per connection): a
        compaction reads the whole store through it, and then it would hold those pages
        until the connection closes."""
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is not None and not self._closed:
            con.execute("PRAGMA shrink_memory")

    def notify(self) -> None:
        self._notifier.notify()

    def waiter(self) -> Waiter:
        w = SocketWaiter(self._notifier.directory)
        self._notifier.refresh()
        return w

    def ended_waiter(self) -> SocketEndedWaiter:
        """This thread's waiter for ended runs; it lives until the store is closed.

        Committers list the waiters' directory at most every ``Notifier.REFRESH`` s, so a
        new waiter hears from other processes only after that: callers keep a poll."""
        w: SocketEndedWaiter | None = getattr(self._local, "ended", None)
        if w is None:
            w = SocketEndedWaiter(self._ended.directory)
            self._local.ended = w
            with self._all_lock:
                self._ended_waiters.append(w)
            self._ended.refresh()
        return w

    def close(self) -> None:
        self._closed = True
        self._watcher.close()
        self._checkpointer.close()
        with self._all_lock:
            for w in self._ended_waiters:
                w.close()
            self._ended_waiters.clear()
            for con in self._all:
                try:
                    con.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
            for fd in self._lock_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._lock_fds.clear()
        self._notifier.close()
        self._ended.close()
