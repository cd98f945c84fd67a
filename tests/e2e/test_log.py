"""The log: unbroken histories, ids on every event, pagination, verify and tampering."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import mainspring as ms

from .helpers import check_history, tamper

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _busy_store(app: ms.App) -> list[ms.RunHandle]:
    """Runs that went through most of the state machine."""

    @app.task(max_attempts=3, backoff=ms.Backoff.fixed(0.01))
    def varied(kind: str) -> str:
        ctx = ms.context()
        if kind == "retry" and ctx.attempt < 3:
            raise ms.Retry()
        if kind == "fail":
            raise ms.Fail("no")
        if kind == "suspend" and ctx.attempt == 1:
            raise ms.Suspend("later")
        if kind == "error":
            raise RuntimeError("bad")
        return kind

    hs = [
        varied.with_options(execution_id=f"exec-{k}", correlation_id=f"corr-{k}").submit(k)
        for k in ("ok", "retry", "fail", "suspend", "error", "cancel")
    ]
    hs[-1].cancel()
    with app.worker(concurrency=4) as w:
        w.run_until_idle(timeout=10)
        assert hs[3].resume()
        w.run_until_idle(timeout=10)
    return hs


def test_histories_are_unbroken_chains(app: ms.App) -> None:
    hs = _busy_store(app)
    assert [h.status() for h in hs] == [
        ms.RunState.COMPLETED,
        ms.RunState.COMPLETED,
        ms.RunState.FAILED,
        ms.RunState.COMPLETED,
        ms.RunState.FAILED,
        ms.RunState.CANCELED,
    ]
    for h in hs:
        check_history(app, h.run_id)
        hist = h.history()
        assert hist == app.log(run_id=h.run_id, limit=1_000_000)
        changes = [e for e in hist if e.type == "run.state_changed"]
        assert changes[0].data["from"] == "scheduled"
        assert changes[-1].data["to"] == h.status()
        assert all("reason" in e.data for e in changes)
    attempts_events = [e for e in hs[1].history() if e.type.startswith("attempt.")]
    assert [e.type for e in attempts_events] == ["attempt.started", "attempt.finished"] * 3
    assert [e.attempt_id for e in attempts_events[::2]] == [
        a.attempt_id for a in hs[1].info().attempts
    ]


def test_every_event_of_a_run_carries_its_execution_and_correlation_ids(app: ms.App) -> None:
    hs = _busy_store(app)
    kinds = ("ok", "retry", "fail", "suspend", "error", "cancel")
    for kind, h in zip(kinds, hs, strict=True):
        hist = h.history()
        assert len(hist) >= 2
        assert {e.execution_id for e in hist} == {f"exec-{kind}"}
        assert {e.correlation_id for e in hist} == {f"corr-{kind}"}
        assert {e.task_id for e in hist} == {h.task_id}
    # the task's own events carry them too
    created = [e for e in app.log(limit=100_000) if e.type == "task.created"]
    assert {(e.execution_id, e.correlation_id) for e in created} == {
        (f"exec-{k}", f"corr-{k}") for k in kinds
    }


def test_log_pagination_and_strictly_increasing_seq(app: ms.App) -> None:
    _busy_store(app)
    everything = app.log(limit=1_000_000)
    assert len(everything) > 40
    seqs = [e.seq for e in everything]
    assert all(a < b for a, b in itertools.pairwise(seqs))
    assert len({e.event_id for e in everything}) == len(everything)
    assert all(UUID7.match(e.event_id) for e in everything)
    assert all(
        e.at.tzinfo is not None and e.at.utcoffset().total_seconds() == 0 for e in everything
    )
    assert len(app.log()) == min(1000, len(everything))

    pages: list[ms.LogEvent] = []
    since = 0
    for _ in range(1000):
        page = app.log(since=since, limit=7)
        assert len(page) <= 7
        if not page:
            break
        assert all(e.seq > since for e in page)
        pages.extend(page)
        since = page[-1].seq
    assert pages == everything
    assert app.log(since=everything[-1].seq) == []
    middle = everything[len(everything) // 2].seq
    assert app.log(since=middle, limit=1_000_000) == [e for e in everything if e.seq > middle]

    run_id = everything[-1].run_id or next(e.run_id for e in everything if e.run_id)
    assert app.log(run_id=run_id, limit=1_000_000) == [e for e in everything if e.run_id == run_id]

    # new events continue after the last seq
    app.pause()
    later = app.log(since=since)
    assert [e.type for e in later] == ["engine.paused"]
    assert later[0].seq > since
    app.resume()


def test_stats_count_runs_per_state(app: ms.App) -> None:
    _busy_store(app)
    stats = app.stats()
    assert set(stats) >= {s.value for s in ms.RunState}
    assert stats["completed"] == 3 and stats["failed"] == 2 and stats["canceled"] == 1
    assert sum(stats.values()) == 6
    assert [r.state for r in app.runs(state="failed")] == [ms.RunState.FAILED] * 2


def test_verify_reports_a_tampered_run(make_app: Callable[..., ms.App], store_url: str) -> None:
    app = make_app(check=False)
    hs = _busy_store(app)
    assert app.verify().ok
    assert app.verify().problems == []
    victim = hs[0].run_id
    # test-only side door: simulate corruption of the projection behind the engine's back
    assert tamper(store_url, "UPDATE ms_runs SET state = 'ready' WHERE run_id = ?", (victim,)) == 1
    report = app.verify()
    assert report.ok is False
    assert any(victim in p for p in report.problems), report.problems
    assert not any(h.run_id in p for h in hs[1:] for p in report.problems)


def test_verify_names_each_task_definition_that_differs(
    make_app: Callable[..., ms.App], store_url: str
) -> None:
    """(It said "task definitions differ from the log", naming none.)"""
    app = make_app(check=False)

    @app.task(name="also.declared")
    def also() -> None: ...

    _busy_store(app)
    with app.store.read() as tx:
        kept, gone = sorted(tx.definitions())[:2]
    # test-only side door: simulate corruption of the projection behind the engine's back
    assert tamper(store_url, "DELETE FROM ms_definitions WHERE name = ?", (gone,)) == 1
    problems = app.verify().problems
    assert problems == [f"task definition {gone}: in the log but missing from the stored state"]
    assert kept not in problems[0]


def test_times_in_event_data_are_aware_datetimes_and_payloads_are_left_alone(
    app: ms.App,
) -> None:
    from datetime import UTC, datetime

    @app.task(max_attempts=2, backoff=ms.Backoff.fixed(0.01))
    def stamped(paid_at: float) -> dict[str, float]:
        if ms.context().attempt == 1:
            raise ms.Retry()
        return {"done_at": paid_at}

    h = stamped.submit(paid_at=1.5)
    t = stamped.with_options(delay=0.01).repeat(count=1, every=60.0, kwargs={"paid_at": 2.5})
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    times = {
        k: v
        for e in h.history() + app.log(run_id=t.runs()[0].run_id)
        for k, v in e.data.items()
        if k.endswith("_at")
    }
    assert set(times) == {"scheduled_at", "expires_at", "due_at"}
    assert all(isinstance(v, datetime) and v.tzinfo == UTC for v in times.values())
    created = [e for e in app.log() if e.type == "task.created"]
    assert [e.data["kwargs"] for e in created] == [{"paid_at": 1.5}, {"paid_at": 2.5}]
    assert isinstance(created[1].data["policy"]["start_at"], datetime)
    finished = [e for e in h.history() if e.type == "attempt.finished"]
    assert finished[-1].data["output"] == {"done_at": 1.5}


def test_verify_reports_its_progress_through_the_log(app: ms.App) -> None:
    @app.task
    def job(i: int) -> int:
        return i

    for _ in range(4):  # 6,000 events or more, in records of 1,500
        app.submit_many(job, [((i,), {}) for i in range(500)])
    total = app.log(since=0, limit=1_000_000)[-1].seq
    calls: list[tuple[int, int]] = []
    assert app.verify(progress=lambda done, of: calls.append((done, of))).ok
    assert calls[-1] == (total, total)
    assert len(calls) >= 2 and all(of == total for _, of in calls)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})


def test_a_reader_of_a_new_log_never_sees_its_first_event_as_compacted(
    make_app: Callable[..., ms.App],
) -> None:
    """Another writer commits the first event right after the reader's first statement: the
    log still starts at 1. (``first_seq`` read the last seq in a second statement, which on
    PostgreSQL saw that commit, so ``app.log`` raised LogCompacted for events 1..1.)"""
    app, writer = make_app(), make_app()

    @writer.task(name="log.first")
    def first() -> None:
        pass

    with app.store.read() as tx:
        assert tx.events(0, None, 10) == []
        read = tx._rows  # type: ignore[attr-defined]
        submitted: list[object] = []

        def then_a_commit(*args: Any) -> Any:
            out = read(*args)
            if not submitted:  # right after the reader's first statement
                submitted.append(first.submit())
            return out

        tx._rows = then_a_commit  # type: ignore[attr-defined]
        assert tx.first_seq() == 1
        assert submitted
    assert app.log()[0].seq == 1
