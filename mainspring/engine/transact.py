"""Running a command: one write transaction, retried from scratch when another got in the way."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..core.clock import Clock, SystemClock
from ..core.model import Event
from ..core.reducer import State
from ..store.base import Conflict, Store, WriteTx
from .batch import Batch

#: How often a command is re-run when a concurrent transaction conflicted with it.
MAX_CONFLICT_RETRIES = 30
#: ... inside a caller's transaction (in a new savepoint: the caller's locks stay held
#: meanwhile, so only a few times)
MAX_CALLER_CONFLICT_RETRIES = 3

T = TypeVar("T")


class Stale(Conflict):
    """A run decided ahead of the lock changed meanwhile: decide again, under the lock."""


class Feed(Protocol):
    """Where committed events go (the App's log feed to its bus), when ``active``."""

    @property
    def active(self) -> bool: ...

    def put(self, events: list[Event]) -> None:
        """Take one commit's events (numbered); called in commit order, never blocks."""


class Transactor:
    """The store and clock every command runs on, and ``transact``, how it runs."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        #: committed events go here while it is active (in commit order: this process's
        #: commits are then made one at a time, so that the order it sees is the log's)
        self.feed: Feed | None = None
        self._feed_order = threading.Lock()

    def transact(
        self,
        body: Callable[[WriteTx, Batch], T],
        prepare: Callable[[Batch], None] | None = None,
        *,
        connection: Any = None,
        fences: bool = False,
    ) -> tuple[T, Batch]:
        """Run ``body`` in one write transaction and save what it decided.

        ``body`` gets the transaction and a fresh ``Batch``; what it emits is written with
        its records in the same transaction. When the batch says ``wake`` (a run became
        ready, or something else waiting workers should look at), the commit wakes them. When the store reports a ``Conflict`` (another
        transaction got in the way: a deadlock, a duplicate idempotency key, a connection
        lost before the commit) nothing was written, and ``body`` runs again from scratch.

        ``prepare`` decides on records known ahead before the write transaction begins
        (``cycle``: attempts that ended); ``body`` then checks that they are unchanged.

        With ``connection``, ``body`` runs inside the caller's open transaction on it
        (``_transact_in``). With ``fences``, the store keeps the row of each run it writes
        in the batch's ``state.fences`` (a worker's lease and renewal turns).
        """
        if connection is not None:
            assert prepare is None
            return self._transact_in(connection, body)
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            b = Batch(State(), self.clock.now())
            if fences:
                b.state.fences = {}
            if prepare is not None:
                prepare(b)
            feed = self.feed
            feeding = feed is not None and feed.active
            try:
                with self._feed_order if feeding else contextlib.nullcontext():
                    with self.store.write() as tx:
                        out = self._decide(tx, b, body)
                    if feeding and b.events:
                        assert feed is not None
                        feed.put(b.events)
                return out, b
            except Conflict as exc:
                if attempt == MAX_CONFLICT_RETRIES:
                    raise
                if isinstance(exc, Stale):
                    continue  # no one to wait for: body now decides under the lock
                time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.25)))
        raise AssertionError("unreachable")

    def _transact_in(self, connection: Any, body: Callable[[WriteTx, Batch], T]) -> tuple[T, Batch]:
        """Run ``body`` inside the caller's open transaction on ``connection``
        (``Store.write_in``): what it decides is written there and commits, or not, with
        the caller's own writes; workers are woken after that commit.

        A conflict with a concurrent transaction (two submitters of one idempotency key)
        undid only our savepoint: ``body`` runs again in a new one, a few times, then the
        ``Conflict`` (a StoreError) reaches the caller. The events do not go on the App's
        log feed: whether they commit is the caller's to say, and after we return."""
        for attempt in range(MAX_CALLER_CONFLICT_RETRIES + 1):
            b = Batch(State(), self.clock.now())
            try:
                with self.store.write_in(connection) as tx:
                    out = self._decide(tx, b, body)
                return out, b
            except Conflict:
                if attempt == MAX_CALLER_CONFLICT_RETRIES:
                    raise
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
        raise AssertionError("unreachable")

    def _decide(self, tx: WriteTx, b: Batch, body: Callable[[WriteTx, Batch], T]) -> T:
        """Run ``body`` in ``tx`` and write what it decided, with what follows from it."""
        out = body(tx, b)
        if b.ended:
            self._settle(tx, b)
        b.flush(tx)
        if b.wake:
            tx.wake_on_commit()
        if b.ended:
            tx.ended_on_commit(b.ended)
        return out

    def _settle(self, tx: WriteTx, b: Batch) -> None:
        """What follows, in the same transaction, from the runs ``b`` ended (workflows:
        engine/workflows.py)."""
