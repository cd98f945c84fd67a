"""Time. The pure layers never read the wall clock: a Clock is passed in.

A clock that moves only when told to (``ManualClock``) also tells of its moves: ``watch``
subscribes a listener that each ``advance`` calls, so that a sleeping worker wakes at once
rather than at its next poll. A clock that follows real time (``SystemClock``) has nothing
to tell: ``watch`` returns None for it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast

from .errors import InvalidSchedule


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock for tests: it moves only when told to, and tells its listeners when it does."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start
        self._lock = threading.Lock()
        self._listeners: dict[int, weakref.ref[Callable[[], None]]] = {}
        self._next_key = 0

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        """Move the clock forward, then call every listener (in the caller's thread)."""
        with self._lock:
            self.t += seconds  # moved before anyone hears of it: a listener sees the new time
            refs = list(self._listeners.items())
        for key, ref in refs:
            listener = ref()
            if listener is None:
                with self._lock:
                    self._listeners.pop(key, None)
            else:
                listener()

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every ``advance``; returns the function that stops it.

        The listener is held weakly (a bound method as long as its object lives), so a
        forgotten subscriber never keeps a worker alive. It must be quick and must not
        raise: it runs inside ``advance``, in the thread that moved the clock."""
        ref: weakref.ref[Callable[[], None]]
        if hasattr(listener, "__self__") and hasattr(listener, "__func__"):
            ref = weakref.WeakMethod(listener)
        else:
            ref = weakref.ref(listener)
        with self._lock:
            key = self._next_key
            self._next_key += 1
            self._listeners[key] = ref

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(key, None)

        return unsubscribe


def watch(clock: Clock, listener: Callable[[], None]) -> Callable[[], None] | None:
    """Have ``listener`` called whenever ``clock`` is moved by hand; returns the function
    that stops it, or None for a clock that follows real time (it is never moved by hand:
    a due time there is reached by waiting)."""
    subscribe = cast(
        "Callable[[Callable[[], None]], Callable[[], None]] | None",
        getattr(clock, "subscribe", None),
    )
    return None if subscribe is None else subscribe(listener)


def to_datetime(ts: float | None) -> datetime | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC)


def from_datetime(dt: datetime) -> float:
    if dt.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return dt.timestamp()


def representable(ts: float, what: str) -> float:
    """``ts``, when a datetime can show it (UTC, years 1 to 9999: what every reader of a
    run's times makes of them), else ``InvalidSchedule``."""
    try:
        datetime.fromtimestamp(ts, tz=UTC)
    except (OverflowError, ValueError, OSError):
        raise InvalidSchedule(
            f"{what} falls outside the times a datetime can show (years 1 to 9999, UTC)"
        ) from None
    return ts


def seconds(
    value: float | int | timedelta | None, what: str, *, positive: bool = False
) -> float | None:
    """Accept seconds as a number or a timedelta; reject negatives and NaN, and zero too
    when ``positive`` (``InvalidSchedule``: every duration is a time option)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSchedule(f"{what} must be a number of seconds or a timedelta, got {value!r}")
    v = float(value)
    if v != v or v < 0 or v == float("inf") or (positive and v == 0):
        bound = "> 0" if positive else ">= 0"
        raise InvalidSchedule(f"{what} must be a finite number of seconds {bound}, got {value!r}")
    return v
