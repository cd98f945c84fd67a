"""Concurrency keys (template, callable, limits, key policy) and priority ordering."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

import mainspring as ms

from .helpers import Spans, overlap, wait_for, wait_state


def test_template_key_limit_1_never_overlaps_per_user(app: ms.App) -> None:
    spans = Spans()

    @app.task(concurrency_key="user-{user}")
    def sync_profile(user: str, n: int) -> None:
        with spans.span(user):
            time.sleep(0.05)

    handles = [sync_profile.submit(u, n) for n in range(4) for u in ("ann", "bob")]
    handles.append(sync_profile.submit(user="cid", n=0))  # bound by keyword too
    with app.worker(concurrency=8) as w:
        w.run_until_idle(timeout=20)
    assert all(h.status() == ms.RunState.COMPLETED for h in handles)
    assert {h.info().concurrency_key for h in handles} == {"user-ann", "user-bob", "user-cid"}
    for user in ("ann", "bob"):
        assert len(spans.of(user)) == 4
        assert overlap(spans.of(user)) == 1, spans.of(user)
    # different keys did run side by side: the limit is per key, not global
    assert overlap(spans.all()) >= 2


def test_callable_key_limit_2(app: ms.App) -> None:
    spans = Spans()

    @app.task(concurrency_key=lambda n, group: f"g:{group}", concurrency_limit=2)
    def work(n: int, group: str) -> None:
        with spans.span(group):
            time.sleep(0.05)

    handles = [work.submit(n, group="a") for n in range(8)]
    handles += [work.submit(n, group="b") for n in range(2)]
    with app.worker(concurrency=8) as w:
        w.run_until_idle(timeout=20)
    assert all(h.status() == ms.RunState.COMPLETED for h in handles)
    assert handles[0].info().concurrency_key == "g:a"
    assert overlap(spans.of("a")) == 2, spans.of("a")  # up to the limit, never beyond


def test_a_key_template_takes_the_handlers_defaults_and_a_bad_one_is_refused(
    app: ms.App,
) -> None:
    """(A field left to its default was 'missing'; a template or callable that could not be
    filled raised its own AttributeError or ZeroDivisionError out of submit.)"""

    @app.task(concurrency_key="acct:{region}")
    def account(x: int, region: str = "eu") -> None: ...

    @app.task(concurrency_key="acct:{x.a}")
    def attribute(x: dict[str, int]) -> None: ...

    @app.task(concurrency_key=lambda x: str(1 / x))
    def dividing(x: int) -> None: ...

    assert account.submit(1).info().concurrency_key == "acct:eu"
    assert account.submit(1, "us").info().concurrency_key == "acct:us"
    before = app.log()
    with pytest.raises(ms.InvalidArgument, match="AttributeError"):
        attribute.submit({"a": 1})
    with pytest.raises(ms.InvalidArgument, match="ZeroDivisionError") as refused:
        dividing.submit(0)
    assert isinstance(refused.value.__cause__, ZeroDivisionError)
    assert app.log() == before


def test_key_limit_holds_across_two_workers(app: ms.App) -> None:
    spans = Spans()

    @app.task(concurrency_key="shared")
    def exclusive(n: int) -> None:
        with spans.span("k"):
            time.sleep(0.02)

    handles = [exclusive.submit(n) for n in range(12)]
    with app.worker(concurrency=4) as w1, app.worker(concurrency=4) as w2:
        wait_for(lambda: all(h.status().terminal for h in handles), 20, "all runs to end")
        w1.run_until_idle(timeout=5)
        w2.run_until_idle(timeout=5)
    assert len(spans.of("k")) == 12
    assert overlap(spans.of("k")) == 1


def _key_policy_run(app: ms.App, policy: str) -> tuple[list[tuple[str, float, float]], dict]:
    spans = Spans()
    lock = threading.Lock()
    attempts: dict[str, int] = {}

    @app.task(
        concurrency_key="printer",
        key_policy=policy,
        max_attempts=2,
        backoff=ms.Backoff.fixed(0.6),
    )
    def job(name: str) -> None:
        with lock:
            attempts[name] = attempts.get(name, 0) + 1
            n = attempts[name]
        with spans.span(f"{name}{n}"):
            time.sleep(0.05)
        if name == "A" and n == 1:
            raise ms.Retry()

    a = job.submit("A")
    time.sleep(0.01)
    b = job.submit("B")
    with app.worker(concurrency=4) as w:
        w.run_until_idle(timeout=10)
    assert a.status() == b.status() == ms.RunState.COMPLETED
    return sorted(spans.items, key=lambda x: x[1]), attempts


def test_key_policy_hold_keeps_the_key_during_retry_wait(app: ms.App) -> None:
    order, attempts = _key_policy_run(app, "hold")
    assert attempts == {"A": 2, "B": 1}
    assert [k for k, _, _ in order] == ["A1", "A2", "B1"]
    (_, _, a1_end), (_, a2_start, a2_end), (_, b_start, _) = order
    assert a2_start - a1_end >= 0.55  # the backoff, not B, sat between A's attempts
    assert b_start >= a2_end


def test_key_policy_release_frees_the_key_during_retry_wait(app: ms.App) -> None:
    order, attempts = _key_policy_run(app, "release")
    assert attempts == {"A": 2, "B": 1}
    # B ran while A waited for its retry
    assert [k for k, _, _ in order] == ["A1", "B1", "A2"]
    assert overlap([(s, e) for _, s, e in order]) == 1


def test_priority_order_with_one_slot(app: ms.App) -> None:
    order: list[str] = []

    @app.task
    def job(label: str) -> None:
        order.append(label)

    app.pause()  # nothing leases while the queue is filled
    now = datetime.now(UTC)
    job.submit("p0-first")
    job.with_options(priority=5).submit("p5-first")
    job.with_options(priority=1).submit("p1")
    job.with_options(priority=5).submit("p5-second")
    job.submit("p0-second")
    job.with_options(priority=10).submit("p10")
    # submitted last but scheduled earliest: first among the priority-0 runs
    job.with_options(run_at=now - timedelta(seconds=30)).submit("p0-scheduled-earlier")
    job.with_options(priority=-3).submit("p-3")
    app.resume()
    with app.worker(concurrency=1) as w:
        w.run_until_idle(timeout=10)
    assert order == [
        "p10",
        "p5-first",
        "p5-second",
        "p1",
        "p0-scheduled-earlier",
        "p0-first",
        "p0-second",
        "p-3",
    ]


def test_task_priority_default_and_override(app: ms.App) -> None:
    order: list[str] = []

    @app.task(priority=3)
    def important(label: str) -> None:
        order.append(label)

    @app.task
    def routine(label: str) -> None:
        order.append(label)

    routine.submit("routine")
    important.submit("important")
    important.with_options(priority=-1).submit("demoted")
    assert [r.priority for r in app.runs()] == [0, 3, -1]
    with app.worker(concurrency=1) as w:
        w.run_until_idle(timeout=10)
    assert order == ["important", "routine", "demoted"]


def test_priorities_are_what_both_stores_hold(app: ms.App) -> None:
    """From -2**31 to 2**31 - 1 on either store (2**31 was written on SQLite and refused
    by PostgreSQL with a message about its server)."""

    @app.task
    def job() -> None:
        pass

    top = job.with_options(priority=2**31 - 1).submit()
    bottom = job.with_options(priority=-(2**31)).submit()
    assert (top.info().priority, bottom.info().priority) == (2**31 - 1, -(2**31))
    before = app.log()
    for bad in (2**31, -(2**31) - 1):
        with pytest.raises(ms.InvalidArgument, match="priority must be between"):
            job.with_options(priority=bad).submit()
        with pytest.raises(ms.InvalidArgument, match="priority must be between"):
            app.task(name=f"too.far.{bad}", priority=bad)(lambda: None)
    assert app.log() == before


@pytest.mark.parametrize("policy", ["hold", "release"])
def test_key_policy_while_suspended(app: ms.App, policy: str) -> None:
    order: list[str] = []

    @app.task(concurrency_key="desk", key_policy=policy)
    def approve(name: str) -> None:
        order.append(name)
        if name == "A" and ms.context().attempt == 1:
            raise ms.Suspend("needs a signature")

    a = approve.submit("A")
    time.sleep(0.01)
    b = approve.submit("B")
    with app.worker() as w:
        wait_state(a, ms.RunState.SUSPENDED)
        if policy == "hold":
            time.sleep(0.5)
            assert b.status() == ms.RunState.READY  # A keeps the key while suspended
            assert order == ["A"]
        else:
            wait_state(b, ms.RunState.COMPLETED)
        assert a.resume()
        w.run_until_idle(timeout=10)
    assert order == (["A", "A", "B"] if policy == "hold" else ["A", "B", "A"])
    assert a.status() == b.status() == ms.RunState.COMPLETED
