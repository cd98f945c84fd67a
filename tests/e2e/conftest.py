"""Fixtures of the end-to-end tests: every test runs once per store (``store_url``, from
tests/conftest.py: a SQLite file in tmp_path, a PostgreSQL schema of its own), and every App a
test opened is checked when the test ends (verify() is ok, every history chains)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import mainspring as ms

from .helpers import check_history


@pytest.fixture
def make_app(store_url: str) -> Iterator[Callable[..., ms.App]]:
    opened: list[tuple[ms.App, bool]] = []

    def make(*, lease_seconds: float = 2.0, check: bool = True, **kw: Any) -> ms.App:
        app = ms.App(store_url, lease_seconds=lease_seconds, **kw)
        opened.append((app, check))
        return app

    yield make
    try:
        for app, check in opened:
            if check:
                report = app.verify()
                assert report.ok, report.problems
                for run in app.runs(limit=1_000_000):
                    check_history(app, run.run_id)
    finally:
        for app, _ in opened:
            app.close()


@pytest.fixture
def app(make_app: Callable[..., ms.App]) -> ms.App:
    return make_app()
