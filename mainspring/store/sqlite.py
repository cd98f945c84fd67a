"""The embedded store: one SQLite file in WAL mode, shared by processes on one machine.

Write transactions are ``BEGIN IMMEDIATE``, so writers are serialized by SQLite itself:
each appends its log record numbered after the last one, so ``seq`` is strictly
increasing in commit order, and a decision made inside a write transaction sees every
earlier commit.
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
from typing import Any
from urllib.parse import parse_qs, quote

from ..core.errors import StoreError
from ..core.model import Event, Run
from ..core.reducer import State
from ..core.states import RunState
from .base import Store, Waiter
from .kinds import Dialect, migration
from .notify import MAX_NAMED, Notifier, SocketEndedWaiter, SocketWaiter, notify_dir
from .rows import (
    SqlTx,
    any_decoder,
    decode_task,
    encode_record,
    encoder,
    record_run_ids,
    records_of_v1_rows,
    row_run,
    row_task,
    run_columns,
    run_doc,
    task_columns,
)

SCHEMA_VERSION = 3
APP_ID = "mainspring"

#: The background checkpointer copies the WAL into the database file each time this many
#: events have been committed through a store (see ``_Checkpointer``).
CHECKPOINT_EVENTS = 2000
#: The safety valve: a commit that finds this many pages in the WAL checkpoints inline
#: (SQLite's own automatic checkpoint), should the background copy fall behind.
WAL_AUTOCHECKPOINT_PAGES = 10000

log = logging.getLogger("mainspring.store")

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE ms_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE ms_log (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        at REAL NOT NULL,
        task_id TEXT,
        run_id TEXT,
        attempt_id TEXT,
        correlation_id TEXT,
        execution_id TEXT,
        data BLOB NOT NULL
    );
    CREATE INDEX ms_log_run ON ms_log (run_id, seq) WHERE run_id IS NOT NULL;
    CREATE TABLE ms_tasks (
        task_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        idempotency_key TEXT,
        kind TEXT NOT NULL,
        canceled INTEGER NOT NULL,
        cron_next REAL,
        doc BLOB NOT NULL
    );
    CREATE UNIQUE INDEX ms_tasks_idem ON ms_tasks (name, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX ms_tasks_cron ON ms_tasks (cron_next) WHERE cron_next IS NOT NULL;
    CREATE TABLE ms_runs (
        run_id TEXT PRIMARY KEY,
        task_id TEXT NOT NULL,
        task_name TEXT NOT NULL,
        state TEXT NOT NULL,
        scheduled_at REAL NOT NULL,
        due_at REAL NOT NULL,
        priority INTEGER NOT NULL,
        queue TEXT NOT NULL,
        concurrency_key TEXT,
        holds_key INTEGER NOT NULL,
        lease_owner TEXT,
        lease_expires_at REAL,
        doc BLOB NOT NULL
    );
    CREATE INDEX ms_runs_task ON ms_runs (task_id);
    CREATE INDEX ms_runs_completed ON ms_runs (scheduled_at, run_id) WHERE state = 'completed';
    CREATE INDEX ms_runs_failed ON ms_runs (scheduled_at, run_id) WHERE state = 'failed';
    CREATE INDEX ms_runs_canceled ON ms_runs (scheduled_at, run_id) WHERE state = 'canceled';
    CREATE INDEX ms_runs_suspended ON ms_runs (scheduled_at, run_id) WHERE state = 'suspended';
    CREATE INDEX ms_runs_due ON ms_runs (due_at) WHERE state IN ('scheduled', 'retry_wait');
    CREATE INDEX ms_runs_ready ON ms_runs (priority DESC, scheduled_at, run_id)
        WHERE state = 'ready';
    CREATE INDEX ms_runs_lease ON ms_runs (lease_expires_at) WHERE lease_owner IS NOT NULL;
    CREATE INDEX ms_runs_key ON ms_runs (concurrency_key) WHERE holds_key = 1;
    CREATE TABLE ms_definitions (name TEXT PRIMARY KEY, doc BLOB NOT NULL);
    CREATE TABLE ms_engine (id INTEGER PRIMARY KEY CHECK (id = 1), paused INTEGER NOT NULL);
    INSERT INTO ms_engine (id, paused) VALUES (1, 0);
    """,
    # the log as one record per transaction (store/rows.py); old events are copied over
    # by _migrate_log_v2, one record each
    2: """
    DROP INDEX ms_log_run;
    ALTER TABLE ms_log RENAME TO ms_log_v1;
    CREATE TABLE ms_log (
        seq INTEGER PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        events BLOB NOT NULL
    );
    CREATE TABLE ms_log_runs (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    """,
}
DIALECT = Dialect(
    placeholder="?", types={"text": "TEXT", "real": "REAL", "integer": "INTEGER", "doc": "BLOB"}
)
# versions from 3 on add record kinds' tables (store/kinds.py)
_MIGRATIONS[3] = ";\n".join(
    [
        # a task's runs by time (misfire=skip finds its overdue occurrence, task listings)
        "DROP INDEX ms_runs_task",
        "CREATE INDEX ms_runs_task ON ms_runs (task_id, scheduled_at)",
        *migration(3, DIALECT),
    ]
)


def _migrate_log_v2(con: sqlite3.Connection) -> None:
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

_RUN_COLS = (
    "run_id, task_id, task_name, state, scheduled_at, due_at, priority, queue, "
    "concurrency_key, holds_key, lease_owner, lease_expires_at, doc"
)
_RUN_COLS_OF_R = ", ".join("r." + c.strip() for c in _RUN_COLS.split(","))
_RUN_QMARKS = ", ".join("?" * 13)
# Only the columns a run's events can change: SQLite rewrites the entry of every index
# that mentions a column of the SET list, changed or not.
_RUN_UPDATE = (
    "UPDATE ms_runs SET state = ?, due_at = ?, holds_key = ?, lease_owner = ?, "
    "lease_expires_at = ?, doc = ? WHERE run_id = ?"
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


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    if not url.startswith("sqlite://"):
        raise StoreError(f"not a sqlite URL: {url!r}")
    rest = url[len("sqlite://") :]
    query: dict[str, str] = {}
    if "?" in rest:
        rest, qs = rest.split("?", 1)
        query = {k: v[-1] for k, v in parse_qs(qs).items()}
    if not rest.startswith("/") or rest == "/":
        raise StoreError(
            f"invalid sqlite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = rest[1:]  # sqlite:///rel -> "rel"; sqlite:////abs -> "/abs"
    return path, query


def _check_existing(path: str) -> int:
    """Inspect an existing file read-only. Returns its schema version (0 = empty file)."""
    if os.path.getsize(path) == 0:
        return 0
    try:
        # quote: a '#', '?' or '%' in the path must not change which file is opened, or how
        con = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path!r} as a SQLite database: {exc}") from None
    try:
        objects = con.execute("SELECT type, name FROM sqlite_master").fetchall()
        tables = {name for kind, name in objects if kind == "table"}
        marks = [
            con.execute(f"PRAGMA {p}").fetchone()[0] for p in ("user_version", "application_id")
        ]
        if not objects and not any(marks):
            return 0  # a database with nothing in it (a store whose creation was cut short)
        if "ms_meta" not in tables:
            raise StoreError(
                f"{path!r} is a SQLite database of another program, not a mainspring store; "
                "point --store / MAINSPRING_STORE at a new or mainspring file"
            )
        meta = dict(con.execute("SELECT key, value FROM ms_meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path!r} is not a mainspring store (not a SQLite database: {exc}); "
            "point --store / MAINSPRING_STORE at a new or mainspring file"
        ) from None
    finally:
        con.close()
    if meta.get("app") != APP_ID:
        raise StoreError(f"{path!r} is not a mainspring store (ms_meta.app = {meta.get('app')!r})")
    version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise StoreError(_newer(path, version))
    return version


def _newer(path: str, version: int) -> str:
    return (
        f"{path!r} was written by a newer mainspring (schema {version}; this version "
        f"understands up to {SCHEMA_VERSION}); upgrade mainspring to open it"
    )


# How to find the runs of one state through a partial index. There is deliberately no
# index on ``state`` itself: every state change would rewrite it (the hot path changes a
# run's state four times), while each partial index below sees a run enter and leave once.
_STATE_FILTER: dict[str, str] = {
    "scheduled": "INDEXED BY ms_runs_due WHERE state IN ('scheduled', 'retry_wait') "
    "AND state = 'scheduled'",
    "retry_wait": "INDEXED BY ms_runs_due WHERE state IN ('scheduled', 'retry_wait') "
    "AND state = 'retry_wait'",
    "ready": "INDEXED BY ms_runs_ready WHERE state = 'ready'",
    "leased": "INDEXED BY ms_runs_lease WHERE lease_owner IS NOT NULL AND state = 'leased'",
    "running": "INDEXED BY ms_runs_lease WHERE lease_owner IS NOT NULL AND state = 'running'",
    "suspended": "INDEXED BY ms_runs_suspended WHERE state = 'suspended'",
    "completed": "INDEXED BY ms_runs_completed WHERE state = 'completed'",
    "failed": "INDEXED BY ms_runs_failed WHERE state = 'failed'",
    "canceled": "INDEXED BY ms_runs_canceled WHERE state = 'canceled'",
}


def _run_row(r: Run) -> tuple[Any, ...]:
    return (*run_columns(r), encoder.encode(run_doc(r)))


def _run_update(r: Run) -> tuple[Any, ...]:
    doc = encoder.encode(run_doc(r))
    return (r.state, r.due_at, r.holds_key, r.lease_owner, r.lease_expires_at, doc, r.run_id)


class SQLiteTx(SqlTx):
    DIALECT = DIALECT
    P = "?"
    RUN_COLS = _RUN_COLS
    TASK_COLS = "task_id, name, idempotency_key, kind, canceled, cron_next, doc"

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con
        self.wake = False
        self.written = 0  # events and run rows saved: what the checkpointer counts
        self.pending: list[Event] = []  # this transaction's events, for its log record
        self.task_docs: dict[str, bytes] = {}  # documents of the tasks of claimed runs
        self.ended: list[str] = []

    def wake_on_commit(self) -> None:
        self.wake = True

    def ended_on_commit(self, run_ids: Sequence[str]) -> None:
        self.ended.extend(run_ids)

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.con.execute(query, params).fetchall())

    def _write_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        self.con.executemany(query, rows)

    # -- reads used by commands ---------------------------------------------------
    def load_runs(self, run_ids: Sequence[str], state: State) -> None:
        need = [r for r in run_ids if r not in state.runs]
        for i in range(0, len(need), 500):
            chunk = need[i : i + 500]
            q = f"SELECT {_RUN_COLS} FROM ms_runs WHERE run_id IN ({','.join('?' * len(chunk))})"
            for row in self.con.execute(q, chunk):
                state.runs[row[0]] = row_run(row)

    def load_tasks(self, task_ids: Sequence[str], state: State, *, lock: bool = False) -> None:
        need = list({t for t in task_ids if t not in state.tasks})
        if self.task_docs:  # read with the runs claimed in this transaction: current
            for t in [t for t in need if t in self.task_docs]:
                state.tasks[t] = decode_task(self.task_docs[t])
            need = [t for t in need if t not in state.tasks]
        for i in range(0, len(need), 500):
            chunk = need[i : i + 500]
            q = (
                "SELECT task_id, name, idempotency_key, kind, canceled, cron_next, doc FROM ms_tasks "
                f"WHERE task_id IN ({','.join('?' * len(chunk))})"
            )
            for row in self.con.execute(q, chunk):
                state.tasks[row[0]] = row_task(row)

    def due_run_ids(self, now: float, limit: int) -> list[str]:
        return [
            r[0]
            for r in self.con.execute(
                "SELECT run_id FROM ms_runs INDEXED BY ms_runs_due WHERE state IN ('scheduled', 'retry_wait') "
                "AND due_at <= ? ORDER BY due_at LIMIT ?",
                (now, limit),
            )
        ]

    def ready_candidates(
        self,
        now: float,
        queues: Sequence[str] | None,
        names: Sequence[str],
        limit: int,
        offset: int = 0,
    ) -> list[Run]:
        # the task of each run comes along (for load_tasks), and nothing while paused
        params: list[Any] = list(names)
        q = (
            f"SELECT {_RUN_COLS_OF_R}, t.doc FROM ms_runs r INDEXED BY ms_runs_ready "
            "JOIN ms_tasks t ON t.task_id = r.task_id WHERE r.state = 'ready' "
            f"AND r.task_name IN ({','.join('?' * len(names))}) "
            "AND NOT EXISTS (SELECT 1 FROM ms_engine WHERE paused = 1)"
        )
        if queues is not None:
            q += f" AND r.queue IN ({','.join('?' * len(queues))})"
            params.extend(queues)
        q += " ORDER BY r.priority DESC, r.scheduled_at, r.run_id LIMIT ? OFFSET ?"
        params.extend((limit, offset))
        out = []
        for row in self.con.execute(q, params):
            run = row_run(row)
            self.task_docs[run.task_id] = row[13]
            out.append(run)
        return out

    def key_holders(self, keys: Sequence[str]) -> dict[str, set[str] | None]:
        out: dict[str, set[str]] = {k: set() for k in keys}
        ks = list(keys)
        for i in range(0, len(ks), 500):
            chunk = ks[i : i + 500]
            q = (
                "SELECT concurrency_key, run_id FROM ms_runs WHERE holds_key = 1 "
                f"AND concurrency_key IN ({','.join('?' * len(chunk))})"
            )
            for k, rid in self.con.execute(q, chunk):
                out[k].add(rid)
        return {k: v for k, v in out.items()}  # never busy: writers are serialized

    def lease_owners(self, run_ids: Sequence[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = dict.fromkeys(run_ids)
        ids = list(run_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = f"SELECT run_id, lease_owner FROM ms_runs WHERE run_id IN ({','.join('?' * len(chunk))})"
            out.update(self.con.execute(q, chunk).fetchall())
        return out

    def expired_lease_run_ids(self, now: float, limit: int) -> list[str]:
        return [
            r[0]
            for r in self.con.execute(
                "SELECT run_id FROM ms_runs WHERE lease_owner IS NOT NULL AND lease_expires_at <= ? "
                "ORDER BY lease_expires_at LIMIT ?",
                (now, limit),
            )
        ]

    def cron_due_task_ids(self, now: float, limit: int) -> list[str]:
        return [
            r[0]
            for r in self.con.execute(
                "SELECT task_id FROM ms_tasks WHERE cron_next <= ? ORDER BY cron_next LIMIT ?",
                (now, limit),
            )
        ]

    def paused(self, *, lock: bool = False) -> bool:
        row = self.con.execute("SELECT paused FROM ms_engine WHERE id = 1").fetchone()
        return bool(row and row[0])

    def definition(self, name: str) -> dict[str, Any] | None:
        row = self.con.execute("SELECT doc FROM ms_definitions WHERE name = ?", (name,)).fetchone()
        return None if row is None else dict(any_decoder.decode(row[0]))

    # -- queries --------------------------------------------------------------------
    def query_runs(
        self, state: str | None, task: str | None, limit: int, task_id: str | None = None
    ) -> list[Run]:
        q = f"SELECT {_RUN_COLS} FROM ms_runs "
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            q += _STATE_FILTER[RunState(state).value]
        elif task_id is not None:
            q += "INDEXED BY ms_runs_task WHERE 1"
        else:
            q += "WHERE 1"
        if task is not None:
            where.append("task_name = ?")
            params.append(task)
        if task_id is not None:
            where.append("task_id = ?")
            params.append(task_id)
        for w in where:
            q += " AND " + w
        q += " ORDER BY scheduled_at, run_id LIMIT ?"
        params.append(limit)
        return [row_run(r) for r in self.con.execute(q, params)]

    def stats(self) -> dict[str, int]:
        return {
            st: self.con.execute(f"SELECT COUNT(*) FROM ms_runs {_STATE_FILTER[st]}").fetchone()[0]
            for st in (s.value for s in RunState)
        }

    def is_idle(
        self, now: float, names: Sequence[str] | None = None, queues: Sequence[str] | None = None
    ) -> bool:
        only, params = "", []
        if names is not None:
            only = f" AND task_name IN ({','.join('?' * len(names))})"
            params = list(names)
            if queues is not None:
                only += f" AND queue IN ({','.join('?' * len(queues))})"
                params += list(queues)
        row = self.con.execute(
            "SELECT EXISTS (SELECT 1 FROM ms_runs INDEXED BY ms_runs_ready "
            f"WHERE state = 'ready'{only}) "
            "OR EXISTS (SELECT 1 FROM ms_runs INDEXED BY ms_runs_lease "
            f"WHERE lease_owner IS NOT NULL{only}) "
            "OR EXISTS (SELECT 1 FROM ms_runs INDEXED BY ms_runs_due "
            "WHERE state IN ('scheduled', 'retry_wait') AND (state = 'retry_wait' OR due_at <= ?)"
            f"{only})",
            (*params, *params, now, *params),
        ).fetchone()
        return not row[0]

    def next_due(self) -> float | None:
        row = self.con.execute(
            "SELECT MIN(due_at) FROM ms_runs INDEXED BY ms_runs_due "
            "WHERE state IN ('scheduled', 'retry_wait')"
        ).fetchone()
        t = row[0] if row else None
        crow = self.con.execute(
            "SELECT MIN(cron_next) FROM ms_tasks WHERE cron_next IS NOT NULL"
        ).fetchone()
        c = crow[0] if crow else None
        cands = [x for x in (t, c) if x is not None]
        return min(cands) if cands else None

    def probe(
        self, now: float, names: Sequence[str], queues: Sequence[str] | None
    ) -> tuple[bool, float | None]:
        params: list[Any] = list(names)
        ready = (
            "SELECT 1 FROM ms_runs INDEXED BY ms_runs_ready WHERE state = 'ready' "
            f"AND task_name IN ({','.join('?' * len(names))})"
        )
        if not names:
            ready = "SELECT 1 WHERE 0"  # (an empty IN leaves INDEXED BY no plan)
        elif queues is not None:
            ready += f" AND queue IN ({','.join('?' * len(queues))})"
            params.extend(queues)
        row = self.con.execute(
            f"SELECT EXISTS ({ready}) "
            "OR EXISTS (SELECT 1 FROM ms_runs INDEXED BY ms_runs_due "
            "WHERE state IN ('scheduled', 'retry_wait') AND due_at <= ?) "
            "OR EXISTS (SELECT 1 FROM ms_runs INDEXED BY ms_runs_lease "
            "WHERE lease_owner IS NOT NULL AND lease_expires_at <= ?) "
            "OR EXISTS (SELECT 1 FROM ms_tasks WHERE cron_next <= ?)",
            (*params, now, now, now),
        ).fetchone()
        return bool(row[0]), self.next_due()

    # -- verify -----------------------------------------------------------------------
    def snapshot(self) -> State:
        st = State()
        for row in self.con.execute(f"SELECT {_RUN_COLS} FROM ms_runs"):
            st.runs[row[0]] = row_run(row)
        for row in self.con.execute(
            "SELECT task_id, name, idempotency_key, kind, canceled, cron_next, doc FROM ms_tasks"
        ):
            st.tasks[row[0]] = row_task(row)
        for name, doc in self.con.execute("SELECT name, doc FROM ms_definitions"):
            st.definitions[name] = dict(any_decoder.decode(doc))
        self.snapshot_records(st)
        st.paused = self.paused()
        st.last_seq = self.last_seq()
        return st

    # -- writing ------------------------------------------------------------------------
    def save(self, state: State, events: Sequence[Event]) -> None:
        self.written += len(events) + len(state.dirty_runs)
        self.pending.extend(events)  # the transaction's record is written at its end
        if state.dirty_tasks:
            self.con.executemany(
                "INSERT OR REPLACE INTO ms_tasks (task_id, name, idempotency_key, kind, canceled, "
                "cron_next, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (*task_columns(t), encoder.encode(t))
                    for t in (state.tasks[i] for i in sorted(state.dirty_tasks))
                ],
            )
        if state.dirty_runs:
            # in id (= creation) order, so that runs made together share pages: a worker
            # later leases them together, and its commit then rewrites few pages
            runs, fresh, ids = state.runs, state.new_runs, sorted(state.dirty_runs)
            new = [_run_row(runs[i]) for i in ids if i in fresh]
            old = [_run_update(runs[i]) for i in ids if i not in fresh]
            if new:
                self.con.executemany(
                    f"INSERT INTO ms_runs ({_RUN_COLS}) VALUES ({_RUN_QMARKS})", new
                )
            if old:
                self.con.executemany(_RUN_UPDATE, old)
        if state.dirty_definitions:
            self.con.executemany(
                "INSERT OR REPLACE INTO ms_definitions (name, doc) VALUES (?, ?)",
                [(n, encoder.encode(state.definitions[n])) for n in state.dirty_definitions],
            )
        if state.dirty_engine:
            self.con.execute(
                "UPDATE ms_engine SET paused = ? WHERE id = 1", (1 if state.paused else 0,)
            )
        self.save_records(state)
        state.clear_dirty()

    def update_runs_if_unchanged(self, before: Sequence[Run], after: Sequence[Run]) -> bool:
        pairs = sorted(zip(before, after, strict=True), key=lambda p: p[0].run_id)
        rows = [(*_run_update(a), *_run_update(b)[:6]) for b, a in pairs]
        self.written += len(rows)
        return self.con.executemany(_RUN_UPDATE_IF_UNCHANGED, rows).rowcount == len(rows)

    def append_log(self) -> None:
        """Write the transaction's events as one log record (store/rows.py)."""
        evs = self.pending
        if not evs:
            return
        row = self.con.execute(_APPEND_RECORD, (len(evs), encode_record(evs))).fetchone()
        first = row[0]
        self.con.executemany(
            "INSERT INTO ms_log_runs (run_id, seq) VALUES (?, ?)",
            [(r, first) for r in record_run_ids(evs)],
        )
        self.pending = []


class _Checkpointer:
    """Copies the WAL back into the database file from a thread of its own.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, so
    every thousandth page or so a worker's turn waits for pages to be copied and the
    database file to be synced. Here commits only count what they wrote; past
    ``CHECKPOINT_EVENTS`` a daemon thread runs a PASSIVE checkpoint on its own connection,
    which waits for no reader or writer (a checkpoint that another process is already
    running is simply skipped). Durability is unchanged: a commit is durable in the WAL
    according to ``synchronous``, whenever its pages reach the database file.
    """

    def __init__(self, connect: Any) -> None:
        self._connect = connect
        self._pending = 0
        self._go = threading.Event()
        self._closed = False
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def committed(self, events: int) -> None:
        self._pending += events
        if self._pending < CHECKPOINT_EVENTS or self._closed:
            return
        self._pending = 0
        if self._pid != os.getpid():  # not started yet, or this is a forked child
            with self._lock:
                if self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._go = threading.Event()
                    self._thread = threading.Thread(
                        target=self._run,
                        args=(self._go,),
                        name="mainspring-checkpoint",
                        daemon=True,
                    )
                    self._thread.start()
        self._go.set()

    def _run(self, go: threading.Event) -> None:
        con = self._connect()
        try:
            while True:
                go.wait()
                go.clear()
                if self._closed:
                    return
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the next round tries again; the valve holds
                    log.debug("background checkpoint failed: %s", exc)
        finally:
            con.close()

    def close(self) -> None:
        self._closed = True
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            self._go.set()
            thread.join(timeout=10)


class SQLiteStore(Store):
    fenced_updates = True

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.create = create
        path, query = parse_url(url)
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
        self._open_schema()
        self.schema_version = SCHEMA_VERSION
        self._notifier = Notifier(notify_dir(self.path))
        self._ended = Notifier(os.path.join(notify_dir(self.path), "ended"))
        self._ended_waiters: list[SocketEndedWaiter] = []
        self._checkpointer = _Checkpointer(self._connect)
        self._lock_path = os.path.join(notify_dir(self.path), "write.lock")
        self._lock_fds: list[int] = []

    # -- connections ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA busy_timeout = 60000")
        con.execute(f"PRAGMA synchronous = {self.synchronous}")
        con.execute("PRAGMA cache_size = -32000")
        con.execute("PRAGMA temp_store = MEMORY")
        con.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
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

    def _open_schema(self) -> None:
        directory = os.path.dirname(self.path) or "."
        if os.path.isdir(self.path):
            raise StoreError(f"{self.path!r} is a directory, not a mainspring store file")
        if os.path.exists(self.path):
            version = _check_existing(self.path)
        elif not self.create:
            raise StoreError(
                f"no mainspring store at {self.path!r}: the file does not exist (check "
                "--store / MAINSPRING_STORE; commands that only read never create a store)"
            )
        else:
            if not os.path.isdir(directory):
                raise StoreError(
                    f"cannot create store {self.path!r}: directory {directory!r} does not exist"
                )
            version = 0
        if version == SCHEMA_VERSION:
            self._con()  # validate we can connect
            return
        con = self._con()
        try:
            con.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path!r}: {exc}") from None
        con.execute("BEGIN IMMEDIATE")
        try:
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            current = 0
            if "ms_meta" in tables:
                row = con.execute(
                    "SELECT value FROM ms_meta WHERE key = 'schema_version'"
                ).fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:  # written since we looked (never mark it down)
                    raise StoreError(_newer(self.path, current))
            elif tables:
                raise StoreError(f"{self.path!r} is not a mainspring store")
            for v in range(current + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[v].split(";"):
                    if stmt.strip():
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

    @contextmanager
    def write(self) -> Iterator[SQLiteTx]:
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
    def read(self, *, snapshot: bool = False) -> Iterator[SQLiteTx]:
        con = self._con()
        try:
            con.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path!r}: {exc}") from exc
        try:
            yield SQLiteTx(con)
        except sqlite3.Error as exc:
            raise StoreError(f"read from {self.path!r} failed: {exc}") from exc
        finally:
            with contextlib.suppress(sqlite3.Error):
                con.execute("COMMIT")

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
