"""What the engine's commands take and return: submissions, leases, reports, results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..core.model import Policy, Run, Task, TaskOptions
from ..core.states import AttemptResult
from ..store.rows import Fence


@dataclass
class SubmitRequest:
    """A submission, with the facade's resolved options."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: TaskOptions
    policy: Policy = field(default_factory=Policy)
    idempotency_key: str | None = None
    execution_id: str | None = None
    correlation_id: str | None = None
    concurrency_key: str | None = None
    parent_run_id: str | None = None  # the workflow run submitting it (a child)
    deadline_at: float | None = None
    caused_by: str | None = None  # the run whose handler submitted it
    #: ids minted ahead (a launch from a handler: its handle knows them before the commit)
    task_id: str | None = None
    run_id: str | None = None
    #: debounce: (seconds, key, max seconds or None): submissions with the key collapse
    debounce: tuple[float, str, float | None] | None = None
    rate_key: str | None = None  # the rate limit account of its runs' starts
    #: whether stored arguments are the same call as this request's, written another way
    #: (by keyword, or a default given explicitly): the handler's signature binds both
    #: alike. None: only the same spelling is the same call
    same_call: Callable[[list[Any], dict[str, Any]], bool] | None = None


@dataclass
class Submitted:
    task_id: str
    run_ids: list[str]
    replayed: bool = False
    #: the first run as this submission created it (None for a replay): what a caller
    #: that shows the new run (the service's 201) needs without reading it back
    first: Run | None = None


class Finished(msgspec.Struct, gc=False):
    """A worker's report of one attempt's end (one per run: not tracked by the cycle
    collector, as core/model.py's records)."""

    run_id: str
    attempt_id: str
    result: AttemptResult
    output: Any = None
    error: str | None = None
    traceback: str | None = None
    retry_delay: float | None = None
    options: TaskOptions | None = None  # the task's options, as leased (saves a lookup)
    snapshot: bytes | None = None  # ``Leased.snapshot``: lets the engine decide before locking
    fence: Fence | None = None  # ``Leased.fence``
    suspend_reason: str | None = None  # a suspended attempt's reason for the run (else "suspended")
    failure_class: str | None = None  # how a failure was classified (core/failures.py)
    retry_class: str | None = None
    #: what the handler launched (SubmitRequest / PublishRequest), written if it succeeded
    launches: list[Any] = msgspec.field(default_factory=list)


class Leased(msgspec.Struct, gc=False):
    """A run this worker now holds, with its open attempt (one per run, as ``Finished``)."""

    run_id: str
    task_id: str
    task_name: str
    attempt_id: str
    attempt: int
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float | None
    lease_expires_at: float
    execution_id: str | None
    correlation_id: str | None
    idempotency_key: str | None
    options: TaskOptions
    #: the run as the leasing transaction stored it (``snapshot_run``); a worker hands it
    #: back in ``Finished`` so that the next turn decides the attempt's end before it takes
    #: the store's write lock, and writes it only if the stored run is still exactly this
    snapshot: bytes | None = None
    #: ... the run's row as that transaction wrote it (``rows.Fence``), when the store kept
    #: it: what the stored row is compared with (None: encoded again from the snapshot)
    fence: Fence | None = None

    @classmethod
    def of(
        cls, run: Run, task: Task, attempt_id: str, number: int, expires: float, snapshot: bytes
    ) -> Leased:
        """``run`` of ``task``, leased until ``expires`` with attempt ``number`` open."""
        return cls(
            run_id=run.run_id,
            task_id=run.task_id,
            task_name=run.task_name,
            attempt_id=attempt_id,
            attempt=number,
            args=task.args,
            kwargs=task.kwargs,
            timeout=task.options.timeout,
            lease_expires_at=expires,
            execution_id=run.execution_id,
            correlation_id=run.correlation_id,
            idempotency_key=run.idempotency_key,
            options=task.options,
            snapshot=snapshot,
        )


#: Encoding of ``Leased.snapshot`` (internal to one worker process: never stored).
_snap_enc = msgspec.msgpack.Encoder()
snapshot_decoder = msgspec.msgpack.Decoder(Run)


def snapshot_run(run: Run) -> bytes:
    return _snap_enc.encode(run)


@dataclass
class TaskView:
    """A task with what queries show beside it."""

    task: Task
    run_counts: dict[str, int]
    next_at: float | None


@dataclass
class CycleResult:
    leased: list[Leased]
    accepted: list[str]  # run ids whose finished attempt was recorded
    rejected: list[str]  # run ids whose report was fenced out (lease lost, run canceled)
    next_due: float | None = None  # earliest time a scheduled / retry_wait run comes due
    lost: list[str] = field(default_factory=list)  # held runs this worker no longer holds
