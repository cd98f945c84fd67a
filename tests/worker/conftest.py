"""Fixtures of the worker-loop tests: a real Engine on a SQLite store in tmp_path, on a
``ManualClock``, with the worker's poll made an hour long, so that the only things that can
wake a sleeping worker are the test's own moves (``clock.advance``, a submission, a result)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import mainspring as ms
from mainspring.testing import ManualClock
from mainspring.worker import timers as timers_module

#: where the tests' clocks start: a whole second, so that sums of whole seconds are exact
START = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def no_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that never polls: a run that starts did so because something woke it."""
    monkeypatch.setattr(timers_module, "POLL_SECONDS", 3600.0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make_app(tmp_path: Path, clock: ManualClock) -> Iterator[Callable[..., ms.App]]:
    opened: list[ms.App] = []

    def make(*, lease_seconds: float = 3600.0, **kw: Any) -> ms.App:
        app = ms.App(f"sqlite:///{tmp_path}/s.db", lease_seconds=lease_seconds, clock=clock, **kw)
        opened.append(app)
        return app

    yield make
    try:
        for app in opened:
            report = app.verify()
            assert report.ok, report.problems
    finally:
        for app in opened:
            app.close()
