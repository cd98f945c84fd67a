"""Helpers for testing code that uses mainspring: a clock that moves only when told to.

``ms.App(store, clock=ManualClock())``: due runs, retries and cron occurrences then follow
``clock.advance(...)`` instead of the wall clock.
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
        """Move the clock forward by ``by`` (seconds or a timedelta)."""
        step = seconds(by, "advance")
        assert step is not None
        super().advance(step)
