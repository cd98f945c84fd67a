"""Group commit for commands that many threads issue at once (a workflow's steps, sleeps,
waits and children): the first caller to find no commit in progress commits every command
queued so far in one transaction; callers arriving meanwhile queue for the next one.

Under ``synchronous=FULL`` a commit is a sync of the store's journal, and workflows running
side by side each commit once per step; sharing the sync among them is what lets their
steps cost less than one sync each. A lone caller commits at once, without waiting for
company.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from ..core.errors import MainspringError
from ..store.base import WriteTx
from .batch import Batch

T = TypeVar("T")

Body = Callable[[WriteTx, Batch], Any]


class _Item(Generic[T]):
    __slots__ = ("body", "done", "error", "run_id", "value")

    def __init__(self, body: Callable[[WriteTx, Batch], T], run_id: str | None) -> None:
        self.body = body
        self.run_id = run_id  # the run it loads: a group loads all of theirs at once
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """Runs command bodies in shared transactions (``transact`` commits one group)."""

    def __init__(self, transact: Callable[[Callable[[WriteTx, Batch], Any]], Any]) -> None:
        self._transact = transact
        self._cv = threading.Condition()
        self._queue: list[_Item[Any]] = []
        self._committing = False

    def run(self, body: Callable[[WriteTx, Batch], T], run_id: str | None = None) -> T:
        """Run ``body`` in the next group's transaction; its result once that committed,
        or the exception it raised. ``run_id``: the run the body loads first."""
        item: _Item[T] = _Item(body, run_id)
        with self._cv:
            self._queue.append(item)
            while self._committing and not item.done:
                self._cv.wait()
            if not item.done:
                self._committing = True
                group, self._queue = self._queue, []
            else:
                group = []
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
        def body(tx: WriteTx, b: Batch) -> list[tuple[bool, Any]]:
            tx.load_runs([it.run_id for it in group if it.run_id is not None], b.state)
            out: list[tuple[bool, Any]] = []
            for it in group:
                mark = len(b.events)
                try:
                    out.append((True, it.body(tx, b)))
                except MainspringError as exc:
                    if len(b.events) != mark:
                        raise  # it decided part of its events: the whole group is undone
                    out.append((False, exc))  # refused before deciding anything: only it fails
            return out

        try:
            results = self._transact(body)[0]
        except BaseException as exc:
            for it in group:
                it.error, it.done = exc, True
            return
        for it, (ok, value) in zip(group, results, strict=True):
            if ok:
                it.value = value
            else:
                it.error = value
            it.done = True
