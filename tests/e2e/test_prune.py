"""Retention on both stores: ``app.prune`` removes terminal runs that ended long enough
ago (and the tasks left with nothing), through events, so ``verify`` still holds; a dry
run changes nothing; live runs and recent ones stay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

import mainspring as ms
from mainspring.testing import ManualClock

from .helpers import wait_for

Make = Callable[..., ms.App]


def test_prune_removes_old_terminal_runs_and_their_tasks(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)

    @app.task
    def job(i: int) -> int:
        return i

    @app.task(max_attempts=1)
    def bad() -> None:
        raise ms.Fail("no")

    old = [*job.submit_many([{"i": i} for i in range(30)]), bad.submit()]
    with app.worker() as w:
        w.run_until_idle()
        clock.advance(timedelta(days=2))
        recent = job.submit(100)
        w.run_until_idle()
        waiting = job.with_options(delay=3600).submit(101)  # not ended: never pruned
    assert app.prune(timedelta(days=1), dry_run=True) == 31
    assert len(app.runs(limit=1000)) == 33  # the dry run changed nothing
    pruned: list[int] = []
    assert app.prune(86400, progress=lambda d, t: pruned.append(d)) == 31
    assert pruned and pruned[-1] == 31
    left = {r.run_id for r in app.runs(limit=1000)}
    assert left == {recent.run_id, waiting.run_id}
    with pytest.raises(ms.UnknownRun):
        app.get_run(old[0].run_id)
    assert old[0].history()[-1].type == "run.pruned"  # the log keeps its history
    assert len(app.tasks(active=False, limit=1000)) == 2  # their once-tasks went too
    types = [e.type for e in app.log(limit=100_000)]
    assert types.count("run.pruned") == 31 and types.count("task.pruned") == 31
    assert app.prune(0, states=["completed"]) == 1  # the recent one, now with no age
    report = app.verify()
    assert report.ok, report.problems


def test_prune_bad_input_changes_nothing(app: ms.App) -> None:
    before = app.log()
    with pytest.raises(ms.InvalidArgument):
        app.prune(-1)  # older_than in the future
    with pytest.raises(ms.InvalidArgument):
        app.prune(10, states=["ready"])  # not ended: not prunable
    with pytest.raises(ms.InvalidArgument):
        app.prune(10, states=["nonsense"])
    assert app.log() == before


def test_app_retention_prunes_in_the_background_from_a_worker(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock, retention=timedelta(hours=1))

    @app.task
    def job(i: int) -> int:
        return i

    job.submit_many([{"i": i} for i in range(1200)])
    with app.worker() as w:
        w.run_until_idle()
        assert app.stats()["completed"] == 1200  # ended just now: kept
        clock.advance(timedelta(hours=2))
        # more than a page: the pages after the first follow at once, not a period later
        wait_for(lambda: app.stats()["completed"] == 0, 30, "the background retention")
    report = app.verify()
    assert report.ok, report.problems


def test_a_retention_that_is_not_positive_is_refused() -> None:
    for bad in (0, -5):
        with pytest.raises(ms.InvalidArgument):
            ms.App("sqlite:///unused.db", retention=bad)


def test_prune_takes_a_runs_own_records_with_it(make_app: Make) -> None:
    """A pruned workflow's steps, waits, signals and execution id, a run's transaction
    receipts and a delivery's receipt go with it; what other runs own stays."""
    clock = ManualClock()
    app = make_app(clock=clock)

    @app.transaction()
    def note(con: object, x: int) -> int:
        return x

    @app.step()
    def double(x: int) -> int:
        return 2 * x

    @app.workflow
    def flow(x: int) -> list[object]:
        ms.sleep(1)
        return [double(x), ms.wait_for("go"), note(x)]

    @app.subscriber("orders.*", name="billing")
    def billing(msg: ms.Message) -> None:
        pass

    old = flow.with_options(execution_id="order-1").submit(1)
    app.signal("order-1", "go", "yes")
    app.publish("orders.created", {"n": 1})
    with app.worker() as w:
        w.run_until_idle()
        clock.advance(2)
        assert old.result(timeout=30) == [2, "yes", 1]
        clock.advance(timedelta(days=2))
        kept = flow.submit(5)  # a recent one: pruned with nothing of it
        app.signal(kept.run_id, "go", "no")
        w.run_until_idle()
        clock.advance(2)
        assert kept.result(timeout=30) == [10, "no", 5]
        w.run_until_idle()

    def owned(run_id: str) -> dict[str, int]:
        kinds = ("steps", "waits", "signals", "calls")
        with app.store.read() as tx:
            counts = {k: len(tx.keys_under(k, [f"{run_id}/"])) for k in kinds}
            counts["receipts"] = len(tx.records("receipts"))
            counts["executions"] = sum(e.run_id == run_id for e in tx.records("executions"))
        return counts

    assert owned(old.run_id) == {
        "steps": 1, "waits": 2, "signals": 1, "calls": 1, "receipts": 1, "executions": 1
    }  # fmt: skip
    assert app.prune(timedelta(days=1)) == 2  # the workflow and the delivery
    assert owned(old.run_id) == {  # (a receipt stays, as its message does)
        "steps": 0, "waits": 0, "signals": 0, "calls": 0, "receipts": 1, "executions": 0
    }  # fmt: skip
    assert owned(kept.run_id)["steps"] == 1
    pruned = [e for e in old.history() if e.type == "run.pruned"]
    assert set(pruned[0].data["records"]) == {"steps", "waits", "signals", "calls", "executions"}
    with pytest.raises(ms.UnknownExecution):
        app.get_execution("order-1")
    again = flow.with_options(execution_id="order-1").submit(3)  # the id is free again
    assert again.run_id != old.run_id
    report = app.verify()
    assert report.ok, report.problems


def test_a_workflows_ended_child_is_kept_until_the_workflow_ends(make_app: Make) -> None:
    """The workflow reads its child's outcome when it replays: pruning the child first made
    it fail with UnknownRun, whatever its attempts left."""
    app = make_app()

    @app.task(name="prune.kid")
    def kid(x: int) -> int:
        return x * 10

    @app.workflow(name="prune.parent")
    def parent(x: int) -> int:
        h = kid.submit(x)
        ms.wait_for("go")  # suspended here with its child ended: then pruned
        out: int = h.result()
        return out

    p = parent.submit(4)
    with app.worker() as w:
        wait_for(lambda: p.status() == ms.RunState.SUSPENDED, 10, "the workflow to wait")
        w.run_until_idle()
        assert app.prune(0, dry_run=True) == 0
        assert app.prune(0) == 0  # the child ended, its parent has not: kept
        app.signal(p.run_id, "go")
        w.run_until_idle()
    assert p.result(timeout=5) == 40
    assert app.prune(0) == 2  # both ended now


def test_a_deliverys_receipt_outlives_its_run(make_app: Make) -> None:
    """A rerun of a delivery, still waiting when the run that delivered is pruned, finds
    the receipt and ends as the first handling did. (The prune took the receipt with the
    run, and the rerun handled the message a second time.)"""
    clock = ManualClock()
    app = make_app(clock=clock)
    calls: list[str] = []

    @app.subscriber("pay.done", name="ledger")
    def ledger(msg: ms.Message) -> str:
        calls.append(msg.event_id)
        return "booked"

    app.publish("pay.done", {"amount": 5}, event_id="pay-1")
    with app.worker() as w:
        w.run_until_idle(timeout=20)
    [receipt] = app.receipts(subscriber="ledger")
    again = app.run(receipt.run_id).rerun()
    clock.advance(timedelta(days=2))
    assert app.prune(timedelta(days=1)) == 1
    assert app.receipts(subscriber="ledger") == [receipt]
    with app.worker() as w:
        w.run_until_idle(timeout=20)
    assert calls == ["pay-1"]
    assert again.result(timeout=10) == "booked"
    assert app.receipts(subscriber="ledger") == [receipt]
    report = app.verify()
    assert report.ok, report.problems
