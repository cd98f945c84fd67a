"""The PostgreSQL store's transactions: statements pipelined, rows as JSON recordsets.

A write transaction sends its BEGIN with its first statement and defers the writes whose
result nobody reads until its next statement or its COMMIT, so a worker turn is three round
trips (postgres.py: "Round trips"); rows travel as one JSON array per statement (or by COPY
for large batches). What it reads and writes is store/sql.py's, in this dialect.
"""

from __future__ import annotations

import select
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg

from ..core.model import Event, Run, Task
from .dialect import RUN_COLUMNS, TASK_COLUMNS, Dialect, text_array
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
from .sql import STREAM_ROWS, SqlReadTx, SqlWriteTx

if TYPE_CHECKING:
    from .postgres import PostgresStore

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
        "random_id": "md5(random()::text || clock_timestamp()::text)",
    },
    doc="doc::text",
    doc_in="%s::json",
    doc_field="({0} ->> '{1}')",
    arrays=True,
    bytewise=' COLLATE "C"',
)

#: From this many rows on, new rows are written with COPY rather than a JSON recordset.
COPY_FROM = 1000
# Rows travel as one JSON array per statement (encoded by msgspec, unpacked by the server
# with json_to_recordset): one parameter instead of a dozen Python-built arrays. A row's
# document travels inside its row as JSON (``doc``), kept as it is, so that neither side
# escapes and parses it twice; but the recordset functions turn every string inside a
# nested document into text, and text cannot hold a NUL, so a document with "\u0000" in it
# (a handler's output, an error) would be refused, and with it the whole worker turn, again
# at every try. A document with any \u escape in it travels instead as a JSON string holding
# its JSON text (``doc_text``), cast to json once unpacked (``_doc``).
_DOC = "COALESCE(doc, doc_text::json)"
_U_DOC = "COALESCE(u.doc, u.doc_text::json)"
_RUN_ROW = (
    "run_id text, task_id text, task_name text, state text, scheduled_at double precision, "
    "due_at double precision, priority integer, queue text, concurrency_key text, "
    "holds_key boolean, lease_owner text, lease_expires_at double precision, doc json, "
    "doc_text text"
)  # (the columns of ms_runs, in order: _RunRow)
_INSERT_RUNS = (
    f"INSERT INTO ms_runs SELECT {', '.join(RUN_COLUMNS)}, {_DOC} "
    f"FROM json_to_recordset(%s::json) AS x({_RUN_ROW})"
)
_RUN_CHANGE = (
    "run_id text, state text, due_at double precision, holds_key boolean, lease_owner text, "
    "lease_expires_at double precision, doc json, doc_text text, concurrency_key text"
)  # (_RunChange)
_UPDATE_RUNS = (
    "UPDATE ms_runs r SET state = u.state, due_at = u.due_at, holds_key = u.holds_key, "
    f"lease_owner = u.lease_owner, lease_expires_at = u.lease_expires_at, doc = {_U_DOC}, "
    "concurrency_key = u.concurrency_key "
    f"FROM (SELECT * FROM json_to_recordset(%s::json) AS x({_RUN_CHANGE}) LIMIT %s) AS u "
    "WHERE r.run_id = u.run_id"
)  # only the columns a run's events can change (_RunChange): less JSON for the server to
#    read. The LIMIT (the row count) tells the planner how few rows come: without it, it expects
#    100 and, on a table of a few thousand short rows, scans the table to join them
# ... only over the run as it was read (``PostgresTx.update_runs_if_unchanged``); a row a
# concurrent transaction changed fails the match once that one commits (READ COMMITTED
# looks at the row again), and the caller drops the transaction
_UPDATE_RUNS_IF_UNCHANGED = (
    "UPDATE ms_runs r SET state = u.state, due_at = u.due_at, holds_key = u.holds_key, "
    f"lease_owner = u.lease_owner, lease_expires_at = u.lease_expires_at, doc = {_U_DOC}, "
    "concurrency_key = u.concurrency_key "
    f"FROM (SELECT * FROM json_to_recordset(%s::json) AS x({_RUN_CHANGE}, was_state text, "
    "was_due_at double precision, was_holds_key boolean, was_lease_owner text, "
    "was_lease_expires_at double precision, was_doc json, was_doc_text text) LIMIT %s) AS u "
    "WHERE r.run_id = u.run_id AND r.state = u.was_state AND r.due_at = u.was_due_at "
    "AND r.holds_key = u.was_holds_key "
    "AND r.lease_owner IS NOT DISTINCT FROM u.was_lease_owner "
    "AND r.lease_expires_at IS NOT DISTINCT FROM u.was_lease_expires_at "
    "AND r.doc::text = COALESCE(u.was_doc::text, u.was_doc_text)"
)
_UPSERT_TASKS = (
    f"INSERT INTO ms_tasks SELECT {', '.join(TASK_COLUMNS)}, {_DOC} "
    "FROM json_to_recordset(%s::json) AS x(task_id text, name text, idempotency_key text, "
    "kind text, canceled boolean, cron_next double precision, doc json, doc_text text) "
    "ON CONFLICT (task_id) DO UPDATE SET name = excluded.name, "
    "idempotency_key = excluded.idempotency_key, kind = excluded.kind, "
    "canceled = excluded.canceled, cron_next = excluded.cron_next, doc = excluded.doc"
)
# Draw the events' numbers and insert their record in one statement, the last before COMMIT:
# the counter row stays locked until the commit, so seq order is commit order (module
# docstring).
_APPEND_RECORD = (
    "WITH c AS (UPDATE ms_seq SET last = last + %s WHERE id = 1 RETURNING last - %s + 1 AS first), "
    "l AS (INSERT INTO ms_log (seq, last_seq, events) SELECT first, first + %s - 1, %s FROM c), "
    "r AS (INSERT INTO ms_log_runs (run_id, seq) SELECT r, c.first FROM c, unnest(%s::text[]) r) "
    "SELECT first FROM c"
)


class _RunRow(msgspec.Struct):
    """A run as the JSON object ``_INSERT_RUNS`` reads (its document: ``_doc``)."""

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
    doc: msgspec.Raw | None
    doc_text: str | None


class _RunChange(msgspec.Struct):
    """What ``_UPDATE_RUNS`` writes of a run: the columns its events can change."""

    run_id: str
    state: str
    due_at: float
    holds_key: bool
    lease_owner: str | None
    lease_expires_at: float | None
    doc: msgspec.Raw | None
    doc_text: str | None
    concurrency_key: str | None  # (a debounce changes a scheduled run's)


class _FencedChange(_RunChange):
    """A row of ``_UPDATE_RUNS_IF_UNCHANGED``: the run's new columns, then its old ones."""

    was_state: str
    was_due_at: float
    was_holds_key: bool
    was_lease_owner: str | None
    was_lease_expires_at: float | None
    was_doc: msgspec.Raw | None
    was_doc_text: str | None


class _TaskRow(msgspec.Struct):
    task_id: str
    name: str
    idempotency_key: str | None
    kind: str
    canceled: bool
    cron_next: float | None
    doc: msgspec.Raw | None
    doc_text: str | None


def _json(doc: Any) -> str:
    return encoder.encode(doc).decode()


def _doc(doc: Any) -> tuple[msgspec.Raw | None, str | None]:
    return _doc_of(encoder.encode(doc))


def _doc_of(body: bytes) -> tuple[msgspec.Raw | None, str | None]:
    """A row's ``doc`` and ``doc_text`` for a document's JSON ``body``: inside the row, or,
    when it holds a \\u escape, as a string of its JSON text (see ``_DOC``)."""
    if b"\\u" in body:
        return None, body.decode()
    return msgspec.Raw(body), None


def _runs_json(runs: Sequence[Run]) -> str:
    return _json([_RunRow(*run_columns(r), *_doc(run_doc(r))) for r in runs])


def _change(r: Run, fences: dict[str, Fence] | None = None) -> tuple[Any, ...]:
    """The fields of ``_RunChange`` for ``r``."""
    body = doc_written(r, fences)
    return (r.run_id, *lease_columns(r), *_doc_of(body), r.concurrency_key)


def _was(fence: Fence) -> tuple[Any, ...]:
    """The ``was_*`` fields of ``_FencedChange``: the row as written before."""
    return (*fence[:5], *_doc_of(fence[5]))


def _changes_json(runs: Sequence[Run], fences: dict[str, Fence] | None = None) -> str:
    return _json([_RunChange(*_change(r, fences)) for r in runs])


def _gone(con: Any) -> bool:
    """Has the server closed this idle pooled connection (restart, failover, terminate)?

    An idle connection receives nothing unless the server is ending it, so a readable
    socket means it is gone. A zero-timeout ``select``: no round trip.
    """
    if con.closed or con.broken:
        return True
    readable, _, _ = select.select([con.pgconn.socket], [], [], 0)
    return bool(readable)


class CallerConnection:
    """The caller's psycopg connection as ``PostgresTx`` uses one (``write_in``): rows as
    tuples whatever its ``row_factory``, and statements never prepared, so that neither
    its prepared-statement cache nor its settings are ours to disturb (a statement that
    failed in a pipeline can leave psycopg's cache out of step with the server's,
    ``PostgresStore._rollback``, and only a full rollback, which is the caller's to
    make, puts it right)."""

    def __init__(self, con: Any, tuple_row: Any) -> None:
        self.raw = con
        self._tuple_row = tuple_row

    def execute(self, query: str, params: Sequence[Any] | None = None) -> Any:
        return self.raw.cursor(row_factory=self._tuple_row).execute(query, params, prepare=False)

    def cursor(self) -> Any:
        return self.raw.cursor(row_factory=self._tuple_row)

    def pipeline(self) -> Any:
        return self.raw.pipeline()

    @property
    def pgconn(self) -> Any:
        return self.raw.pgconn

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)

    @property
    def broken(self) -> bool:
        return bool(self.raw.broken)


#: How a store's own write transaction ends.
COMMIT: tuple[tuple[str, Sequence[Any] | None], ...] = (("COMMIT", None),)


class _LostBeforeCommit(Exception):
    """The connection was found gone before the final round trip: nothing was committed."""


class PostgresReadTx(SqlReadTx):
    """Reads; each statement runs on its own (one round trip), or all in one snapshot."""

    DIALECT = DIALECT

    def __init__(self, con: Any) -> None:
        self.con = con

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.con.execute(query, params).fetchall())

    def _stream(self, query: str) -> Iterator[tuple[Any, ...]]:
        if self.con.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            yield from self._rows(query)  # (a server-side cursor lives in a transaction)
            return
        with self.con.cursor(name="ms_stream") as cur:
            cur.itersize = STREAM_ROWS
            cur.execute(query)
            yield from cur


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
        self._appended: tuple[Any, list[Event]] | None = None  # the log record's statement
        self.committed_seq = 0  # once committed: the seq of its last event (0: none)
        self._leasing = False  # holds the lease lock, shared (``ready_candidates``)

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

    def connection(self) -> Any:
        if self.begin or self.deferred:
            with self.con.pipeline():
                self._send_queued()
        return self.con

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

    def hold_leasing(self) -> None:
        self._exec(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (self.store.lease_lock,)
        )

    def _share_leasing(self) -> None:
        # Under READ COMMITTED a turn that read "not paused" could commit its leases after
        # a pause committed: turns share the lease lock, which a pause takes alone, so a
        # pause waits for the turns in progress and the next ones read it (it travels with
        # the candidates' query: no round trip of its own)
        if not self._leasing:
            self._leasing = True
            self._defer(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))",
                (self.store.lease_lock,),
            )

    def _take_keys(self, keys: Sequence[str], kind: str = "key") -> set[str]:
        """The keys whose transaction-scoped advisory lock this transaction got at once."""
        if not keys:
            return set()
        rows = self._rows(
            "SELECT k, pg_try_advisory_xact_lock(hashtextextended(%s || k, 0)) "
            "FROM unnest(%s::text[]) AS k",
            (f"{self.store.lock_prefix}{kind}:", text_array(keys)),
        )
        return {k for k, ok in rows if ok}

    def _doc(self, doc: bytes) -> Any:
        return doc.decode()

    def finish(self, end: Sequence[tuple[str, Sequence[Any] | None]] = COMMIT) -> None:
        """Append the buffered events, NOTIFY if asked, and COMMIT (or the statements
        ``end``: in a caller's transaction, release our savepoint): one round trip. The
        NOTIFY is delivered only if the transaction commits."""
        if self.begin and not self.pending and not self.deferred:  # nothing happened here
            return
        # (a caller's connection lost is the caller's transaction lost: theirs to see)
        if end is COMMIT and _gone(self.con):  # ended by the server since: a clean loss
            raise _LostBeforeCommit("the server closed the connection")
        with self.con.pipeline():
            self._send_queued()
            self.append_log()
            if self.wake:
                self.con.execute("SELECT pg_notify(%s, '')", (self.store.channel,))
            for statement, params in end:
                self.con.execute(statement, params)
        if self._appended is not None:
            cur, evs = self._appended
            first = cur.fetchone()[0]
            for i, ev in enumerate(evs):
                ev.seq = first + i  # (the events as committed: the App's log feed reads them)
            self.committed_seq = first + len(evs) - 1

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
                ((*task_columns(t), _json(t)) for t in tasks),
            )
        else:
            json_rows = [_TaskRow(*task_columns(t), *_doc(t)) for t in tasks]
            self._defer(_UPSERT_TASKS, (_json(json_rows),))

    def _insert_runs(self, runs: Sequence[Run]) -> None:
        if len(runs) >= COPY_FROM:
            self._copy(
                "ms_runs",
                ", ".join((*RUN_COLUMNS, "doc")),
                ((*run_columns(r), _json(run_doc(r))) for r in runs),
            )
        else:
            self._defer(_INSERT_RUNS, (_runs_json(runs),))

    def _update_runs(self, runs: Sequence[Run], fences: dict[str, Fence] | None) -> None:
        self._defer(_UPDATE_RUNS, (_changes_json(runs, fences), len(runs)))

    def update_runs_if_unchanged(self, fences: Sequence[Fence], after: Sequence[Run]) -> bool:
        pairs = sorted(zip(fences, after, strict=True), key=lambda p: p[1].run_id)
        rows = [_FencedChange(*_change(a), *_was(fence)) for fence, a in pairs]
        cur = self._exec(_UPDATE_RUNS_IF_UNCHANGED, (_json(rows), len(rows)))
        return int(cur.rowcount) == len(rows)

    def append_log(self) -> None:
        """Write the buffered events as one record, numbered in commit order (see the
        module docstring)."""
        evs = self.pending
        if not evs:
            return
        n = len(evs)
        cur = self._exec(
            _APPEND_RECORD, (n, n, n, encode_record(evs), text_array(record_run_ids(evs)))
        )
        # numbered once the pipeline it travels in has come back (``finish``): reading it
        # here would cost the round trip the pipeline saves
        self._appended = (cur, evs)
        self.pending = []
