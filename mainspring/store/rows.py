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
from ..core.schedule import cron_due_at


class RunDoc(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
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
    workflow: bool = False
    parent_run_id: str | None = None
    children: list[str] = msgspec.field(default_factory=list)
    waiting: str | None = None
    deadline_at: float | None = None
    delivery: str | None = None
    caused_by: str | None = None
    rate_key: str | None = None


encoder = msgspec.json.Encoder()
_run_dec = msgspec.json.Decoder(RunDoc)
_task_dec = msgspec.json.Decoder(Task)
any_decoder = msgspec.json.Decoder()


RunColumns = tuple[
    str, str, str, str, float, float, int, str, str | None, bool, str | None, float | None
]
TaskColumns = tuple[str, str, str | None, str, bool, float | None]


def lease_columns(r: Run) -> tuple[str, float, bool, str | None, float | None]:
    """The columns of a run's row that its state and lease events change, in the order of
    both stores' updates (the document and the concurrency key follow them)."""
    return (r.state, r.due_at, r.holds_key, r.lease_owner, r.lease_expires_at)


#: A run's row as a transaction wrote it: its ``lease_columns``, then its document's bytes.
#: A later write made only if the row is unchanged since (``WriteTx.update_runs_if_unchanged``)
#: compares the stored row with it.
Fence = tuple[str, float, bool, str | None, float | None, bytes]


def fence_of(r: Run) -> Fence:
    """The row a store writes of ``r``, as a ``Fence``."""
    return (*lease_columns(r), encoder.encode(run_doc(r)))


def doc_written(r: Run, fences: dict[str, Fence] | None) -> bytes:
    """The document of ``r`` as a store writes it over its row; with ``fences``, the
    row's ``Fence`` is kept there too, so that whoever asked need not encode it again."""
    body = encoder.encode(run_doc(r))
    if fences is not None:
        fences[r.run_id] = (*lease_columns(r), body)
    return body


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
    return (t.task_id, t.name, t.idempotency_key, t.policy.kind, t.canceled, cron_due_at(t))


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
        workflow=r.workflow,
        parent_run_id=r.parent_run_id,
        children=r.children,
        waiting=r.waiting,
        deadline_at=r.deadline_at,
        delivery=r.delivery,
        caused_by=r.caused_by,
        rate_key=r.rate_key,
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
        workflow=d.workflow,
        parent_run_id=d.parent_run_id,
        children=d.children,
        waiting=d.waiting,
        deadline_at=d.deadline_at,
        delivery=d.delivery,
        caused_by=d.caused_by,
        rate_key=d.rate_key,
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
