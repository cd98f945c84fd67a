"""Debounce on both stores: submissions with one key collapse into one run with the last
arguments, due after the last (bounded by debounce_max); concurrent submitters too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import mainspring as ms
from mainspring.testing import ManualClock

Make = Callable[..., ms.App]


def test_submissions_collapse_into_one_run_with_the_last_arguments(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    got: list[str] = []

    @app.task
    def reindex(doc: str) -> str:
        got.append(doc)
        return doc

    opts = reindex.with_options(debounce=10, debounce_key="index")
    h1 = opts.submit("v1")
    clock.advance(5)
    h2 = opts.submit("v2")
    clock.advance(5)
    h3 = opts.submit("v3")
    assert h1 == h2 == h3
    with app.worker() as w:
        clock.advance(9)  # 9 s after the last: not due yet
        w.run_until_idle()
        assert got == [] and h1.status() == ms.RunState.SCHEDULED
        clock.advance(2)
        w.run_until_idle()
    assert h1.result() == "v3" and got == ["v3"]
    # the run started: the next submission makes a new one
    h4 = opts.submit("v4")
    assert h4 != h1 and len(app.runs()) == 2


def test_the_collapsed_run_takes_the_keys_of_the_last_arguments(make_app: Make) -> None:
    """It runs with the last submission's arguments, so it holds the concurrency key and
    counts in the rate limit account those resolve to (it kept the first one's: two
    handlers of one account could run at once)."""
    clock = ManualClock()
    app = make_app(clock=clock)
    running: list[int] = []
    overlaps: list[int] = []

    @app.task(concurrency_key="acct:{account}", rate_limit=ms.RateLimit(5, per=60, key="{account}"))
    def charge(account: int, note: str) -> None:
        if running.count(account):
            overlaps.append(account)
        running.append(account)
        time.sleep(0.2)
        running.remove(account)

    long = charge.submit(2, "long")
    opts = charge.with_options(debounce=10, debounce_key="charges")
    h = opts.submit(1, "first")
    opts.submit(2, "last")
    info = h.info()
    assert info.concurrency_key == "acct:2"
    with app.worker(concurrency=4) as w:
        clock.advance(11)
        w.run_until_idle(timeout=10)
    assert long.status() == h.status() == ms.RunState.COMPLETED
    assert overlaps == []
    assert [e.data.get("rate_key") for e in h.history() if e.type == "run.debounced"] == [
        f"{charge.name} 2"
    ]
    assert app.verify().ok


def test_a_run_that_came_due_takes_no_more_submissions_though_no_worker_promoted_it(
    make_app: Make,
) -> None:
    """(with no worker running, submissions after its due time still joined it)"""
    clock = ManualClock()
    app = make_app(clock=clock)

    @app.task
    def flush(n: int) -> int:
        return n

    opts = flush.with_options(debounce=1, debounce_key="k", debounce_max=1.5)
    h = opts.submit(1)
    clock.advance(0.9)
    assert opts.submit(2) == h  # due at 1.5 now (debounce_max)
    clock.advance(0.7)
    later = opts.submit(3)
    assert later != h and opts.submit(4) == later
    with app.worker() as w:
        clock.advance(5)
        w.run_until_idle()
    assert (h.result(), later.result()) == (2, 4)


def test_debounce_max_bounds_the_wait_after_the_first(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)

    @app.task
    def flush(n: int) -> int:
        return n

    opts = flush.with_options(debounce=10, debounce_key="k", debounce_max=15)
    h = opts.submit(1)
    for n in range(2, 5):
        clock.advance(4)
        opts.submit(n)  # each pushes the due time, but never past first + 15
    [not_due] = [r for r in app.why(h.run_id).reasons if r.code == "not_due"]
    assert not_due.data["due_at"].timestamp() == pytest.approx(clock.now() - 12 + 15)


def test_concurrent_submitters_make_one_run(make_app: Make) -> None:
    app = make_app()

    @app.task
    def job(i: int) -> int:
        return i

    opts = job.with_options(debounce=60, debounce_key="same")
    handles: list[ms.RunHandle] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        for k in range(10):
            h = opts.submit(i * 100 + k)
            with lock:
                handles.append(h)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({h.run_id for h in handles}) == 1 and len(app.runs()) == 1


def test_each_collapsed_submission_keeps_its_idempotency_key(make_app: Make) -> None:
    """A submission retried with its idempotency key returns the run it collapsed into, and
    writes nothing, after that run started too (a debounced submission's key was not
    recorded: its retry made a second run). The first submission's key still names its own
    arguments, though the run now has the last one's (its retry raised a conflict)."""
    clock = ManualClock()
    app = make_app(clock=clock)

    @app.task
    def reindex(doc: str) -> str:
        return doc

    def opts(key: str) -> ms.TaskHandle:
        return reindex.with_options(debounce=10, debounce_key="index", idempotency_key=key)

    h = opts("a").submit("v1")
    assert opts("b").submit("v2") == h
    assert opts("b").submit("v2") == h  # a retry while it waits: nothing changes
    assert opts("a").submit("v1") == h
    with pytest.raises(ms.IdempotencyConflict):
        opts("b").submit("other")
    with pytest.raises(ms.IdempotencyConflict):
        opts("a").submit("v2")
    assert [e.type for e in h.history()].count("run.debounced") == 1
    with app.worker() as w:
        clock.advance(11)
        w.run_until_idle()
    assert h.result() == "v2"
    seq = app.log()[-1].seq
    assert opts("b").submit("v2") == h and opts("a").submit("v1") == h
    assert app.log()[-1].seq == seq and len(app.runs()) == 1  # nothing written
    assert opts("c").submit("v3") != h  # a new key after the start: a new run
    assert app.verify().ok
    with app.store.read() as tx:
        assert {r.run_id for r in tx.records("idempotency")} == {h.run_id}
    assert app.prune(0) == 1  # the run goes, and the keys kept for it
    with app.store.read() as tx:
        assert tx.records("idempotency") == []
    assert app.verify().ok


@pytest.mark.parametrize(
    "ov",
    [
        {"debounce": 10},  # no key
        {"debounce_key": "k"},  # no debounce
        {"debounce": 0, "debounce_key": "k"},
        {"debounce": 10, "debounce_key": "k", "debounce_max": 5},
        {"debounce": 10, "debounce_key": "k", "delay": 5},
    ],
)
def test_bad_debounce_options_write_nothing(app: ms.App, ov: dict[str, object]) -> None:
    @app.task
    def job() -> None: ...

    with pytest.raises(ms.InvalidArgument):
        job.with_options(**ov).submit()  # type: ignore[arg-type]
    assert app.runs() == []
