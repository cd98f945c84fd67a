"""Rate limits on both stores: no more starts per window than the limit (per key), the
rest wait ready and ``why`` says when the next may start; 4 worker processes racing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

import mainspring as ms
from mainspring.testing import ManualClock

Make = Callable[..., ms.App]


def test_at_most_count_starts_per_window_and_why_says_when(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    ran: list[int] = []

    @app.task(rate_limit=ms.RateLimit(2, per=10))
    def limited(i: int) -> None:
        ran.append(i)

    handles = [limited.submit(i) for i in range(5)]
    with app.worker(concurrency=4) as w:
        for expected in (2, 4, 5):
            _settle(w, app)
            assert len(ran) == expected
            waiting = [h for h in handles if h.status() == ms.RunState.READY]
            if waiting:
                [reason] = [
                    r for r in app.why(waiting[0].run_id).reasons if r.code == "rate_limited"
                ]
                assert reason.data["next_at"].timestamp() == pytest.approx(
                    clock.now() + 10, abs=0.5
                )
            clock.advance(10)
    assert sorted(ran) == list(range(5))


def test_a_rate_limit_per_key_counts_each_key_alone(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    ran: list[str] = []

    @app.task(rate_limit=ms.RateLimit(1, per=60, key="{tenant}"))
    def per_tenant(tenant: str, i: int) -> None:
        ran.append(f"{tenant}{i}")

    for i in range(2):
        per_tenant.submit("a", i)
        per_tenant.submit("b", i)
    with app.worker(concurrency=4) as w:
        _settle(w, app)
        assert sorted(ran) == ["a0", "b0"]  # one start per tenant per minute
        clock.advance(61)
        _settle(w, app)
    assert sorted(ran) == ["a0", "a1", "b0", "b1"]


def test_one_accounts_backlog_does_not_hold_back_the_others(make_app: Make) -> None:
    """Runs over their limit wait; the runs behind them in leasing order do not: a flood
    of one key (or of one task's limit) used to fill every page of candidates a turn looked
    at, and nothing else started until it had drained."""
    clock = ManualClock()
    app = make_app(clock=clock)
    ran: list[str] = []

    @app.task(rate_limit=ms.RateLimit(2, per=60, key="{customer}"))
    def per_customer(customer: str, i: int) -> None:
        ran.append(customer)

    @app.task(rate_limit="1/m")
    def slow(i: int) -> None:
        ran.append("slow")

    @app.task
    def free(i: int) -> None:
        ran.append("free")

    for i in range(60):
        per_customer.submit("flood", i)
    for i in range(50):
        slow.submit(i)
    for i in range(3):
        per_customer.submit("small", i)
        free.submit(i)
    with app.worker(concurrency=4) as w:
        _settle(w, app)
    assert sorted(ran) == sorted(["flood"] * 2 + ["slow"] + ["small"] * 2 + ["free"] * 3)


def test_a_backlog_deeper_than_a_turn_looks_does_not_hold_back_the_others(
    make_app: Make,
) -> None:
    """An account's backlog deeper than the candidates a turn pages through (1,000): the
    runs of other accounts behind it start (they waited until the backlog drained)."""
    clock = ManualClock()
    app = make_app(clock=clock, check=False)  # (the check of 4,000 histories: see below)
    ran: list[str] = []

    @app.task(rate_limit=ms.RateLimit(1, per=60, key="{customer}"))
    def per_customer(customer: str, i: int) -> None:
        ran.append(customer)

    per_customer.submit_many([{"customer": "flood", "i": i} for i in range(4000)])
    per_customer.submit_many([{"customer": f"c{k}", "i": 0} for k in range(3)])
    with app.worker(concurrency=4) as w:
        _settle(w, app)
    assert sorted(ran) == ["c0", "c1", "c2", "flood"]
    assert app.verify().ok


def _settle(w: object, app: ms.App) -> None:
    """Let the worker lease what it can now (rate-limited runs stay ready)."""
    import time

    deadline = time.monotonic() + 10
    last = None
    while time.monotonic() < deadline:
        stats = app.stats()
        now = (stats["ready"], stats["completed"], stats["running"] + stats["leased"])
        if now == last and now[2] == 0:
            return
        last = now
        time.sleep(0.2)


@pytest.mark.parametrize("bad", ["100", "x/s", "0/s", "10/d", ms.RateLimit(1, per=0), 5])
def test_a_malformed_rate_limit_is_refused(app: ms.App, bad: object) -> None:
    with pytest.raises(ms.InvalidArgument):

        @app.task(rate_limit=bad)  # type: ignore[arg-type]
        def job() -> None: ...


def test_a_start_committed_after_a_later_one_still_counts_in_time_order(make_app: Make) -> None:
    """A writer reads its clock before it waits for the store, so a start can commit after
    one that is later in time. The account must still count the latest starts by time:
    here, had it kept the last two committed, the fourth start below would have gone
    through with three starts in one second."""
    t0 = datetime.now(UTC)
    early, late = ManualClock(t0), ManualClock(t0 + timedelta(seconds=0.02))
    app_early, app_late = make_app(clock=early), make_app(clock=late)

    @app_early.task(name="rl.t", rate_limit=ms.RateLimit(2, per=1.0))
    def job(i: int) -> None: ...

    job.submit_many([{"i": i} for i in range(4)])

    def start_one(app: ms.App) -> int:
        return len(app.engine.cycle("w", ["rl.t"], None, [], 1, 30.0).leased)

    assert start_one(app_late) == 1  # at t0 + 0.02
    assert start_one(app_early) == 1  # at t0, committed after it: 2 in the window
    late.advance(0.985)
    assert start_one(app_late) == 1  # at t0 + 1.005: the one at t0 has left the window
    late.advance(0.01)
    assert start_one(app_late) == 0  # at t0 + 1.015: t0 + 0.02 and t0 + 1.005 are in it
    starts = sorted(
        e.at.timestamp() for e in app_late.log(limit=100) if e.type == "attempt.started"
    )
    assert len(starts) == 3
    assert all(len([s for s in starts if t <= s < t + 1.0]) <= 2 for t in starts)
