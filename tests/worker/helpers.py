"""Waiting on conditions without assuming how long anything takes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import mainspring as ms
from mainspring.testing import ManualClock
from mainspring.worker import Worker

#: a bound that only a broken worker reaches; nothing asserts how fast things happen
PATIENCE = 20.0


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = PATIENCE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


def caught_up(w: Worker, clock: ManualClock) -> None:
    """Wait until the worker has had a turn (housekeeping and leasing) at the clock's time."""
    wait_for(
        lambda: w.clock_seen is not None and w.clock_seen >= clock.now(),
        f"the worker to see the clock at {clock.now()}",
    )


def wait_state(h: ms.RunHandle, state: ms.RunState) -> None:
    wait_for(lambda: h.status() == state, f"run {h.run_id} to be {state}")


def events(h: ms.RunHandle, kind: str) -> list[ms.LogEvent]:
    return [e for e in h.history() if e.type == kind]
