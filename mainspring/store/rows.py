"""Rows <-> records, and the reads written alike, shared by the two stores.

A run row is 12 columns (what queries filter and sort on) followed by a JSON document of
the rest of the record (``RunDoc``: not the columns again, and no field at its default, so
rows stay small and a rewrite touches few pages); a task row is 6 columns and the document
of the whole task. On read the columns win, so a column changed behind the engine's back
shows up in ``verify``. (Run documents written whole by earlier versions read the same.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ..core.model import Attempt, Event, Run, Task
from .base import Tx


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
    """The document stored beside a run's columns."""
    return RunDoc(
        created_at=r.created_at,
        index=r.index,
        concurrency_limit=r.concurrency_limit,
        key_policy=r.key_policy,
        idempotency_key=r.idempotency_key,
        execution_id=r.execution_id,
        correlation_id=r.correlation_id,
        output=r.output,
        error=r.error,
        reason=r.reason,
        attempts=r.attempts,
        updated_at=r.updated_at,
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
    )


def decode_task(doc: bytes | str) -> Task:
    return _task_dec.decode(doc)


def row_task(row: Sequence[Any]) -> Task:
    t = _task_dec.decode(row[6])
    t.task_id, t.name, t.idempotency_key = row[0], row[1], row[2]
    t.canceled = bool(row[4])
    return t


def row_event(row: Sequence[Any]) -> Event:
    return Event(
        seq=row[0],
        event_id=row[1],
        type=row[2],
        at=row[3],
        task_id=row[4],
        run_id=row[5],
        attempt_id=row[6],
        correlation_id=row[7],
        execution_id=row[8],
        data=any_decoder.decode(row[9]),
    )


class SqlTx(Tx):
    """The reads both stores write the same way; they differ in placeholder and columns."""

    P: str  # the driver's placeholder: "?" (sqlite3) or "%s" (psycopg)
    RUN_COLS: str
    TASK_COLS: str
    EVENT_COLS: str

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def task_by_idempotency(self, name: str, key: str) -> Task | None:
        rows = self._rows(
            f"SELECT {self.TASK_COLS} FROM ms_tasks WHERE name = {self.P} "
            f"AND idempotency_key = {self.P}",
            (name, key),
        )
        return row_task(rows[0]) if rows else None

    def run_ids_of_task(self, task_id: str, *, active_only: bool = False) -> list[str]:
        q = f"SELECT run_id FROM ms_runs WHERE task_id = {self.P}"
        if active_only:
            q += " AND state NOT IN ('completed', 'failed', 'canceled')"
        return [r[0] for r in self._rows(q + " ORDER BY scheduled_at, run_id", (task_id,))]

    def get_run(self, run_id: str) -> Run | None:
        rows = self._rows(f"SELECT {self.RUN_COLS} FROM ms_runs WHERE run_id = {self.P}", (run_id,))
        return row_run(rows[0]) if rows else None

    def get_task(self, task_id: str) -> Task | None:
        q = f"SELECT {self.TASK_COLS} FROM ms_tasks WHERE task_id = {self.P}"
        rows = self._rows(q, (task_id,))
        return row_task(rows[0]) if rows else None

    def events(self, since: int, run_id: str | None, limit: int) -> list[Event]:
        q = f"SELECT {self.EVENT_COLS} FROM ms_log WHERE "
        params: tuple[Any, ...] = (since, limit)
        if run_id is not None:
            q += f"run_id = {self.P} AND "
            params = (run_id, *params)
        rows = self._rows(q + f"seq > {self.P} ORDER BY seq LIMIT {self.P}", params)
        return [row_event(r) for r in rows]
