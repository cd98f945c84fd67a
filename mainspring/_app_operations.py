"""The App's operator controls: pausing the engine or a queue, the queues, bulk
cancel and rerun, retention and compaction (docs/operations.md). A part of ``ms.App``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from ._handles import RunHandle
from ._records import QueueInfo
from ._task_options import queue_name, run_state_of, task_name
from .core.clock import seconds
from .core.errors import InvalidArgument, refusing_bad_calls
from .core.states import TERMINAL, RunState


def _states(state: RunState | str | None) -> list[str]:
    """``state`` (checked), or every state that has not ended."""
    if state is None:
        return [s.value for s in RunState if s not in TERMINAL]
    return [run_state_of(state).value]


def check_cancel_state(state: RunState | str | None) -> None:
    """Refuse a bulk cancel of runs in a state that has ended (a dry run too)."""
    if state is not None and run_state_of(state) in TERMINAL:
        raise InvalidArgument(f"runs that are {state} have ended: there is nothing to cancel")


def _check_filters(task: str | None, queue: str | None) -> None:
    """Refuse a bulk operation's filter that names no task or queue (an empty name, not a
    str): it would match nothing, silently."""
    if task is not None:
        task_name(task)
    if queue is not None:
        queue_name(queue)


if TYPE_CHECKING:
    from ._tasks import TaskFunction
    from .app import App
    from .core.clock import Clock
    from .engine import Engine


@refusing_bad_calls
class Operations:
    """``app.pause`` / ``resume`` (engine or queue), ``queues``, ``matching_runs``,
    ``cancel_runs``, ``rerun_runs``, ``prune``, ``compact``."""

    if TYPE_CHECKING:  # (what App provides)

        @property
        def engine(self) -> Engine: ...

        max_payload_bytes: int
        clock: Clock
        declared: dict[str, TaskFunction[Any, Any]]

    def pause(self, queue: str | None = None) -> bool:
        """Pause the engine: workers lease nothing (``queue``: nothing from that queue).
        False if it was already paused."""
        if queue is None:
            return self.engine.set_paused(True)
        return self.engine.set_queue_paused(queue_name(queue), True)

    def resume(self, queue: str | None = None) -> bool:
        """Resume a paused engine (``queue``: that queue). False if it was not paused."""
        if queue is None:
            return self.engine.set_paused(False)
        return self.engine.set_queue_paused(queue_name(queue), False)

    # -- bulk operations -----------------------------------------------------------------------
    def matching_runs(
        self, state: RunState | str | None = None, task: str | None = None, queue: str | None = None
    ) -> list[str]:
        """The ids of the runs in ``state`` (None: every state that has not ended), of task
        name ``task``, in ``queue``: what ``cancel_runs`` / ``rerun_runs`` would change."""
        _check_filters(task, queue)
        return self.engine.matching(_states(state), task, queue)

    def cancel_runs(
        self,
        state: RunState | str | None = None,
        task: str | None = None,
        queue: str | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Cancel every run in ``state`` (None: every run that has not ended), of task name
        ``task``, in ``queue``, a page of runs per transaction; how many were canceled.
        ``progress(done, total)`` is called after each page."""
        check_cancel_state(state)
        # (each only if still in one of those states: it may have started since it was listed)
        return self.engine.cancel_runs(
            self.matching_runs(state, task, queue), progress, _states(state)
        )

    def rerun_runs(
        self,
        state: RunState | str = "failed",
        task: str | None = None,
        queue: str | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[RunHandle]:
        """Rerun every run in ``state`` (of task name ``task``, in ``queue``): a new run
        of each one's task and arguments (``RunHandle.rerun``), a page per transaction."""
        subs = self.engine.rerun_runs(
            self.matching_runs(run_state_of(state), task, queue), _states(state), progress
        )
        return [RunHandle(cast("App", self), s.run_ids[0], s.task_id) for s in subs]

    def prune(
        self,
        older_than: float | timedelta,
        states: Sequence[RunState | str] = ("completed", "failed", "canceled"),
        task: str | None = None,
        *,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Remove the runs in ``states`` (terminal ones) that ended longer than
        ``older_than`` ago (seconds or a timedelta), and the tasks then left with nothing
        to derive and no run, through events (``run.pruned``, ``task.pruned``): the state
        and the log still agree, and the log keeps their history. A page per transaction;
        how many runs (``dry_run``: would be). Negative ``older_than``: InvalidArgument."""
        age = seconds(older_than, "older_than")
        assert age is not None
        chosen = [run_state_of(s) for s in states]
        live = [s.value for s in chosen if s not in TERMINAL]
        if live:
            raise InvalidArgument(f"only runs that ended can be pruned; not {', '.join(live)}")
        _check_filters(task, None)
        cutoff = self.clock.now() - age
        return self.engine.prune(
            cutoff, [s.value for s in chosen], task, dry_run=dry_run, progress=progress
        )

    def compact(self, *, progress: Callable[[int, int], None] | None = None) -> int:
        """Write a snapshot of the whole state at the log's current seq, then delete the
        log records up to it (a batch per transaction; workers keep working meanwhile);
        the snapshot's seq. ``verify`` then replays from the snapshot, and ``log`` asking
        for a removed event raises ``LogCompacted``: export the log first to keep it.
        ``progress(done, total)`` hears the events deleted."""
        return self.engine.compact(progress)[0]

    def queues(self) -> list[QueueInfo]:
        """Every queue this App declares, has runs in, or paused: paused or not, its runs
        by state, and how long its oldest ready run has waited."""
        flags, counts, oldest = self.engine.queues()
        paused = {f.name for f in flags if f.paused_at is not None}
        names = set(counts) | {f.name for f in flags}
        names |= {tf.options.queue for tf in self.declared.values()}
        now = self.clock.now()
        return [
            QueueInfo(
                name=name,
                paused=name in paused,
                counts=dict(sorted(counts.get(name, {}).items())),
                oldest_ready_seconds=max(0.0, now - oldest[name]) if name in oldest else None,
            )
            for name in sorted(names)
        ]
