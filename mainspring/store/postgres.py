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
* **Inside the caller's transaction** (``write_in``, docs/transactions.md) a command runs
  on the caller's connection, in a savepoint, with ``search_path`` set to the store's
  schema for its statements only; its log record is appended (the counter row stays
  locked until the caller's transaction ends) and its ``NOTIFY`` sent, but the commit is
  the caller's.

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
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..core.errors import InvalidArgument, StoreError
from .base import Conflict, Store, Waiter
from .caller_tx import SAVEPOINT, not_this_store
from .pg_log_parts import LogPartitions, missing_partition
from .pg_schema import open_schema
from .pg_tx import (
    CallerConnection,
    PostgresReadTx,
    PostgresTx,
    _gone,
    _LostBeforeCommit,
)
from .pg_url import _redact, _scrub, parse_url

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.rows import tuple_row
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as _exc:  # pragma: no cover - the extra is not installed
    psycopg = None  # type: ignore[assignment]
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

#: How long the server lets one of our transactions sit idle before it ends it.
IDLE_TX_TIMEOUT_MS = 5000
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


def _refused_value(exc: BaseException) -> InvalidArgument | None:
    """The user's error when the server (or psycopg, before sending) refused a value the
    caller gave: a NUL character in text (PostgreSQL's text cannot hold one), a value too
    large for an index; None for any other error."""
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate or ""
    if isinstance(exc, psycopg.DataError) or state.startswith("22") or state == "54000":
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return InvalidArgument(
            f"PostgreSQL cannot take a value given: {first} (text cannot hold a NUL "
            "character, and an indexed value such as a key must stay under a few kB)"
        )
    return None


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


class PostgresStore(Store):
    fenced_updates = True

    def __init__(self, url: str, *, migrate: bool | None = None, create: bool = True) -> None:
        if psycopg is None:
            raise StoreError(
                "PostgreSQL stores need psycopg: pip install 'mainspring[postgres]' "
                f"({_IMPORT_ERROR})"
            )
        self.url = url
        conninfo, self.schema, pool_size, auto, log_partition = parse_url(url)
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
        #: the advisory locks of one key (``<prefix><kind>:<key>``: concurrency keys, rate
        #: limit accounts)
        self.lock_prefix = f"mainspring:{self.schema}:"
        #: an advisory lock lease turns share and a pause takes alone (``hold_leasing``)
        self.lease_lock = f"mainspring:{self.schema}:leasing"
        self.log_parts = LogPartitions(log_partition, f"mainspring:{self.schema}:log_parts")
        self.schema_version = open_schema(self, auto if migrate is None else migrate, create)
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

    # -- transactions ---------------------------------------------------------------------------
    @contextmanager
    def _connection(self, timeout: float | None = None) -> Iterator[Any]:
        """A pooled connection, waiting ``timeout`` seconds for one at most (None: the
        pool's own, ten)."""
        if self._closed:
            raise StoreError(f"the store {self.display_url!r} is closed")
        try:
            con = self.pool.getconn(timeout)
            # discard every connection the server closed at once (the pool's own check
            # would back off for seconds after each)
            for _ in range(self.pool.max_size + 1):
                if not _gone(con):
                    break
                con.close()
                self.pool.putconn(con)
                con = self.pool.getconn(timeout)
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
                raise _refused_value(exc) or StoreError(
                    f"write to {self.display_url!r} failed: {exc}"
                ) from exc
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
                if missing_partition(exc):
                    self.log_parts.try_make_ahead(con)
                    raise Conflict(f"the log had no partition for the write: {exc}") from exc
                if isinstance(exc, _RETRYABLE):
                    raise Conflict(f"concurrent transaction conflict: {exc}") from exc
                raise _refused_value(exc) or StoreError(
                    f"write to {self.display_url!r} failed: {exc}"
                ) from exc
            if tx.committed_seq:
                self.log_parts.committed(con, tx.committed_seq)

    @contextmanager
    def write_in(self, connection: Any) -> Iterator[PostgresTx]:
        """A write transaction inside the caller's transaction on ``connection`` (a psycopg 3
        connection to this store's database), in a savepoint; never committed here.

        Its statements see the store's schema (``search_path``, set for them and put back
        after). A connection not in autocommit mode with no transaction open begins one (it
        commits when the caller commits). The log's counter row stays locked until the
        caller's transaction ends: other writers of the store wait for it meanwhile. The
        ``NOTIFY`` that wakes workers is delivered if it commits."""
        con, began = self._caller(connection)
        previous = self._enter(con, began)
        tx = PostgresTx(con, self)
        try:
            yield tx
            tx.finish(
                end=(
                    ("SELECT set_config('search_path', %s, true)", (previous,)),
                    (f"RELEASE SAVEPOINT {SAVEPOINT}", None),
                )
            )
        except BaseException as exc:
            self._leave(con, began)
            if missing_partition(exc):
                with self._connection() as own:
                    self.log_parts.try_make_ahead(own)
                raise Conflict(f"the log had no partition for the write: {exc}") from exc
            if isinstance(exc, _RETRYABLE):
                raise Conflict(f"concurrent transaction conflict: {exc}") from exc
            if isinstance(exc, psycopg.Error):
                raise _refused_value(exc) or StoreError(self._caller_failed(con, exc)) from exc
            raise

    def _caller(self, connection: Any) -> tuple[CallerConnection, bool]:
        """The caller's connection, checked: a psycopg connection in a transaction (or one
        to begin). And whether we begin it."""
        if psycopg is None or not isinstance(connection, psycopg.Connection):
            raise not_this_store(self.display_url, f"got {type(connection).__name__}", "psycopg 3")
        if self._closed:
            raise StoreError(f"the store {self.display_url!r} is closed")
        if connection.closed or connection.broken:
            raise InvalidArgument("connection= is closed: pass an open connection")
        status = connection.info.transaction_status
        states = psycopg.pq.TransactionStatus
        if status == states.INERROR:
            raise InvalidArgument(
                "the transaction on connection= has failed (a statement of it raised): roll "
                "it back, and submit in the next one"
            )
        if status == states.IDLE and connection.autocommit:
            raise InvalidArgument(
                "connection= has no transaction open (it is in autocommit mode): open one, "
                "`with conn.transaction():`, and submit inside it"
            )
        if status not in (states.IDLE, states.INTRANS):
            raise InvalidArgument(
                f"connection= is busy ({status.name}: a query or a pipeline in progress): "
                "submit between your statements"
            )
        return CallerConnection(connection, tuple_row), status == states.IDLE

    def _enter(self, con: CallerConnection, began: bool) -> str:
        """Open our savepoint, point ``search_path`` at the store's schema, and check the
        store's id through the connection, in one round trip. Returns the caller's
        ``search_path``, to put back."""
        try:
            with con.pipeline():
                con.execute(f"SAVEPOINT {SAVEPOINT}")
                path = con.execute(
                    "SELECT current_setting('search_path'), "
                    "current_setting('transaction_isolation'), "
                    "set_config('search_path', %s, true)",
                    (self.schema,),
                )
                ident = con.execute("SELECT value FROM ms_meta WHERE key = 'store_id'")
            previous, isolation, _ = path.fetchone()
            row = ident.fetchone()
        except pg_errors.UndefinedTable:
            self._leave(con, began)
            raise not_this_store(
                self.display_url, f"it has no mainspring store in schema {self.schema!r}", "psycopg"
            ) from None
        except psycopg.Error as exc:
            self._leave(con, began)
            raise StoreError(self._caller_failed(con, exc)) from exc
        if row is None or row[0] != self.store_id:
            self._leave(con, began)
            raise not_this_store(
                self.display_url,
                f"schema {self.schema!r} there holds another mainspring store",
                "psycopg",
            )
        if isolation != "read committed":
            # Every write updates the log's counter row; under a snapshot older than another
            # writer's commit, that update fails to serialize: with workers about, nearly always.
            self._leave(con, began)
            raise InvalidArgument(
                f"connection= is in a {isolation.upper()} transaction: writing in it needs READ "
                "COMMITTED (PostgreSQL's default), since every write of the store updates the "
                "log's counter row, which other writers update too"
            )
        return str(previous)

    @staticmethod
    def _leave(con: CallerConnection, began: bool) -> None:
        """Undo our part of the caller's transaction: back to our savepoint (which also
        puts ``search_path`` back), or, when we began the transaction, all of it."""
        try:
            if began:
                con.execute("ROLLBACK")
            else:
                con.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                con.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
        except psycopg.Error:
            pass  # the connection is gone, and the caller's transaction with it

    def _caller_failed(self, con: CallerConnection, exc: BaseException) -> str:
        if con.broken or con.closed:
            return (
                f"the connection to {self.display_url!r} was lost, and your transaction "
                f"with it: {exc}"
            )
        return f"write to {self.display_url!r} in your transaction failed: {exc}"

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
                raise _refused_value(exc) or StoreError(
                    f"read from {self.display_url!r} failed: {exc}"
                ) from exc
            except BaseException:
                if snapshot:
                    self._rollback(con)
                raise
            if snapshot:
                try:
                    con.execute("COMMIT")
                except psycopg.Error:
                    pass  # a read-only transaction: nothing to lose

    def ping(self, timeout: float) -> None:
        with self._connection(timeout) as con:
            try:
                con.execute("SELECT 1")
            except psycopg.Error as exc:
                raise StoreError(f"read from {self.display_url!r} failed: {exc}") from exc

    def notify(self) -> None:
        try:
            with self._connection() as con:
                con.execute("SELECT pg_notify(%s, '')", (self.channel,))
        except (psycopg.Error, StoreError):
            pass  # waiters also poll: a lost wake-up only delays work

    def waiter(self) -> Waiter:
        from .pg_listen import PostgresWaiter

        return PostgresWaiter(self)

    def remove_compacted_log(self) -> Iterator[int]:
        """Drop the log's partitions the latest snapshot covers, and delete the rest of
        what it covers by seq range (store/pg_log_parts.py)."""
        try:
            with self._connection() as con:
                yield from self.log_parts.remove_covered(con)
        except psycopg.Error as exc:
            raise StoreError(f"compacting the log of {self.display_url!r} failed: {exc}") from exc

    def reclaim_log(self) -> None:
        """VACUUM the log's first partitions, where compaction deleted records (the rest
        it dropped whole), and the snapshots, so that their pages are reused now rather
        than once autovacuum gets to them (a pool connection is in autocommit mode:
        VACUUM needs one). Without giving empty pages at the end back: that takes a lock
        that any reader of the log holds off, and VACUUM waits seconds for it; the
        partition goes whole later."""
        with self._connection() as con:
            tables = ", ".join([*self.log_parts.first(con), "ms_snapshots"])
            con.execute(f"VACUUM (ANALYZE, TRUNCATE false) {tables}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_pool()
