"""Rows <-> records, shared by the stores: both keep the same columns and documents.

A run row is 12 columns (what queries filter and sort on) followed by the JSON document of
the whole record; a task row is 6 columns and its document. On read the columns win over
the document, so a column changed behind the engine's back shows up in ``verify``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ..core.model import Event, Run, Task

encoder = msgspec.json.Encoder()
_run_dec = msgspec.json.Decoder(Run)
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


def row_run(row: Sequence[Any]) -> Run:
    """A run from its row: the columns win over the document, so tampering shows."""
    r = _run_dec.decode(row[12])
    r.run_id, r.task_id, r.task_name, r.state = row[0], row[1], row[2], row[3]
    r.scheduled_at, r.due_at, r.priority, r.queue = row[4], row[5], row[6], row[7]
    r.concurrency_key, r.holds_key = row[8], bool(row[9])
    r.lease_owner, r.lease_expires_at = row[10], row[11]
    return r


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
