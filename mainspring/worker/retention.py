"""Retention in the background (``ms.App(retention=...)``): a worker's thread of its own
that prunes runs which ended longer ago than the retention, a page per transaction.

A thread, not a step of the worker's loop: a page takes a transaction of its own (longer on
PostgreSQL, with a round trip per statement), and the loop must keep recording ended
attempts and leasing meanwhile. While pages come back full it prunes the next one at once,
so a backlog is worked off; then it looks again every hundredth of the retention (at least
every second, at most every minute) of the engine's clock. Looking often keeps what is
kept close to rate x retention: runs that ended more than the retention ago wait at most
a hundredth of it, so the tables, and the snapshots a compaction writes of them, stay the
same size from one look to the next.
"""

from __future__ import annotations

import logging
import threading

from ..engine import Engine
from ..engine.bulk import PAGE

log = logging.getLogger("mainspring.worker")

#: how often (real seconds) an idle retention thread looks at the engine's clock: a clock
#: moved by hand (ManualClock) is noticed within this
_POLL = 0.25


class Retention:
    """Prunes in a thread from ``start`` until ``stop``."""

    def __init__(self, engine: Engine, retention: float, worker_id: str) -> None:
        self.engine = engine
        self.retention = retention
        self.worker_id = worker_id
        self._next = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"mainspring-retention-{worker_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.prune_due():
                self._stop.wait(_POLL)

    def prune_due(self) -> bool:
        """When due, prune one page; True if it was full (more may be waiting)."""
        now = self.engine.clock.now()
        if now < self._next:
            return False
        self._next = now + min(max(self.retention / 100, 1.0), 60.0)
        try:
            pruned = self.engine.prune(
                now - self.retention, ("completed", "failed", "canceled"), max_pages=1
            )
        except Exception as exc:
            log.warning("worker %s: retention: %s", self.worker_id, exc)
            return False
        if pruned >= PAGE:
            self._next = now
            return True
        return False
