"""Group commit for commands that many threads issue at once (a workflow's steps, sleeps,
waits and children).

While a worker loop runs in the process (``register``), it is the committer: a command
queues and wakes it, and the loop's next turn decides every queued command in the same
transaction as the attempts that finished and the runs it leases (``take`` / ``decide``
/ ``finish``). Workflows running side by side then share one commit per round of their
steps, with their starts and ends. Without a loop, the first caller to find no commit in
progress commits every command queued so far; callers arriving meanwhile queue for the
next one.

Under ``synchronous=FULL`` a commit is a sync of the store's journal, and each workflow
commits once per step: sharing commits is what lets a step cost less than a sync.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from ..core.errors import MainspringError, StoreError
from ..store.base import WriteTx
from .batch import Batch

T = TypeVar("T")

Body = Callable[[WriteTx, Batch], Any]


#: How often a command waiting for a worker loop looks whether one is still there.
_LOOK_SECONDS = 0.05


class _Item(Generic[T]):
    __slots__ = ("body", "done", "error", "run_id", "taken", "value")

    def __init__(self, body: Callable[[WriteTx, Batch], T], run_id: str | None) -> None:
        self.body = body
        self.run_id = run_id  # the run it loads: a group loads all of theirs at once
        self.done = False
        self.taken = False  # a worker loop's turn took it into its transaction
        self.value: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """Runs command bodies in shared transactions (``transact`` commits one group)."""

    def __init__(self, transact: Callable[[Callable[[WriteTx, Batch], Any]], Any]) -> None:
        self._transact = transact
        self._cv = threading.Condition()
        self._queue: list[_Item[Any]] = []
        self._committing = False
        self._loops: list[Callable[[], None]] = []  # wake-ups of the worker loops running

    # -- the worker loops that commit queued commands ----------------------------------------
    def register(self, wake: Callable[[], None]) -> None:
        """A worker loop runs: queued commands wake it, and its turns take them."""
        with self._cv:
            self._loops.append(wake)

    def unregister(self, wake: Callable[[], None]) -> None:
        with self._cv:
            if wake in self._loops:
                self._loops.remove(wake)
            self._cv.notify_all()  # (commands left waiting for it commit themselves)

    @property
    def pending(self) -> int:
        """How many commands are queued for the next commit."""
        return len(self._queue)

    def take(self) -> list[_Item[Any]]:
        """The queued commands, for a worker loop's turn to ``decide`` in its transaction
        and ``finish`` (none while a caller commits a group itself)."""
        with self._cv:
            if self._committing or not self._queue:
                return []
            items, self._queue = self._queue, []
            for it in items:
                it.taken = True
            return items

    @staticmethod
    def decide(items: Sequence[_Item[Any]], tx: WriteTx, b: Batch) -> list[tuple[bool, Any]]:
        """Run the commands' bodies in ``tx``: each one's (ok, its result or its error)."""
        tx.load_runs([it.run_id for it in items if it.run_id is not None], b.state)
        out: list[tuple[bool, Any]] = []
        for it in items:
            mark = len(b.events)
            try:
                out.append((True, it.body(tx, b)))
            except MainspringError as exc:
                if len(b.events) != mark:
                    raise  # it decided part of its events: the whole group is undone
                out.append((False, exc))  # refused before deciding anything: only it fails
        return out

    def finish(
        self, items: Sequence[_Item[Any]], results: Sequence[tuple[bool, Any]] | BaseException
    ) -> None:
        """Hand each command its result once their transaction committed (or failed)."""
        if not items:
            return
        with self._cv:
            for i, it in enumerate(items):
                if isinstance(results, BaseException):
                    it.error = results
                else:
                    ok, value = results[i]
                    if ok:
                        it.value = value
                    else:
                        it.error = value
                it.done = True
            self._cv.notify_all()

    # -- a command ----------------------------------------------------------------------------
    def run(self, body: Callable[[WriteTx, Batch], T], run_id: str | None = None) -> T:
        """Run ``body`` in the next shared transaction; its result once that committed,
        or the exception it raised. ``run_id``: the run the body loads first."""
        item: _Item[T] = _Item(body, run_id)
        with self._cv:
            self._queue.append(item)
            loop = self._loops[-1] if self._loops else None
        if loop is not None:
            loop()
        group: list[_Item[Any]] = []
        with self._cv:
            while not item.done:
                if item.taken or self._committing or (self._loops and self._queue):
                    self._cv.wait(_LOOK_SECONDS)
                    continue
                # no loop to take it (or none left): commit what is queued here
                self._committing = True
                group, self._queue = self._queue, []
                break
        if group:
            try:
                self._commit(group)
            finally:
                with self._cv:
                    self._committing = False
                    self._cv.notify_all()
        if item.error is not None:
            raise item.error
        return item.value  # type: ignore[no-any-return]

    def _commit(self, group: Sequence[_Item[Any]]) -> None:
        try:
            results = self._transact(lambda tx, b: self.decide(group, tx, b))[0]
        except BaseException as exc:
            self.failed(group, exc)
            return
        self.finish(group, results)

    def failed(self, items: Sequence[_Item[Any]], exc: BaseException) -> None:
        """The transaction of ``items`` failed with ``exc``. When it was refused (an
        ``InvalidArgument`` at the commit: PostgreSQL and a NUL character, say; an
        ``IdempotencyConflict`` of what a step launched), it was one command's: each is
        committed on its own, so that only that one fails. (A store's failure is every
        command's.)"""
        refused = isinstance(exc, MainspringError) and not isinstance(exc, StoreError)
        if refused and len(items) > 1:
            for it in items:
                self._commit([it])
        else:
            self.finish(items, exc)
