"""ManualClock tells its listeners of every move (what wakes running workers at once)."""

from __future__ import annotations

import gc
from datetime import timedelta

import pytest

from mainspring.core.clock import ManualClock as CoreClock
from mainspring.core.clock import watch
from mainspring.testing import ManualClock


class Listener:
    def __init__(self, clock: CoreClock) -> None:
        self.clock = clock
        self.saw: list[float] = []

    def moved(self) -> None:
        self.saw.append(self.clock.now())


def test_advance_calls_each_listener_after_the_clock_moved() -> None:
    clock = CoreClock(100.0)
    a, b = Listener(clock), Listener(clock)
    watch(clock, a.moved)
    watch(clock, b.moved)
    clock.advance(5)
    clock.advance(1.5)
    assert a.saw == b.saw == [105.0, 106.5]  # each saw the new time


def test_the_testing_clock_tells_of_timedelta_advances_too() -> None:
    clock = ManualClock()
    start = clock.now()
    listener = Listener(clock)
    watch(clock, listener.moved)
    clock.advance(timedelta(hours=1))
    assert listener.saw == [start + 3600]
    with pytest.raises(ValueError):
        clock.advance(-1)
    assert listener.saw == [start + 3600]  # a refused advance tells nobody


def test_unsubscribing_stops_the_calls() -> None:
    clock = CoreClock()
    listener = Listener(clock)
    stop = watch(clock, listener.moved)
    assert stop is not None
    stop()
    stop()  # twice is harmless
    clock.advance(1)
    assert listener.saw == []


def test_listeners_are_held_weakly() -> None:
    clock = CoreClock()
    listener = Listener(clock)
    watch(clock, listener.moved)
    del listener
    gc.collect()
    clock.advance(1)  # nothing to call, and the dead entry is dropped
    assert clock._listeners == {}
