"""Time. The pure layers never read the wall clock: a Clock is passed in."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock for tests: it moves only when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def to_datetime(ts: float | None) -> datetime | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC)


def from_datetime(dt: datetime) -> float:
    if dt.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return dt.timestamp()


def seconds(value: float | int | timedelta | None, what: str) -> float | None:
    """Accept seconds as a number or a timedelta; reject negatives and NaN
    (``InvalidSchedule``: every duration is a time option)."""
    from .errors import InvalidSchedule

    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSchedule(f"{what} must be a number of seconds or a timedelta, got {value!r}")
    v = float(value)
    if v != v or v < 0 or v == float("inf"):
        raise InvalidSchedule(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return v
