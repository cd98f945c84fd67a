"""Exceptions a handler raises to choose the result of its attempt."""

from __future__ import annotations

from datetime import timedelta

from .clock import seconds


class Retry(Exception):
    """End this attempt as ``retryable``; retry after ``delay`` seconds (default: backoff)."""

    def __init__(self, delay: float | timedelta | None = None, reason: str | None = None) -> None:
        super().__init__(reason or "retry requested")
        # checked here, so that a bad delay fails in the handler (as an ordinary error,
        # hence retryable, with this message) and never reaches the worker's transaction
        self._delay = seconds(delay, "ms.Retry(delay=...)")
        self.reason = reason

    @property
    def delay(self) -> float | None:
        """Seconds until the retry (None: the task's backoff); checked, read-only."""
        return self._delay


class Fail(Exception):
    """End this attempt as ``terminal``: the run fails now, whatever attempts are left."""

    def __init__(self, reason: str = "failed") -> None:
        super().__init__(reason)
        self.reason = reason


class Suspend(Exception):
    """End this attempt as ``suspended``: the run waits until resumed (not counted)."""

    def __init__(self, reason: str = "suspended") -> None:
        super().__init__(reason)
        self.reason = reason
