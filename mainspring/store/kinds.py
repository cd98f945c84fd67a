"""Record kinds beyond tasks and runs: one declaration each, the same statements on every store.

A kind is a msgspec Struct the reducer keeps in ``State.records[kind]`` by key. Its table
holds the key, the fields queries filter on as columns, and the JSON document of the whole
record (on read the document is the record; the columns exist for indexes). The declaration
below is the kind's only table definition: each store renders it into its DDL with its
``Dialect`` in the migration of schema version ``since`` (store/schema.py), and ``KindTx`` reads and
writes every kind with one set of statements. Adding a kind is therefore: its record and
events in ``core``, its reducer cases, and one ``Kind`` here (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from ..core.model import (
    CallRecord,
    DeadlineRecord,
    DebounceRecord,
    ExecutionRecord,
    IdempotencyRecord,
    MessageRecord,
    QueueRecord,
    RateRecord,
    ReceiptRecord,
    SignalRecord,
    StepRecord,
    SubscriberRecord,
    TopicRecord,
    WaitRecord,
    WorkerRecord,
)
from ..core.reducer import (
    CALLS,
    DEADLINES,
    DEBOUNCES,
    EXECUTIONS,
    IDEMPOTENCY,
    MESSAGES,
    QUEUES,
    RATES,
    RECEIPTS,
    SIGNALS,
    STEPS,
    SUBSCRIBERS,
    TOPICS,
    WAITS,
    WORKERS,
    State,
)
from .dialect import Dialect

ColumnType = Literal["text", "real", "bigint"]


@dataclass(frozen=True)
class Kind:
    """One record kind's table."""

    name: str  # its key in State.records
    table: str
    record: type[msgspec.Struct]
    key: str  # the record field that is the primary key (text)
    since: int  # the schema version whose migration creates the table
    columns: tuple[tuple[str, ColumnType], ...] = ()  # fields also stored as indexed columns
    #: one index over these columns together, instead of one per column
    index: tuple[str, ...] | None = None

    def ddl(self, dialect: Dialect) -> list[str]:
        """The statements that create the table and its indexes."""
        cols = [f"{self.key} {dialect.ddl['text']} PRIMARY KEY"]
        cols += [f"{name} {dialect.ddl[kind]}" for name, kind in self.columns]
        cols.append(f"doc {dialect.ddl['bytes']} NOT NULL")
        out = [f"CREATE TABLE {self.table} ({', '.join(cols)})"]
        if self.index is not None:
            name = "_".join(self.index)
            out.append(
                f"CREATE INDEX {self.table}_{name} ON {self.table} ({', '.join(self.index)})"
            )
        else:
            out += [
                f"CREATE INDEX {self.table}_{name} ON {self.table} ({name})"
                for name, _ in self.columns
            ]
        return out


KINDS: tuple[Kind, ...] = (
    Kind(
        name=WORKERS,
        table="ms_workers",
        record=WorkerRecord,
        key="worker_id",
        since=3,
        columns=(("expires_at", "real"),),
    ),
    # workflows: a run's steps, sleeps and waits, and signals, each keyed "<run_id>/<n>"
    Kind(STEPS, "ms_steps", StepRecord, "step_id", since=4, columns=(("run_id", "text"),)),
    Kind(WAITS, "ms_waits", WaitRecord, "wait_id", since=4, columns=(("run_id", "text"),)),
    Kind(SIGNALS, "ms_signals", SignalRecord, "signal_id", since=4, columns=(("run_id", "text"),)),
    Kind(EXECUTIONS, "ms_executions", ExecutionRecord, "execution_id", since=4),
    Kind(DEADLINES, "ms_deadlines", DeadlineRecord, "run_id", since=4, columns=(("at", "real"),)),
    # messages: a topic's messages by sequence, receipts by subscriber and by message
    Kind(
        MESSAGES,
        "ms_messages",
        MessageRecord,
        "event_id",
        since=4,
        columns=(("topic", "text"), ("sequence", "bigint")),
        index=("topic", "sequence"),
    ),
    Kind(TOPICS, "ms_topics", TopicRecord, "topic", since=4),
    Kind(
        RECEIPTS,
        "ms_receipts",
        ReceiptRecord,
        "receipt_id",
        since=4,
        columns=(("subscriber", "text"), ("event_id", "text"), ("recorded_at", "real")),
    ),
    Kind(SUBSCRIBERS, "ms_subscribers", SubscriberRecord, "name", since=4),
    # @app.transaction: one receipt per call of a run, keyed "<run_id>/c<n>"
    Kind(CALLS, "ms_calls", CallRecord, "call_id", since=4),
    # a queue's pause flag (read by the claim of ready runs: store/sql.py)
    Kind(QUEUES, "ms_queues", QueueRecord, "name", since=4, columns=(("paused_at", "real"),)),
    # debounce: the run a task's submissions with one debounce key collapse into
    Kind(DEBOUNCES, "ms_debounces", DebounceRecord, "key", since=4),
    # the idempotency keys of submissions that collapsed into a debounced run (by run: prune)
    Kind(
        IDEMPOTENCY,
        "ms_idempotency",
        IdempotencyRecord,
        "key",
        since=8,
        columns=(("run_id", "text"),),
    ),
    # rate limits: each account's latest starts (read and locked by the claim of ready runs)
    Kind(RATES, "ms_rates", RateRecord, "key", since=4),
)
BY_NAME = {k.name: k for k in KINDS}


_encoder = msgspec.json.Encoder()
#: rows per INSERT statement of ``save_records``
_ROWS = 100


class KindTx:
    """The reads and writes of record kinds, shared by the stores' transactions.

    A store's transaction provides ``_rows`` (a query's rows), ``_write_many`` (one write
    statement for each of some parameter rows, executed now or with its next round trip),
    ``_lock`` (the clause that locks rows a write transaction reads: "" where writers are
    serialized anyway) and ``DIALECT``.
    """

    DIALECT: Dialect

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _write_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _lock(self, skip: bool = False) -> str:
        return ""

    def _decode(self, kind: Kind, doc: Any) -> Any:
        return msgspec.json.decode(bytes(doc), type=kind.record)

    def load_records(self, kind: str, keys: Sequence[str], state: State) -> None:
        """Load these records of ``kind`` into ``state`` (locked for changing them)."""
        k, p = BY_NAME[kind], self.DIALECT.placeholder
        loaded = state.kind(kind)
        seen = state.looked_up.setdefault(kind, set())
        need = sorted({key for key in keys if key not in loaded and key not in seen})
        seen.update(need)
        for i in range(0, len(need), 500):
            chunk = need[i : i + 500]
            q = (
                f"SELECT doc FROM {k.table} WHERE {k.key} IN ({', '.join([p] * len(chunk))}) "
                f"ORDER BY {k.key}{self._lock()}"
            )
            for (doc,) in self._rows(q, chunk):
                rec = self._decode(k, doc)
                loaded[getattr(rec, k.key)] = rec

    def records(
        self,
        kind: str,
        *,
        at_most: tuple[str, float] | None = None,
        where: tuple[str, Any] | None = None,
        after: tuple[str, Any] | None = None,
        order: str | None = None,
        limit: int | None = None,
    ) -> list[Any]:
        """Records of ``kind`` by key (or by the column ``order``); with
        ``at_most=(column, value)``, those whose column is <= value (claimed, where a write
        transaction locks: others skip them); with ``where=(column, value)``, those whose
        column is that value; with ``after=(column, value)``, those whose column is
        greater, in that column's order."""
        k, p = BY_NAME[kind], self.DIALECT.placeholder
        conds: list[str] = []
        params: list[Any] = []
        if at_most is not None:
            conds.append(f"{at_most[0]} <= {p}")
            params.append(at_most[1])
        if where is not None:
            conds.append(f"{where[0]} = {p}")
            params.append(where[1])
        if after is not None:
            conds.append(f"{after[0]} > {p}")
            params.append(after[1])
        q = f"SELECT doc FROM {k.table}"
        if conds:
            q += " WHERE " + " AND ".join(conds)
        by = after[0] if after is not None else order if order is not None else k.key
        q += f" ORDER BY {by}" + (f", {k.key}" if by != k.key else "")
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        if at_most is not None:
            q += self._lock(skip=True)
        return [self._decode(k, doc) for (doc,) in self._rows(q, params)]

    def save_records(self, state: State) -> None:
        """Write back the records ``state`` changed, and delete those it removed. A record
        the reducer created as new is inserted create-only: a concurrent transaction that
        created the same key first makes this one conflict (and run again), never
        overwritten."""
        p = self.DIALECT.placeholder
        for name, keys in sorted(state.dirty_records.items()):
            k, present = BY_NAME[name], state.kind(name)
            new = state.new_records.get(name, set())
            cols = [k.key, *(c for c, _ in k.columns), "doc"]
            row = f"({', '.join([p] * len(cols))})"
            conflict = f" ON CONFLICT ({k.key}) DO UPDATE SET " + ", ".join(
                f"{c} = excluded.{c}" for c in cols[1:]
            )
            rows = [
                (
                    key,
                    *(getattr(present[key], c) for c, _ in k.columns),
                    _encoder.encode(present[key]),
                )
                for key in sorted(keys)
                if key in present
            ]
            gone = [(key,) for key in sorted(keys) if key not in present]
            # one statement per kind and up to _ROWS rows (a group commit's steps, ...)
            for upsert, some in ((False, [r for r in rows if r[0] in new]),
                                 (True, [r for r in rows if r[0] not in new])):  # fmt: skip
                for i in range(0, len(some), _ROWS):
                    chunk = some[i : i + _ROWS]
                    q = f"INSERT INTO {k.table} ({', '.join(cols)}) VALUES "
                    q += ", ".join([row] * len(chunk)) + (conflict if upsert else "")
                    self._write_many(q, [[v for r in chunk for v in r]])
            if gone:
                self._write_many(f"DELETE FROM {k.table} WHERE {k.key} = {p}", gone)

    def keys_under(self, kind: str, prefixes: Sequence[str]) -> list[str]:
        """The keys of ``kind`` that start with one of ``prefixes``, in key order: a
        run's steps, waits, signals and calls, all keyed ``"<run_id>/..."``."""
        k, p = BY_NAME[kind], self.DIALECT.placeholder
        out: list[str] = []
        for i in range(0, len(prefixes), 100):
            chunk = prefixes[i : i + 100]
            # (a range per prefix: up to the prefix with its last character incremented)
            cond = " OR ".join([f"({k.key} >= {p} AND {k.key} < {p})"] * len(chunk))
            params = [v for x in chunk for v in (x, x[:-1] + chr(ord(x[-1]) + 1))]
            q = f"SELECT {k.key} FROM {k.table} WHERE {cond} ORDER BY {k.key}"
            out += [str(key) for (key,) in self._rows(q, params)]
        return out

    def keys_by(self, kind: str, column: str, values: Sequence[str]) -> list[tuple[str, str]]:
        k, n = BY_NAME[kind], self.DIALECT.max_list
        out: list[tuple[str, str]] = []
        for i in range(0, len(values), n):
            cond, params = self.DIALECT.one_of(column, values[i : i + n])
            q = f"SELECT {k.key}, {column} FROM {k.table} WHERE {cond} ORDER BY {k.key}"
            out += [(str(key), str(v)) for key, v in self._rows(q, params)]
        return out

    def snapshot_records(self, state: State) -> None:
        """Every record of every kind into ``state`` (verify)."""
        for k in KINDS:
            state.records[k.name] = {getattr(r, k.key): r for r in self.records(k.name)}
