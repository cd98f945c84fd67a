"""The fleet store: PostgreSQL, shared by worker processes on any number of machines.

Same tables and meaning as the SQLite store; what differs is how concurrent writers are kept
apart, because PostgreSQL (unlike SQLite) runs write transactions side by side:

* **Row locks, not a global lock.** A write transaction locks the records it will change.
  ``load_runs`` takes each run's row lock (``FOR UPDATE``, in run-id order); the claims
  (ready runs, due runs, expired leases, due cron tasks) use ``FOR UPDATE SKIP LOCKED``, so
  workers never wait for one another and never claim the same row: exactly one of them
  leases a run, expires a lease or derives a cron occurrence.
* **Concurrency keys** are decided under a transaction-scoped advisory lock per key,
  taken with ``pg_try_advisory_xact_lock``: two workers never count a key's holders at the
  same time, a busy key is skipped this turn rather than waited for, and unrelated keys
  never contend.
* **The log's ``seq`` follows commit order.** A plain ``bigserial`` does not: a transaction
  can draw a low number and commit after a reader has read a higher one. Here events are
  buffered until the end of the transaction; just before ``COMMIT`` their numbers are
  drawn from a one-row counter (``UPDATE ms_seq ... RETURNING``) and they are inserted as
  the transaction's log record (store/rows.py), in that same statement. The
  counter's row lock is held until the transaction ends,
  and PostgreSQL makes a commit visible before it releases locks, so a transaction that
  draws a higher number is always visible after every lower one: a reader following
  ``seq > last_seen`` never skips an event and never sees one twice. Only that final
  step and the commit are serialized; everything else runs in parallel. The counter
  also rolls back with its transaction, so the sequence has no gaps.
* **Wake-up** is ``LISTEN``/``NOTIFY`` on a channel named after the schema, the
  ``NOTIFY`` sent inside the transaction it announces (so it is delivered only if that
  commits): a waiting worker holds one idle connection and costs the server nothing until
  a commit wakes it.

A transaction that loses a race (deadlock, serialization failure, a duplicate idempotency
key from a concurrent submitter) or its connection before the commit raises ``Conflict``,
and the engine runs the command again from scratch. A connection lost during ``COMMIT``
itself raises ``StoreError``: its outcome is unknown, and the caller decides (workers
retry; their reports are fenced, so a report that did land is not applied twice).

URL: ``postgresql://user:password@host:port/database?schema=name&pool_size=8&auto_migrate=true``,
or any other form libpq reads (``postgresql:///database``: the local Unix socket).
``schema`` (default ``public``), ``pool_size`` (connections per process, default 8) and
``auto_migrate`` (install or upgrade the schema on open, default true) are mainspring's own;
every other parameter is passed to libpq.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import select
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import msgspec

from ..core.errors import StoreError
from ..core.model import Run, Task
from . import schema
from .base import Conflict, Store, Waiter
from .dialect import RUN_COLUMNS, TASK_COLUMNS, Dialect
from .rows import (
    RunDoc,
    encode_record,
    encoder,
    record_run_ids,
    records_of_v1_rows,
    run_columns,
    run_doc,
    task_columns,
)
from .schema import APP_ID, SCHEMA_VERSION, migration
from .sql import SqlReadTx, SqlWriteTx

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as _exc:  # pragma: no cover - the extra is not installed
    psycopg = None  # type: ignore[assignment]
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

#: the tables of a store here: the schema's, and the log's counter
TABLES = (*schema.TABLES, "ms_seq")
DIALECT = Dialect(
    placeholder="%s",
    ddl={
        "text": "text",
        "real": "double precision",
        "int": "integer",
        "bigint": "bigint",
        "seq": "bigint",
        "bool": "boolean",
        "true": "true",
        "false": "false",
        "json": "json",
        "bytes": "bytea",
        # the log's counter (module docstring: "seq follows commit order")
        "counter": "CREATE TABLE ms_seq (id int PRIMARY KEY CHECK (id = 1), last bigint NOT NULL);"
        " INSERT INTO ms_seq (id, last) VALUES (1, 0);",
        # a record stays in its row (compressed with lz4 where the server has it) rather
        # than in a TOAST table, up to 8 kB
        "log_options": " WITH (toast_tuple_target = 8160)",
        "log_storage": "ALTER TABLE ms_log ALTER COLUMN events SET STORAGE MAIN;",
        "log_runs_options": "",
    },
    doc="doc::text",
    doc_in="%s::json",
    arrays=True,
)


def _migrate_log_v2(con: Any) -> None:
    try:
        with con.transaction():  # (a savepoint: a server built without lz4 says no)
            con.execute("ALTER TABLE ms_log ALTER COLUMN events SET COMPRESSION lz4")
    except psycopg.errors.FeatureNotSupported:
        pass
    with con.cursor(name="ms_migrate_v2") as cur:
        cur.execute(
            "SELECT seq, event_id, type, at, task_id, run_id, attempt_id, correlation_id, "
            "execution_id, data::text FROM ms_log_v1 ORDER BY seq"
        )
        while rows := cur.fetchmany(5000):
            records, runs = records_of_v1_rows(rows)
            with con.cursor() as w:
                w.executemany(
                    "INSERT INTO ms_log (seq, last_seq, events) VALUES (%s, %s, %s)", records
                )
                w.executemany("INSERT INTO ms_log_runs (run_id, seq) VALUES (%s, %s)", runs)
    con.execute("DROP TABLE ms_log_v1")


_MIGRATE_DATA = {2: _migrate_log_v2}

#: How long the server lets one of our transactions sit idle before it ends it.
IDLE_TX_TIMEOUT_MS = 5000
#: From this many rows on, new rows are written with COPY rather than a JSON recordset.
COPY_FROM = 1000
# Rows travel as one JSON array per statement (encoded by msgspec, unpacked by the server
# with json_populate_recordset): one parameter instead of a dozen Python-built arrays.
_INSERT_RUNS = "INSERT INTO ms_runs SELECT * FROM json_populate_recordset(null::ms_runs, %s::json)"
_UPDATE_RUNS = (
    "UPDATE ms_runs r SET state = u.state, due_at = u.due_at, holds_key = u.holds_key, "
    "lease_owner = u.lease_owner, lease_expires_at = u.lease_expires_at, doc = u.doc "
    "FROM (SELECT * FROM json_populate_recordset(null::ms_runs, %s::json) LIMIT %s) AS u "
    "WHERE r.run_id = u.run_id"
)  # only the columns a run's events can change (_RunChange): less JSON for the server to
#    read. The LIMIT (the row count) tells the planner how few rows come: without it, it expects
#    100 and, on a table of a few thousand short rows, scans the table to join them
# ... only over the run as it was read (``PostgresTx.update_runs_if_unchanged``); a row a
# concurrent transaction changed fails the match once that one commits (READ COMMITTED
# looks at the row again), and the caller drops the transaction
_UPDATE_RUNS_IF_UNCHANGED = (
    "UPDATE ms_runs r SET state = u.state, due_at = u.due_at, holds_key = u.holds_key, "
    "lease_owner = u.lease_owner, lease_expires_at = u.lease_expires_at, doc = u.doc "
    "FROM (SELECT * FROM json_to_recordset(%s::json) AS x(run_id text, state text, "
    "due_at double precision, holds_key boolean, lease_owner text, "
    "lease_expires_at double precision, doc json, was_state text, was_due_at double precision, "
    "was_holds_key boolean, was_lease_owner text, was_lease_expires_at double precision, "
    "was_doc json) LIMIT %s) AS u "
    "WHERE r.run_id = u.run_id AND r.state = u.was_state AND r.due_at = u.was_due_at "
    "AND r.holds_key = u.was_holds_key "
    "AND r.lease_owner IS NOT DISTINCT FROM u.was_lease_owner "
    "AND r.lease_expires_at IS NOT DISTINCT FROM u.was_lease_expires_at "
    "AND r.doc::text = u.was_doc::text"
)
_UPSERT_TASKS = (
    "INSERT INTO ms_tasks SELECT * FROM json_populate_recordset(null::ms_tasks, %s::json) "
    "ON CONFLICT (task_id) DO UPDATE SET name = excluded.name, "
    "idempotency_key = excluded.idempotency_key, kind = excluded.kind, "
    "canceled = excluded.canceled, cron_next = excluded.cron_next, doc = excluded.doc"
)
# Draw the events' numbers and insert their record in one statement, the last before COMMIT:
# the counter row stays locked until the commit, so seq order is commit order (module
# docstring).
_APPEND_RECORD = (
    "WITH c AS (UPDATE ms_seq SET last = last + %s WHERE id = 1 RETURNING last - %s + 1 AS first), "
    "l AS (INSERT INTO ms_log (seq, last_seq, events) SELECT first, first + %s - 1, %s FROM c) "
    "INSERT INTO ms_log_runs (run_id, seq) SELECT r, c.first FROM c, unnest(%s::text[]) r"
)


# Claims must walk the partial indexes in their order and stop at LIMIT. Without statistics
# (a new or freshly emptied table) the planner would rather sort every ready run first, which
# costs milliseconds per claim on a long queue; in a write transaction it may not.
# And a write transaction runs the generic plans of its (prepared) statements: left to
# choose, the server planned the claim and the run lookups again at every execution, which
# took a third of its time per worker turn (0.4 of 1.1 ms); their generic plans are the same.
_BEGIN_WRITE = (
    "BEGIN",
    "SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true),"
    " set_config('plan_cache_mode', 'force_generic_plan', true)",
)

#: Errors after which nothing was written and the command can simply run again.
_RETRYABLE: tuple[type[BaseException], ...] = ()
if psycopg is not None:
    _RETRYABLE = (
        pg_errors.UniqueViolation,
        pg_errors.DeadlockDetected,
        pg_errors.SerializationFailure,
        pg_errors.LockNotAvailable,
    )


class _RunRow(msgspec.Struct):
    """A run as the JSON object ``json_populate_recordset(null::ms_runs, ...)`` reads."""

    run_id: str
    task_id: str
    task_name: str
    state: str
    scheduled_at: float
    due_at: float
    priority: int
    queue: str
    concurrency_key: str | None
    holds_key: bool
    lease_owner: str | None
    lease_expires_at: float | None
    doc: RunDoc


class _RunChange(msgspec.Struct):
    """What ``_UPDATE_RUNS`` writes of a run: the columns its events can change."""

    run_id: str
    state: str
    due_at: float
    holds_key: bool
    lease_owner: str | None
    lease_expires_at: float | None
    doc: RunDoc


class _FencedChange(_RunChange):
    """A row of ``_UPDATE_RUNS_IF_UNCHANGED``: the run's new columns, then its old ones."""

    was_state: str
    was_due_at: float
    was_holds_key: bool
    was_lease_owner: str | None
    was_lease_expires_at: float | None
    was_doc: RunDoc


class _TaskRow(msgspec.Struct):
    task_id: str
    name: str
    idempotency_key: str | None
    kind: str
    canceled: bool
    cron_next: float | None
    doc: Task


def _runs_json(runs: Sequence[Run]) -> str:
    return encoder.encode([_RunRow(*run_columns(r), run_doc(r)) for r in runs]).decode()


def _change(r: Run) -> tuple[Any, ...]:
    """The fields of ``_RunChange`` for ``r``."""
    return (r.run_id, r.state, r.due_at, r.holds_key, r.lease_owner, r.lease_expires_at, run_doc(r))


def _changes_json(runs: Sequence[Run]) -> str:
    return encoder.encode([_RunChange(*_change(r)) for r in runs]).decode()


_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")  # unquoted PostgreSQL names fold to lower case
# libpq's URL: postgresql://[user[:password]@][host][:port][,...][/database][?param=value&...]
# (or postgres://). Every part may be empty: postgresql:///db is the database db through the
# local Unix socket, as the OS user. Split as libpq reads it, nothing decoded: the authority
# ends at the first / or ?, the parameters begin at the first ?, there is no fragment.
_URL = re.compile(r"(postgresql|postgres)://([^/?]*)([^?]*)(?:\?(.*))?", re.DOTALL)


def parse_url(url: str) -> tuple[str, str, int, bool]:
    """(libpq conninfo, schema, pool size, auto_migrate) from a ``postgresql://`` URL.

    mainspring's own parameters (``schema``, ``pool_size``, ``auto_migrate``) are taken
    out; the rest of the URL reaches libpq exactly as written (an empty host included:
    the Unix socket), in a ``postgresql://`` URL."""
    m = _URL.fullmatch(url)
    if m is None:
        raise StoreError(
            "not a PostgreSQL URL: use postgresql://[user[:password]@][host][:port]"
            "[/database][?param=value&...] (postgresql:///database: the local socket)"
        )
    _, authority, path, query = m.groups()
    kept: list[str] = []
    schema, pool_size, auto = "public", 8, True
    for item in (query or "").split("&"):
        raw_key, _, raw_value = item.partition("=")
        key, value = unquote(raw_key), unquote(raw_value)  # libpq's decoding: "+" is a "+"
        if key == "schema":
            schema = value
        elif key == "pool_size":
            if not value.isdigit() or int(value) < 1:
                raise StoreError(
                    f"invalid pool_size={value!r} in {_redact(url)!r}: use a number >= 1"
                )
            pool_size = int(value)
        elif key == "auto_migrate":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise StoreError(
                    f"invalid auto_migrate={value!r} in {_redact(url)!r}: use true or false"
                )
            auto = value.lower() in ("true", "1", "yes")
        elif item:
            kept.append(item)  # libpq's, as written
    if not _IDENT.match(schema):
        raise StoreError(
            f"invalid schema={schema!r} in {_redact(url)!r}: use lower-case letters, digits and "
            "underscores (at most 63)"
        )
    conninfo = f"postgresql://{authority}{path}" + ("?" + "&".join(kept) if kept else "")
    return conninfo, schema, pool_size, auto


def _passwords(url: str) -> list[str]:
    """The passwords in ``url`` (in the authority, ``password=``), as written and decoded."""
    m = _URL.fullmatch(url)
    if m is None:
        return []
    _, authority, _, query = m.groups()
    userinfo, at, _ = authority.rpartition("@")
    found = [userinfo.partition(":")[2]] if at and ":" in userinfo else []
    for item in (query or "").split("&"):
        key, _, value = item.partition("=")
        if unquote(key) == "password":
            found.append(value)
    return [p for raw in found if raw for p in {raw, unquote(raw)}]


def _redact(url: str) -> str:
    """The URL without its password (in the authority or as ``password=``), for messages."""
    m = _URL.fullmatch(url)
    if m is None:
        return "(a URL that is not a PostgreSQL URL)"
    scheme, authority, path, query = m.groups()
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:  # (up to the last @: nothing of a password is left)
        authority = f"{userinfo.partition(':')[0]}:***@{hosts}"
    if query is not None:
        query = "?" + "&".join(
            f"{item.partition('=')[0]}=***" if unquote(item.partition("=")[0]) == "password"
            else item
            for item in query.split("&")
        )  # fmt: skip
    return f"{scheme}://{authority}{path}{query or ''}"


def _scrub(message: str, url: str) -> str:
    """``message`` (libpq's, which may quote a part of the URL) without its passwords."""
    for password in sorted(_passwords(url), key=len, reverse=True):
        message = message.replace(password, "***")
    return message


class _QuietDiscards(logging.Filter):
    """The pool warns when it drops a closed connection. We close the ones the server
    ended (a restart, a failover) on purpose: expected, and not worth a warning each."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("discarding closed connection")


logging.getLogger("psycopg.pool").addFilter(_QuietDiscards())


class _QuietAbortedPipelines(logging.Filter):
    """A statement that fails inside a pipeline aborts the rest of it, and psycopg then
    warns, on leaving the pipeline, that it is aborted, beside the statement's own error,
    which propagates (a duplicate idempotency key, a deadlock: the engine handles those).
    The warning repeats that error; it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            str(record.msg).startswith("error ignored terminating")
            and len(record.args or ()) == 2
            and isinstance(record.args[1], pg_errors.PipelineAborted)  # type: ignore[index]
        )


logging.getLogger("psycopg").addFilter(_QuietAbortedPipelines())


def _gone(con: Any) -> bool:
    """Has the server closed this idle pooled connection (restart, failover, terminate)?

    An idle connection receives nothing unless the server is ending it, so a readable
    socket means it is gone. A zero-timeout ``select``: no round trip.
    """
    if con.closed or con.broken:
        return True
    readable, _, _ = select.select([con.pgconn.socket], [], [], 0)
    return bool(readable)


class _LostBeforeCommit(Exception):
    """The connection was found gone before the final round trip: nothing was committed."""


class PostgresReadTx(SqlReadTx):
    """Reads; each statement runs on its own (one round trip), or all in one snapshot."""

    DIALECT = DIALECT

    def __init__(self, con: Any) -> None:
        self.con = con

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.con.execute(query, params).fetchall())


class PostgresTx(SqlWriteTx):
    """A write transaction. Its writes are deferred to travel with its next statement, and
    its BEGIN with its first (module docstring, "Round trips")."""

    DIALECT = DIALECT

    def __init__(self, con: Any, store: PostgresStore, begin: tuple[str, ...] = ()):
        super().__init__()
        self.con = con
        self.store = store
        self.begin = begin  # sent with the first statement, in the same round trip
        self.deferred: list[tuple[str, Sequence[Any]]] = []  # writes not sent yet

    def _exec(self, query: str, params: Sequence[Any] = ()) -> Any:
        if not self.begin and not self.deferred:
            return self.con.execute(query, params)
        with self.con.pipeline():
            self._send_queued()
            cur = self.con.execute(query, params)
        return cur

    def _defer(self, query: str, params: Sequence[Any]) -> None:
        """A write whose result nobody reads: it travels with the next statement (at the
        latest the COMMIT), in the same round trip. Reads see it: they go after it."""
        self.deferred.append((query, params))

    def _send_queued(self) -> None:
        """Inside a pipeline: the pending BEGIN, then the deferred writes."""
        for statement in self.begin:
            self.con.execute(statement)
        self.begin = ()
        for query, params in self.deferred:
            self.con.execute(query, params)
        self.deferred = []

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._exec(query, params).fetchall())

    def _write_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            self._defer(query, row)

    def _lock(self, skip: bool = False) -> str:
        return " FOR UPDATE SKIP LOCKED" if skip else " FOR UPDATE"

    def _claim(self, of: str | None = None) -> str:
        return f" FOR UPDATE{f' OF {of}' if of else ''} SKIP LOCKED"

    def _take_keys(self, keys: Sequence[str]) -> set[str]:
        """The keys whose transaction-scoped advisory lock this transaction got at once."""
        if not keys:
            return set()
        rows = self._rows(
            "SELECT k, pg_try_advisory_xact_lock(hashtextextended(%s || k, 0)) "
            "FROM unnest(%s::text[]) AS k",
            (self.store.key_lock_prefix, list(keys)),
        )
        return {k for k, ok in rows if ok}

    def _doc(self, doc: bytes) -> Any:
        return doc.decode()

    def finish(self) -> None:
        """Append the buffered events, NOTIFY if asked, and COMMIT: one round trip."""
        if self.begin and not self.pending and not self.deferred:  # nothing happened here
            return
        if _gone(self.con):  # ended by the server since our last statement: a clean loss
            raise _LostBeforeCommit("the server closed the connection")
        with self.con.pipeline():
            self._send_queued()
            self.append_log()
            if self.wake:
                self.con.execute("SELECT pg_notify(%s, '')", (self.store.channel,))
            self.con.execute("COMMIT")

    def _copy(self, table: str, columns: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.begin or self.deferred:
            self._exec("SELECT 1")  # sends the pending BEGIN and writes (COPY is no pipeline)
        with self.con.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)

    # -- rows: one JSON recordset per statement, or COPY for large batches ------------------
    def _write_tasks(self, tasks: Sequence[Task], all_new: bool) -> None:
        if len(tasks) >= COPY_FROM and all_new:
            self._copy(
                "ms_tasks",
                ", ".join((*TASK_COLUMNS, "doc")),
                ((*task_columns(t), encoder.encode(t).decode()) for t in tasks),
            )
        else:
            json_rows = [_TaskRow(*task_columns(t), t) for t in tasks]
            self._defer(_UPSERT_TASKS, (encoder.encode(json_rows).decode(),))

    def _insert_runs(self, runs: Sequence[Run]) -> None:
        if len(runs) >= COPY_FROM:
            self._copy(
                "ms_runs",
                ", ".join((*RUN_COLUMNS, "doc")),
                ((*run_columns(r), encoder.encode(run_doc(r)).decode()) for r in runs),
            )
        else:
            self._defer(_INSERT_RUNS, (_runs_json(runs),))

    def _update_runs(self, runs: Sequence[Run]) -> None:
        self._defer(_UPDATE_RUNS, (_changes_json(runs), len(runs)))

    def update_runs_if_unchanged(self, before: Sequence[Run], after: Sequence[Run]) -> bool:
        pairs = sorted(zip(before, after, strict=True), key=lambda p: p[0].run_id)
        rows = [_FencedChange(*_change(a), *_change(b)[1:]) for b, a in pairs]
        cur = self._exec(_UPDATE_RUNS_IF_UNCHANGED, (encoder.encode(rows).decode(), len(rows)))
        return int(cur.rowcount) == len(rows)

    def append_log(self) -> None:
        """Write the buffered events as one record, numbered in commit order (see the
        module docstring)."""
        evs = self.pending
        if not evs:
            return
        n = len(evs)
        self._exec(_APPEND_RECORD, (n, n, n, encode_record(evs), record_run_ids(evs)))
        self.pending = []


class PostgresWaiter(Waiter):
    """A connection that LISTENs on the store's channel; reconnects when it drops."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.con: Any = None
        self._idle_r, self._idle_w = os.pipe()  # never readable: select on it while down
        self._connect()

    def _connect(self) -> bool:
        try:
            con = psycopg.connect(self.store.conninfo, autocommit=True, connect_timeout=5)
            con.execute(f'LISTEN "{self.store.channel}"')
        except psycopg.Error:
            self.con = None
            return False
        self.con = con
        return True

    def fileno(self) -> int:
        if self.con is None and not self._connect():
            return self._idle_r
        return int(self.con.pgconn.socket)

    def _drain(self) -> bool:
        """Consume pending notifications; True if any (or if the connection was renewed)."""
        if self.con is None:
            return self._connect()  # back after an outage: something may have been missed
        got = False
        try:
            pg = self.con.pgconn
            pg.consume_input()
            while pg.notifies() is not None:
                got = True
            if pg.status != psycopg.pq.ConnStatus.OK:
                raise psycopg.OperationalError("the LISTEN connection was closed")
        except psycopg.Error:
            self._close_con()
            self._connect()
            return True  # a wake-up may have been missed while it was down
        return got

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._drain():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                select.select([self.fileno()], [], [], left)
            except (OSError, ValueError):
                time.sleep(min(left, 0.05))

    def _close_con(self) -> None:
        if self.con is not None:
            try:
                self.con.close()
            except psycopg.Error:
                pass
            self.con = None

    def close(self) -> None:
        self._close_con()
        for fd in (self._idle_r, self._idle_w):
            try:
                os.close(fd)
            except OSError:
                pass


class PostgresStore(Store):
    fenced_updates = True

    def __init__(self, url: str, *, migrate: bool | None = None, create: bool = True) -> None:
        if psycopg is None:
            raise StoreError(
                "PostgreSQL stores need psycopg: pip install 'mainspring[postgres]' "
                f"({_IMPORT_ERROR})"
            )
        self.url = url
        conninfo, self.schema, pool_size, auto = parse_url(url)
        # A transaction left open by a frozen process (SIGSTOP, a debugger, a VM pause) holds
        # its row locks, and the log counter's; the server ends it after this long idle.
        # Our transactions never wait on the client for more than milliseconds. The URL's own
        # libpq options come after, so they can change it.
        try:
            given = psycopg.conninfo.conninfo_to_dict(conninfo).get("options") or ""
            options = f"-c idle_in_transaction_session_timeout={IDLE_TX_TIMEOUT_MS} {given}"
            self.conninfo = psycopg.conninfo.make_conninfo(
                conninfo, options=f"{options} -c search_path={self.schema}".replace("  ", " ")
            )
        except psycopg.Error as exc:  # libpq refuses the URL (an unknown parameter, ...)
            raise StoreError(
                f"invalid PostgreSQL URL {self.display_url!r}: {_scrub(str(exc), url).strip()}"
            ) from None
        self.channel = f"mainspring_{self.schema}"
        if len(self.channel) > 63:  # PostgreSQL's identifier limit
            digest = hashlib.sha1(self.schema.encode()).hexdigest()[:16]
            self.channel = f"mainspring_{self.schema[:30]}_{digest}"
        self.key_lock_prefix = f"mainspring:{self.schema}:key:"
        self.schema_version = self._open_schema(auto if migrate is None else migrate, create)
        self.pool = ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            timeout=10,  # then StoreError: callers (workers) retry with backoff
            name=f"mainspring-{self.schema}",
            open=False,
        )
        self.pool.open(wait=False)
        # An App dropped without close(): its pool is closed when the store goes (or at
        # exit), from that thread. Left to the pool's own __del__, it can run in one of the
        # pool's threads, which cannot join itself ("Exception ignored ... cannot join").
        self._close_pool = weakref.finalize(self, self.pool.close)
        self._closed = False

    @property
    def display_url(self) -> str:
        return _redact(self.url)

    # -- schema -----------------------------------------------------------------------------
    def _open_schema(self, migrate: bool, create: bool = True) -> int:
        try:
            con = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.display_url!r}: {exc}".strip()) from None
        try:
            version = self._installed_version(con)
            if version == SCHEMA_VERSION:
                return version
            if version == 0 and not create:
                raise StoreError(
                    f"no mainspring store in {self.display_url!r} (schema {self.schema!r}); "
                    "commands that only read never create one: check --store / MAINSPRING_STORE"
                )
            if not migrate:
                raise StoreError(
                    f"{self.display_url!r} has mainspring schema version {version or 'none'}, "
                    f"this version needs {SCHEMA_VERSION}; run `mainspring migrate --store URL` "
                    "(or open it without auto_migrate=false)"
                )
            with con.transaction():
                # one migrator at a time when a whole fleet starts at once
                con.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (
                    f"mainspring:{self.schema}:migrate",
                ))  # fmt: skip
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                current = self._installed_version(con)
                for v in range(current + 1, SCHEMA_VERSION + 1):
                    for stmt in migration(v, DIALECT):
                        con.execute(stmt)
                    if v in _MIGRATE_DATA:
                        _MIGRATE_DATA[v](con)
                con.execute(
                    "INSERT INTO ms_meta (key, value) VALUES ('app', %s), ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (APP_ID, str(SCHEMA_VERSION)),
                )
            return SCHEMA_VERSION
        except psycopg.Error as exc:
            raise StoreError(f"cannot open {self.display_url!r}: {exc}") from None
        finally:
            con.close()

    def _installed_version(self, con: Any) -> int:
        """The schema version in the store's schema (0: none), refusing what is not ours."""
        found = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name = ANY(%s)",
                (self.schema, list(TABLES)),
            )
        }
        if not found:
            return 0
        where = f"{self.display_url!r} (schema {self.schema!r})"
        if "ms_meta" not in found:
            raise StoreError(
                f"{where} has tables named like mainspring's ({', '.join(sorted(found))}) "
                "but is not a mainspring store; use another database or ?schema="
            )
        meta = dict(con.execute(f'SELECT key, value FROM "{self.schema}".ms_meta').fetchall())
        if meta.get("app") != APP_ID:
            raise StoreError(
                f"{where} is not a mainspring store (ms_meta.app = {meta.get('app')!r})"
            )
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{where} was written by a newer mainspring (schema {version}; this version "
                f"understands up to {SCHEMA_VERSION}); upgrade mainspring to open it"
            )
        return version

    # -- transactions ---------------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if self._closed:
            raise StoreError(f"the store {self.display_url!r} is closed")
        try:
            con = self.pool.getconn()
            # discard every connection the server closed at once (the pool's own check
            # would back off for seconds after each)
            for _ in range(self.pool.max_size + 1):
                if not _gone(con):
                    break
                con.close()
                self.pool.putconn(con)
                con = self.pool.getconn()
        except PoolTimeout as exc:
            raise StoreError(f"no connection to {self.display_url!r}: {exc}") from None
        try:
            yield con
        finally:
            self.pool.putconn(con)

    @staticmethod
    def _rollback(con: Any) -> None:
        """End a transaction that failed, leaving the connection ready for the next one.

        When the server refused a statement (a duplicate idempotency key, a deadlock: the
        transaction is in error), it skipped the rest of that statement's pipeline, the
        preparation of a statement included. psycopg prepares a statement at its first use
        after ``prepare_threshold`` (5), in the pipeline, and does not check the outcome of
        that step: it would take a skipped preparation for done, and every later use of
        the statement on this connection would fail ("prepared statement "_pg3_2" does
        not exist"). ``Connection.rollback()`` also forgets psycopg's prepared statements
        and deallocates the server's (DEALLOCATE ALL), so both sides agree again; they
        are prepared anew after a few more uses. A transaction the server did not refuse
        (the command itself raised) skipped nothing: a plain ROLLBACK keeps them.
        """
        try:
            if con.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                con.rollback()
            else:
                con.execute("ROLLBACK")
        except psycopg.Error:
            pass  # the connection is gone; the pool discards it

    @contextmanager
    def write(self) -> Iterator[PostgresTx]:
        with self._connection() as con:
            try:
                tx = PostgresTx(con, self, begin=_BEGIN_WRITE)
                yield tx
            except _RETRYABLE as exc:
                self._rollback(con)
                raise Conflict(f"concurrent transaction conflict: {exc}") from exc
            except psycopg.OperationalError as exc:
                self._rollback(con)  # the COMMIT was never sent: nothing was written
                raise Conflict(f"connection to {self.display_url!r} lost: {exc}") from exc
            except psycopg.Error as exc:
                self._rollback(con)
                raise StoreError(f"write to {self.display_url!r} failed: {exc}") from exc
            except BaseException:
                self._rollback(con)
                raise
            try:
                tx.finish()
            except _LostBeforeCommit as exc:
                self._rollback(con)
                raise Conflict(f"connection to {self.display_url!r} lost: {exc}") from exc
            except psycopg.Error as exc:
                state = exc.sqlstate
                lost = con.broken or not state or state.startswith(("08", "57P"))
                if isinstance(exc, psycopg.OperationalError) and lost:
                    raise StoreError(
                        f"the commit to {self.display_url!r} may or may not have happened "
                        f"(connection lost during COMMIT): {exc}"
                    ) from exc
                # the server refused a statement of the final pipeline: it skips what
                # follows, COMMIT included, so nothing was written
                self._rollback(con)
                if isinstance(exc, _RETRYABLE):
                    raise Conflict(f"concurrent transaction conflict: {exc}") from exc
                raise StoreError(f"write to {self.display_url!r} failed: {exc}") from exc

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[PostgresReadTx]:
        """Reads; without ``snapshot`` each statement runs on its own (one round trip)."""
        with self._connection() as con:
            try:
                if snapshot:
                    con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield PostgresReadTx(con)
            except psycopg.Error as exc:
                if snapshot:
                    self._rollback(con)
                raise StoreError(f"read from {self.display_url!r} failed: {exc}") from exc
            except BaseException:
                if snapshot:
                    self._rollback(con)
                raise
            if snapshot:
                try:
                    con.execute("COMMIT")
                except psycopg.Error:
                    pass  # a read-only transaction: nothing to lose

    def notify(self) -> None:
        try:
            with self._connection() as con:
                con.execute("SELECT pg_notify(%s, '')", (self.channel,))
        except (psycopg.Error, StoreError):
            pass  # waiters also poll: a lost wake-up only delays work

    def waiter(self) -> Waiter:
        return PostgresWaiter(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_pool()
