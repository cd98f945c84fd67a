"""The App's operator API: an App that opens on demand, submissions checked
against the handler, idempotency that compares the policy, rerun, tasks, workers and why."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import mainspring as ms
from mainspring.engine import Registration
from mainspring.testing import ManualClock

from .helpers import wait_for, wait_state


def _counts(app: ms.App) -> tuple[int, int]:
    return sum(app.stats().values()), len(app.log(limit=1_000_000))


# -- opening on demand -------------------------------------------------------------------------
def test_an_app_and_its_tasks_do_no_io_until_used(tmp_path: Path) -> None:
    path = tmp_path / "lazy.db"
    app = ms.App(f"sqlite:///{path}")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    assert not path.exists() and not app.is_open
    with app:
        assert path.exists() and app.is_open
        assert add.submit(1, 2).status() == ms.RunState.READY
    assert not app.is_open
    assert len(app.runs()) == 1  # used again: opened again
    app.close()


def test_open_records_the_declared_definitions(store_url: str) -> None:
    declaring = ms.App(store_url)

    @declaring.task(name="ops.greet", max_attempts=3, queue="mail")
    def greet(who: str, punctuation: str = "!") -> str:
        return f"hi {who}{punctuation}"

    declaring.open()
    other = ms.App(store_url)
    try:
        h = other.submit("ops.greet", args=["ann"])
        t = other.get_task(h.task_id)
        assert t.queue == "mail" and t.name == "ops.greet"
    finally:
        other.close()
        declaring.close()


# -- submissions checked against the handler -------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, 3), {}), ((1,), {"c": 3}), ((1,), {"a": 1, "b": 2})],
)
def test_arguments_that_do_not_bind_are_refused_and_change_nothing(
    make_app: Callable[..., ms.App], args: tuple[int, ...], kwargs: dict[str, int]
) -> None:
    app = make_app()

    @app.task(name="ops.add")
    def add(a: int, b: int) -> int:
        return a + b

    before = _counts(app)
    with pytest.raises(ms.InvalidArgument, match=r"ops\.add"):
        add.submit(*args, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ms.InvalidArgument):
        add.repeat(count=2, every=60, args=args, kwargs=kwargs)
    # by name, from an App without the handler: checked against the recorded parameters
    with pytest.raises(ms.InvalidArgument):
        make_app(check=False).submit("ops.add", args=list(args), kwargs=kwargs)
    assert _counts(app) == before


def test_by_name_submissions_bind_defaults_and_var_keywords(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app()

    @app.task(name="ops.flexible")
    def flexible(a: int, *rest: int, flag: bool = False, **extra: int) -> int:
        return a

    app.open()
    by_name = make_app()
    by_name.submit("ops.flexible", args=[1, 2, 3], kwargs={"flag": True, "z": 9})
    with pytest.raises(ms.InvalidArgument):
        by_name.submit("ops.flexible", kwargs={"flag": True})  # a is missing
    with pytest.warns(UserWarning, match="no App has declared 'ops.nobody.declared'") as said:
        undeclared = by_name.submit("ops.nobody.declared", args=[1], kwargs={"x": 2})
    assert said[0].filename == __file__  # (it names the line that submitted)
    assert undeclared.status() == ms.RunState.READY  # accepted, unchecked


# -- idempotency compares the policy --------------------------------------------------------------
def test_idempotency_key_with_another_policy_conflicts(app: ms.App) -> None:
    @app.task(name="ops.tick")
    def tick() -> None:
        return None

    cron = tick.with_options(idempotency_key="k1").schedule(cron="*/5 * * * *")
    assert tick.with_options(idempotency_key="k1").schedule(cron="*/5 * * * *").task_id == (
        cron.task_id
    )
    before = _counts(app)
    for other in (
        lambda: tick.with_options(idempotency_key="k1").schedule(cron="*/10 * * * *"),
        lambda: tick.with_options(idempotency_key="k1").schedule(
            cron="*/5 * * * *", tz="Europe/Paris"
        ),
        lambda: tick.with_options(idempotency_key="k1").schedule(
            cron="*/5 * * * *", misfire="skip"
        ),
        lambda: tick.with_options(idempotency_key="k1").repeat(count=2, every=60),
        lambda: tick.with_options(idempotency_key="k1").submit(),
    ):
        with pytest.raises(ms.IdempotencyConflict, match="policy"):
            other()
    rep = tick.with_options(idempotency_key="k2").repeat(count=3, every=60)
    assert tick.with_options(idempotency_key="k2").repeat(count=3, every=60).task_id == rep.task_id
    with pytest.raises(ms.IdempotencyConflict):
        tick.with_options(idempotency_key="k2").repeat(count=4, every=60)
    with pytest.raises(ms.IdempotencyConflict):
        tick.with_options(idempotency_key="k2").repeat(count=3, every=30)
    once = tick.with_options(idempotency_key="k3", delay=5).submit()
    assert tick.with_options(idempotency_key="k3", delay=7).submit() == once  # delay: not policy
    assert _counts(app)[0] == before[0] + 3 + 1


# -- rerun -------------------------------------------------------------------------------------------
def test_rerun_makes_a_new_run_of_the_same_task_and_arguments(app: ms.App) -> None:
    @app.task(name="ops.double")
    def double(x: int) -> int:
        if x < 0:
            raise ms.Fail("negative")
        return 2 * x

    h = double.submit(21)
    failed = double.submit(-1)
    with app.worker(concurrency=2) as w:
        w.run_until_idle(timeout=10)
        again = h.rerun()
        retry = failed.rerun()
        assert again.run_id != h.run_id
        assert again.result(timeout=10) == 42
        w.run_until_idle(timeout=10)
    assert again.info().rerun_of == h.run_id and h.info().rerun_of is None
    assert retry.status() == ms.RunState.FAILED and retry.info().rerun_of == failed.run_id
    assert app.get_task(again.task_id).name == "ops.double"
    with pytest.raises(ms.UnknownRun):
        app.run("01900000-0000-7000-8000-000000000000").rerun()


# -- tasks -------------------------------------------------------------------------------------------
def test_tasks_show_policy_next_occurrence_and_counts(app: ms.App) -> None:
    @app.task(name="ops.job")
    def job(n: int = 0) -> None:
        return None

    once = job.submit(1)
    rep = job.repeat(count=3, every=3600)
    cron = job.schedule(cron="0 0 1 1 *", tz="UTC")
    infos = {t.task_id: t for t in app.tasks()}
    assert set(infos) == {once.task_id, rep.task_id, cron.task_id}
    assert infos[once.task_id].policy["kind"] == "once" and infos[once.task_id].next_at is None
    r = infos[rep.task_id]
    assert r.policy["count"] == 3 and r.policy["every"] == 3600 and r.state == "active"
    assert r.run_counts == {"ready": 1, "scheduled": 2}
    assert r.next_at is not None and r.next_at > dt.datetime.now(dt.UTC)
    c = infos[cron.task_id]
    assert c.policy["cron"] == "0 0 1 1 *" and c.next_at is not None
    assert (c.next_at.month, c.next_at.day, c.next_at.hour) == (1, 1, 0)
    assert rep.cancel()
    assert rep.task_id not in {t.task_id for t in app.tasks()}
    canceled = app.get_task(rep.task_id)
    assert canceled.state == "canceled" and canceled.next_at is None
    assert canceled.run_counts == {"canceled": 3}
    assert rep.task_id in {t.task_id for t in app.tasks(active=False)}
    with pytest.raises(ms.UnknownTask):
        app.get_task("01900000-0000-7000-8000-000000000000")
    with pytest.raises(ms.UnknownTask):
        app.task_handle("01900000-0000-7000-8000-000000000000").cancel()


# -- workers -------------------------------------------------------------------------------------------
def test_workers_register_while_they_run_and_leave_when_they_stop(app: ms.App) -> None:
    gate = threading.Event()

    @app.task(name="ops.wait", queue="slow")
    def wait() -> None:
        gate.wait(10)

    assert app.workers() == []
    h = wait.submit()
    with app.worker(concurrency=3) as w:
        wait_state(h, ms.RunState.RUNNING)
        (info,) = wait_for(app.workers, what="the worker to register")
        assert info.tasks == ["ops.wait"] and info.queues == ["slow"] and info.concurrency == 3
        assert info.running == [h.run_id] and info.worker_id == w.id
        assert info.started_at <= info.last_seen_at
        gate.set()
        w.run_until_idle(timeout=10)
    assert app.workers() == []
    types = [e.type for e in app.log(limit=1_000_000) if e.type.startswith("worker.")]
    assert types[0] == "worker.registered" and types[-1] == "worker.left"


def test_a_vanished_worker_is_shown_gone_then_removed(store_url: str) -> None:
    clock = ManualClock()
    app = ms.App(store_url, lease_seconds=5, clock=clock)

    @app.task(name="ops.noop")
    def noop() -> None:
        return None

    try:
        ghost = Registration("ghost:1", "elsewhere", 1, None, ["ops.noop"], 4)
        app.engine.register_worker(ghost, 5)
        assert [w.worker_id for w in app.workers()] == ["ghost:1"]
        clock.advance(6)
        assert app.workers() == []  # shown gone at once
        alive = Registration("alive:2", "here", 2, ["default"], ["ops.noop"], 1)
        app.engine.register_worker(alive, 5)  # its heartbeat removes the ghost
        assert [w.worker_id for w in app.workers()] == ["alive:2"]
        assert [e.data["worker_id"] for e in app.log() if e.type == "worker.expired"] == ["ghost:1"]
        first, second = noop.submit(), noop.submit()
        (eligible,) = app.why(second.run_id).reasons
        assert eligible.code == "eligible" and eligible.data == {"ahead": 1}
        assert [r.code for r in app.why(first.run_id).reasons] == ["eligible"]
        assert app.why(first.run_id).reasons[0].data == {"ahead": 0}
        assert app.verify().ok
    finally:
        app.close()


# -- why ------------------------------------------------------------------------------------------------
def _codes(app: ms.App, h: ms.RunHandle) -> list[str]:
    return [r.code for r in app.why(h.run_id).reasons]


def test_why_explains_each_state(app: ms.App) -> None:
    gate = threading.Event()

    @app.task(name="ops.keyed", concurrency_key="k")
    def keyed() -> None:
        gate.wait(10)

    @app.task(name="ops.flaky", max_attempts=3, backoff=ms.Backoff.fixed(3600))
    def flaky() -> None:
        raise RuntimeError("boom")

    later = keyed.with_options(delay=3600).submit()
    why = app.why(later.run_id)
    assert why.state == ms.RunState.SCHEDULED and why.run_id == later.run_id
    assert _codes(app, later) == ["not_due", "no_worker"]
    assert isinstance(why.reasons[0].data["due_at"], dt.datetime) and why.reasons[0].text
    first, second = keyed.submit(), keyed.submit()
    assert _codes(app, first) == ["no_worker"]
    app.pause()
    assert "engine_paused" in _codes(app, first)
    app.resume()
    f = flaky.submit()
    with app.worker(concurrency=4) as w:
        wait_state(first, ms.RunState.RUNNING)
        running = app.why(first.run_id).reasons
        assert [r.code for r in running] == ["running"]
        assert running[0].data["worker_id"] == w.id
        assert isinstance(running[0].data["lease_expires_at"], dt.datetime)
        held = app.why(second.run_id).reasons
        assert [r.code for r in held] == ["key_held"]
        assert held[0].data == {"key": "k", "held_by": [first.run_id], "limit": 1}
        wait_state(f, ms.RunState.RETRY_WAIT)
        (wait,) = app.why(f.run_id).reasons
        assert wait.code == "retry_wait" and wait.data["attempts_left"] == 2
        gate.set()
        wait_state(second, ms.RunState.COMPLETED)
    (done,) = app.why(first.run_id).reasons
    assert done.code == "terminal" and done.data["reason"] == "success"
    ready = keyed.submit()
    other = keyed.submit()
    with app.worker(concurrency=1, queues=["nothing-here"]):
        wait_for(app.workers)
        assert _codes(app, ready) == ["no_worker"]  # its queue is not served
    with pytest.raises(ms.UnknownRun):
        app.why("01900000-0000-7000-8000-000000000000")
    assert app.why(other.run_id).state == ms.RunState.READY


def test_runs_are_listed_the_latest_first_on_request(app: ms.App) -> None:
    @app.task
    def job(i: int) -> int:
        return i

    handles = [job.with_options(delay=i).submit(i) for i in range(5)]  # scheduled in order
    ids = [h.run_id for h in handles]
    assert [r.run_id for r in app.runs()] == ids
    assert [r.run_id for r in app.runs(order="desc")] == ids[::-1]
    assert [r.run_id for r in app.runs(order="desc", after=ids[3], limit=2)] == [ids[2], ids[1]]
    with pytest.raises(ms.InvalidArgument, match="order"):
        app.runs(order="newest")
