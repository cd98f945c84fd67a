"""Small helpers shared by the end-to-end tests (public API only)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import mainspring as ms


def tamper(store_url: str, sql: str, params: tuple[Any, ...]) -> int:
    """Test-only side door: run one UPDATE on the store's tables behind the engine's back
    (simulated corruption). ``sql`` uses ``?`` placeholders. Returns the rows changed."""
    if store_url.startswith("sqlite:///"):
        con = sqlite3.connect(store_url[len("sqlite:///") :])
        try:
            with con:
                return con.execute(sql, params).rowcount
        finally:
            con.close()
    import psycopg

    from mainspring.store.postgres import parse_url

    conninfo, schema = parse_url(store_url)[:2]
    with psycopg.connect(conninfo, autocommit=True) as pg:
        pg.execute(f'SET search_path = "{schema}"')
        return pg.execute(sql.replace("?", "%s"), params).rowcount


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "a condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail (never hang) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def wait_state(h: ms.RunHandle, *states: ms.RunState, timeout: float = 10.0) -> ms.RunState:
    return wait_for(
        lambda: h.status() in states and h.status(),
        timeout,
        f"run {h.run_id} to reach {'/'.join(states)} (it is {h.status()})",
    )


def attempt_results(h: ms.RunHandle) -> list[ms.AttemptResult | None]:
    return [a.result for a in h.info().attempts]


def check_history(app: ms.App, run_id: str) -> None:
    """A run's history is an unbroken chain from run.created to its current state, and
    every event of the run carries the run's execution and correlation ids."""
    info = app.get_run(run_id)
    events = app.log(run_id=run_id, limit=1_000_000)
    assert events, f"run {run_id} has no history"
    assert events[0].type == "run.created", events[0]
    assert events[0].data.get("state", "scheduled") == "scheduled"
    current = "scheduled"
    previous_seq = 0
    for ev in events:
        assert ev.run_id == run_id
        assert ev.seq > previous_seq
        previous_seq = ev.seq
        assert ev.execution_id == info.execution_id, (ev.type, ev.execution_id)
        assert ev.correlation_id == info.correlation_id, (ev.type, ev.correlation_id)
        if ev.type == "run.state_changed":
            assert ev.data["from"] == current, f"run {run_id}: broken chain at seq {ev.seq}"
            current = ev.data["to"]
    assert current == info.state, f"run {run_id}: history ends in {current}, run is {info.state}"


def overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of [start, end) spans open at the same moment."""
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    # ends sort before starts at the same instant: (t, -1) < (t, 1)
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


class Spans:
    """Thread-safe record of what handlers did: ``with spans.span(key): ...``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[Any, float, float]] = []
        self.order: list[Any] = []

    @contextlib.contextmanager
    def span(self, key: Any) -> Iterator[None]:
        start = time.monotonic()
        with self._lock:
            self.order.append(key)
        try:
            yield
        finally:
            end = time.monotonic()
            with self._lock:
                self.items.append((key, start, end))

    def of(self, key: Any) -> list[tuple[float, float]]:
        with self._lock:
            return [(s, e) for k, s, e in self.items if k == key]

    def all(self) -> list[tuple[float, float]]:
        with self._lock:
            return [(s, e) for _, s, e in self.items]
