"""Rows <-> records, and the reads written alike, shared by the two stores.

A run row is 12 columns (what queries filter and sort on) followed by a JSON document of
the rest of the record (``RunDoc``: not the columns again, and no field at its default, so
rows stay small and a rewrite touches few pages); a task row is 6 columns and the document
of the whole task. On read the columns win, so a column changed behind the engine's back
shows up in ``verify``. (Run documents written whole by earlier versions read the same.)

The log is stored one **record** per transaction: a row ``(seq, last_seq, events)`` whose
``events`` is a JSON array of the transaction's events, the first numbered ``seq`` and
the rest following it, up to ``last_seq``. Records follow one another without gaps, so the
event numbered N is in the record with the greatest ``seq`` <= N. Beside it,
``ms_log_runs`` has one row ``(run_id, seq)`` per run and record that mentions it: a run's
history reads only the records that hold its events. One row per transaction rather than
one per event is what makes the log cheap to append (a worker turn writes 56 events).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ..core.model import Attempt, Event, Run, Task
from ..core.states import TERMINAL
from .base import Tx
from .kinds import KindTx


class RunDoc(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The fields of a run that are not columns of its row (defaults as in ``Run``)."""

    created_at: float
    index: int = 0
    concurrency_limit: int = 1
    key_policy: str = "hold"
    idempotency_key: str | None = None
    execution_id: str | None = None
    correlation_id: str | None = None
    output: Any = None
    error: str | None = None
    reason: str | None = None
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    updated_at: float = 0.0
    rerun_of: str | None = None


encoder = msgspec.json.Encoder()
_run_dec = msgspec.json.Decoder(RunDoc)
_task_dec = msgspec.json.Decoder(Task)
any_decoder = msgspec.json.Decoder()


def cron_next(t: Task) -> float | None:
    """When the scheduler must look at a cron task next (None: never again)."""
    if t.policy.kind != "cron" or t.canceled:
        return None
    cap = t.policy.max_occurrences
    if cap is not None and t.derived >= cap:
        return None
    return t.cursor


RunColumns = tuple[
    str, str, str, str, float, float, int, str, str | None, bool, str | None, float | None
]
TaskColumns = tuple[str, str, str | None, str, bool, float | None]


def run_columns(r: Run) -> RunColumns:
    """The 12 columns of a run's row (its document follows them)."""
    return (
        r.run_id,
        r.task_id,
        r.task_name,
        r.state,
        r.scheduled_at,
        r.due_at,
        r.priority,
        r.queue,
        r.concurrency_key,
        r.holds_key,
        r.lease_owner,
        r.lease_expires_at,
    )


def task_columns(t: Task) -> TaskColumns:
    """The 6 columns of a task's row (its document follows them)."""
    return (t.task_id, t.name, t.idempotency_key, t.policy.kind, t.canceled, cron_next(t))


def run_doc(r: Run) -> RunDoc:
    """The document stored beside a run's columns.

    The same run always gives the same bytes: omit_defaults leaves out a string field
    only when it *is* the default object, and a decoded "hold" is an equal, other string.
    """
    return RunDoc(
        created_at=r.created_at,
        index=r.index,
        concurrency_limit=r.concurrency_limit,
        key_policy="hold" if r.key_policy == "hold" else r.key_policy,
        idempotency_key=r.idempotency_key,
        execution_id=r.execution_id,
        correlation_id=r.correlation_id,
        output=r.output,
        error=r.error,
        reason=r.reason,
        attempts=r.attempts,
        updated_at=r.updated_at,
        rerun_of=r.rerun_of,
    )


def row_run(row: Sequence[Any]) -> Run:
    """A run from its row: the columns and the document (``RunDoc``)."""
    d = _run_dec.decode(row[12])
    return Run(
        run_id=row[0],
        task_id=row[1],
        task_name=row[2],
        state=row[3],
        scheduled_at=row[4],
        due_at=row[5],
        priority=row[6],
        queue=row[7],
        concurrency_key=row[8],
        holds_key=bool(row[9]),
        lease_owner=row[10],
        lease_expires_at=row[11],
        created_at=d.created_at,
        index=d.index,
        concurrency_limit=d.concurrency_limit,
        key_policy=d.key_policy,
        idempotency_key=d.idempotency_key,
        execution_id=d.execution_id,
        correlation_id=d.correlation_id,
        output=d.output,
        error=d.error,
        reason=d.reason,
        attempts=d.attempts,
        updated_at=d.updated_at,
        rerun_of=d.rerun_of,
    )


def decode_task(doc: bytes | str) -> Task:
    return _task_dec.decode(doc)


def row_task(row: Sequence[Any]) -> Task:
    t = _task_dec.decode(row[6])
    t.task_id, t.name, t.idempotency_key = row[0], row[1], row[2]
    t.canceled = bool(row[4])
    return t


# An event inside a record: an array of the fields below ("seq" is the record's
# first seq plus the event's place in it).
LoggedEvent = tuple[
    str, str, float, str | None, str | None, str | None, str | None, str | None, msgspec.Raw
]
# (``data`` is decoded only for the events wanted: a run's history picks its few events
# out of a record of many, as a batch submission is, without building all their data)
_record_dec = msgspec.json.Decoder(list[LoggedEvent])


def encode_record(events: Sequence[Event]) -> bytes:
    """The ``events`` column of the record of ``events`` (numbered by its ``seq``)."""
    return encoder.encode(
        [
            (
                e.event_id,
                e.type,
                e.at,
                e.task_id,
                e.run_id,
                e.attempt_id,
                e.correlation_id,
                e.execution_id,
                e.data,
            )
            for e in events
        ]
    )


def record_run_ids(events: Sequence[Event]) -> list[str]:
    """The runs a record mentions: its ``ms_log_runs`` rows."""
    return sorted({e.run_id for e in events if e.run_id is not None})


def records_of_v1_rows(
    rows: Sequence[Sequence[Any]],
) -> tuple[list[tuple[int, int, bytes]], list[tuple[str, int]]]:
    """Schema 2 migration: rows of the old one-row-per-event log (its columns in order,
    ``data`` as JSON text) -> one record each, and their ``ms_log_runs`` rows. After
    ``seq``, the old columns are the fields of ``LoggedEvent``, in its order."""
    records, runs = [], []
    for seq, *fields, data in rows:
        records.append((seq, seq, encoder.encode([(*fields, any_decoder.decode(data))])))
        run_id = fields[4]
        if run_id is not None:
            runs.append((run_id, seq))
    return records, runs


def decode_record(seq: int, body: bytes | str, run_id: str | None = None) -> list[Event]:
    """The events of the record that starts at ``seq`` (with ``run_id``: that run's)."""
    return [
        Event(
            seq=seq + i,
            event_id=f[0],
            type=f[1],
            at=f[2],
            task_id=f[3],
            run_id=f[4],
            attempt_id=f[5],
            correlation_id=f[6],
            execution_id=f[7],
            data=any_decoder.decode(f[8]),
        )
        for i, f in enumerate(_record_dec.decode(body))
        if run_id is None or f[4] == run_id
    ]


class SqlTx(KindTx, Tx):
    """The reads both stores write the same way; they differ in placeholder and columns."""

    P: str  # the driver's placeholder: "?" (sqlite3) or "%s" (psycopg)
    RUN_COLS: str
    TASK_COLS: str

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def task_by_idempotency(self, name: str, key: str) -> Task | None:
        rows = self._rows(
            f"SELECT {self.TASK_COLS} FROM ms_tasks WHERE name = {self.P} "
            f"AND idempotency_key = {self.P}",
            (name, key),
        )
        return row_task(rows[0]) if rows else None

    def run_ids_of_task(
        self, task_id: str, *, active_only: bool = False, scheduled_at: float | None = None
    ) -> list[str]:
        q = f"SELECT run_id FROM ms_runs WHERE task_id = {self.P}"
        params: list[Any] = [task_id]
        if active_only:
            q += f" AND state NOT IN ({', '.join(repr(s.value) for s in TERMINAL)})"
        if scheduled_at is not None:
            q += f" AND scheduled_at = {self.P}"
            params.append(scheduled_at)
        return [r[0] for r in self._rows(q + " ORDER BY scheduled_at, run_id", params)]

    def _in(self, values: Sequence[Any]) -> str:
        return f"({', '.join([self.P] * len(values))})"

    def query_tasks(self, active: bool, limit: int) -> list[Task]:
        q = f"SELECT {self.TASK_COLS} FROM ms_tasks"
        if active:
            q += " WHERE NOT canceled"
        return [row_task(r) for r in self._rows(q + f" ORDER BY task_id LIMIT {self.P}", (limit,))]

    def task_run_counts(self, task_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {t: {} for t in task_ids}
        if task_ids:
            q = (
                f"SELECT task_id, state, count(*) FROM ms_runs WHERE task_id IN "
                f"{self._in(task_ids)} GROUP BY task_id, state"
            )
            for tid, st, n in self._rows(q, list(task_ids)):
                out[tid][st] = int(n)
        return out

    def next_scheduled(self, task_ids: Sequence[str]) -> dict[str, float]:
        if not task_ids:
            return {}
        q = (
            f"SELECT task_id, min(scheduled_at) FROM ms_runs WHERE task_id IN "
            f"{self._in(task_ids)} AND state = 'scheduled' GROUP BY task_id"
        )
        return {tid: float(at) for tid, at in self._rows(q, list(task_ids))}

    def ready_ahead(self, run: Run) -> int:
        q = (
            f"SELECT count(*) FROM ms_runs WHERE state = 'ready' AND queue = {self.P} "
            f"AND (priority > {self.P} OR (priority = {self.P} AND (scheduled_at < {self.P} "
            f"OR (scheduled_at = {self.P} AND run_id < {self.P}))))"
        )
        p, t = run.priority, run.scheduled_at
        return int(self._rows(q, (run.queue, p, p, t, t, run.run_id))[0][0])

    def runs_held_by(self, owners: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {o: [] for o in owners}
        if owners:
            q = (
                f"SELECT lease_owner, run_id FROM ms_runs WHERE lease_owner IN "
                f"{self._in(owners)} ORDER BY run_id"
            )
            for owner, rid in self._rows(q, list(owners)):
                out[owner].append(rid)
        return out

    def get_run(self, run_id: str) -> Run | None:
        rows = self._rows(f"SELECT {self.RUN_COLS} FROM ms_runs WHERE run_id = {self.P}", (run_id,))
        return row_run(rows[0]) if rows else None

    def get_task(self, task_id: str) -> Task | None:
        q = f"SELECT {self.TASK_COLS} FROM ms_tasks WHERE task_id = {self.P}"
        rows = self._rows(q, (task_id,))
        return row_task(rows[0]) if rows else None

    def events(self, since: int, run_id: str | None, limit: int) -> list[Event]:
        # from the record that holds event since + 1 (or ends before it), a page of
        # records at a time; each holds at least one event wanted, so `limit` are enough
        start = f"(SELECT coalesce(max(seq), 0) FROM ms_log WHERE seq <= {self.P})"
        if run_id is None:
            # (and no record that starts past the last event wanted: records can be large)
            q = f"SELECT seq, events FROM ms_log WHERE seq >= {start} AND seq <= {self.P} "
            q += f"AND seq > {self.P} ORDER BY seq LIMIT {self.P}"
            params: tuple[Any, ...] = (since + 1, since + limit)
        else:
            q = (
                "SELECT l.seq, l.events FROM ms_log_runs r JOIN ms_log l ON l.seq = r.seq "
                f"WHERE r.run_id = {self.P} AND r.seq >= {start} AND r.seq > {self.P} "
                f"ORDER BY r.seq LIMIT {self.P}"
            )
            params = (run_id, since + 1)
        out: list[Event] = []
        page = min(limit, 100)
        after = -1  # the last record read
        while len(out) < limit:
            rows = self._rows(q, (*params, after, page))
            for seq, body in rows:
                out.extend(e for e in decode_record(seq, body, run_id) if e.seq > since)
                if len(out) >= limit:
                    break  # (the page's other records are not needed)
            if len(rows) < page:
                break
            after = rows[-1][0]
        return out[:limit]

    def last_seq(self) -> int:
        rows = self._rows("SELECT last_seq FROM ms_log ORDER BY seq DESC LIMIT 1")
        return int(rows[0][0]) if rows else 0
