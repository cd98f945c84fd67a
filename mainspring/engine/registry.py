"""The worker registry: workers register in the store, heartbeat, and leave.

A worker is a record of kind ``workers`` (``core.model.WorkerRecord``). It registers when
it starts (``worker.registered``), heartbeats with its lease renewals, at least every third
of ``lease_seconds`` (``worker.heartbeat``, which moves ``expires_at``), and leaves when it
stops cleanly (``worker.left``). A worker that vanished stops heartbeating; the next worker
to heartbeat after its ``expires_at`` removes it (``worker.expired``). A worker removed while
it was merely late registers again at its next heartbeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..core import events as E
from ..core.model import WorkerRecord
from ..core.reducer import WORKERS
from ..store.base import WriteTx
from .batch import Batch

#: How many gone workers one heartbeat removes at most.
EXPIRE_LIMIT = 100


@dataclass(frozen=True)
class Registration:
    """What a worker says of itself when it registers."""

    worker_id: str
    host: str
    pid: int
    queues: Sequence[str] | None
    tasks: Sequence[str]
    concurrency: int


def register(b: Batch, reg: Registration, lease_seconds: float) -> None:
    b.emit(
        E.worker_registered(
            b.now,
            worker_id=reg.worker_id,
            host=reg.host,
            pid=reg.pid,
            queues=None if reg.queues is None else list(reg.queues),
            tasks=list(reg.tasks),
            concurrency=reg.concurrency,
            expires_at=b.now + lease_seconds,
        )
    )


def heartbeat(tx: WriteTx, b: Batch, reg: Registration, lease_seconds: float) -> None:
    """This worker is alive: move its expiry (registering it again if it was removed),
    and remove the workers whose expiry has passed."""
    tx.load_records(WORKERS, [reg.worker_id], b.state)
    if reg.worker_id in b.state.kind(WORKERS):
        b.emit(E.worker_heartbeat(b.now, reg.worker_id, b.now + lease_seconds))
    else:
        register(b, reg, lease_seconds)
    expire(tx, b, keep=reg.worker_id)


def expire(tx: WriteTx, b: Batch, keep: str | None = None) -> None:
    loaded = b.state.kind(WORKERS)
    gone: list[WorkerRecord] = tx.records(
        WORKERS, at_most=("expires_at", b.now), limit=EXPIRE_LIMIT
    )
    for rec in gone:
        if rec.worker_id == keep:
            continue
        loaded.setdefault(rec.worker_id, rec)
        b.emit(E.worker_gone(E.WORKER_EXPIRED, b.now, rec.worker_id, rec.last_seen_at))


def leave(tx: WriteTx, b: Batch, worker_id: str) -> None:
    tx.load_records(WORKERS, [worker_id], b.state)
    if worker_id in b.state.kind(WORKERS):
        b.emit(E.worker_gone(E.WORKER_LEFT, b.now, worker_id))
