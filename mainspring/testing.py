"""Helpers for testing code that uses mainspring: a clock that moves only when told to.

``ms.App(store, clock=ManualClock())``: due runs, retries and cron occurrences then follow
``clock.advance(...)`` instead of the wall clock, and running workers see each advance at
once (it wakes them: they promote what came due and lease it in their next turn).

What stays on real time: per-attempt ``timeout``, and how often a worker renews its leases
and polls. Lease *expiry* is clock time: a worker renews its leases when it sees the clock
move by a third of ``lease_seconds``, but one jump past a running attempt's lease expires
it (the attempt ends ``lost`` and the run is retried, as if the worker had stalled that
long). To keep a running handler's lease, advance in steps of at most two thirds of
``lease_seconds`` and let the worker catch up between them.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from .core.clock import ManualClock as _Clock
from .core.clock import from_datetime, seconds

__all__ = ["ManualClock"]


class ManualClock(_Clock):
    """A clock for tests, starting at ``start`` (an aware datetime; default: now)."""

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(time.time() if start is None else from_datetime(start))

    def advance(self, by: float | timedelta) -> None:
        """Move the clock forward by ``by`` (seconds or a timedelta); running workers of an
        App on this clock wake at once."""
        step = seconds(by, "advance")
        assert step is not None
        super().advance(step)
