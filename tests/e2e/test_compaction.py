"""Compaction on both stores: ``app.compact`` writes a snapshot of the whole state and
deletes the log up to it; ``verify`` replays from the snapshot; ``log`` asking for removed
events raises ``LogCompacted``; work in every state (workflows asleep or waiting, messages,
paused queues, rate accounts, debounced runs) goes on from a compacted store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from conftest import pg_log_ranges

import mainspring as ms
from mainspring.testing import ManualClock

from .helpers import wait_for

Make = Callable[..., ms.App]

#: events per partition of the log on PostgreSQL here: a compaction drops some
PARTITION = 16
PARTITIONED = "the log in partitions is PostgreSQL's"


@pytest.fixture
def store_url(store_url: str, store_kind: str) -> str:
    return f"{store_url}&log_partition={PARTITION}" if store_kind == "postgres" else store_url


def partitions(app: ms.App) -> list[tuple[int, int]]:
    """The ranges of the log's partitions on PostgreSQL, in order."""
    with app.store.read() as tx:
        return pg_log_ranges(tx.con)  # type: ignore[attr-defined]


def _ok(app: ms.App) -> None:
    report = app.verify()
    assert report.ok, report.problems


def test_compact_removes_the_log_up_to_a_snapshot_and_verify_replays_from_it(
    make_app: Make,
) -> None:
    app = make_app(check=False)

    @app.task
    def job(i: int) -> int:
        return i * 2

    handles = job.submit_many([{"i": i} for i in range(50)])
    with app.worker(concurrency=4) as w:
        w.run_until_idle()
    last = app.log(since=0, limit=100_000)[-1].seq
    seq = app.compact()
    assert seq == last  # the snapshot is at the log's seq when it began
    with pytest.raises(ms.LogCompacted) as caught:
        app.log(since=0)
    first = caught.value.first_seq
    assert first == seq + 1  # (the log.compacted record is all that is left)
    kept = app.log(since=first - 1)
    assert [e.type for e in kept] == ["log.compacted"] and kept[0].data == {"snapshot_seq": seq}
    with pytest.raises(ms.LogCompacted):
        app.log(since=first - 2)
    with pytest.raises(ms.LogCompacted):
        app.log(since=0, run_id=handles[0].run_id)
    assert handles[0].history() == []  # a run's history is what the log still holds
    assert [h.result() for h in handles] == [i * 2 for i in range(50)]  # the state is whole
    _ok(app)
    more = job.submit(7)  # the log goes on, numbered after what was removed
    with app.worker() as w:
        w.run_until_idle()
    assert more.result() == 14
    assert app.log(since=first - 1)[0].seq == first
    _ok(app)
    second = app.compact()
    assert second > seq
    with app.store.read() as tx:
        assert tx.snapshot_seq() == second
        assert list(tx.snapshot_parts(seq)) == []  # the older snapshot is gone
    _ok(app)


def test_compacting_an_empty_store_or_twice_in_a_row_is_harmless(make_app: Make) -> None:
    app = make_app(check=False)
    assert app.compact() == 0
    assert app.log() == []
    _ok(app)

    @app.task
    def job() -> None:
        pass

    job.submit()
    first = app.compact()
    again = app.compact()  # only log.compacted came since: a snapshot at it, the rest goes
    assert again == first + 1
    assert [e.type for e in app.log(since=again)] == ["log.compacted"]
    _ok(app)


def test_work_in_every_state_goes_on_from_a_compacted_store(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(check=False, clock=clock)
    got: list[str] = []

    @app.step()
    def double(x: int) -> int:
        return 2 * x

    @app.workflow
    def flow(x: int) -> list[object]:
        y = double(x)
        ms.sleep(timedelta(minutes=5))
        return [y, ms.wait_for("go")]

    @app.task(rate_limit="2/h")
    def limited(i: int) -> int:
        return i

    @app.task(queue="slow")
    def slow() -> str:
        return "slow"

    @app.task
    def later(v: str) -> str:
        return v

    @app.subscriber("orders.*", name="billing")
    def billing(msg: ms.Message) -> None:
        got.append(msg.payload["id"])

    sleeper = flow.submit(3)
    waiter = flow.submit(4)
    rated = [limited.submit(i) for i in range(3)]
    app.pause(queue="slow")
    held = slow.submit()
    debounced = later.with_options(debounce=60, debounce_key="k").submit("a")
    later.with_options(debounce=60, debounce_key="k").submit("b")
    app.publish("orders.created", {"id": "o1"})

    def state(h: ms.RunHandle) -> str:
        return app.get_run(h.run_id).state

    with app.worker(concurrency=4) as w:
        wait_for(
            lambda: (
                state(sleeper) == state(waiter) == "suspended"
                and [state(h) for h in rated].count("completed") == 2
                and got == ["o1"]
            ),
            30,
            "the workflows to sleep, two rated runs and the delivery to complete",
        )
        app.compact()  # asleep, rate-limited, paused, debounced: all in the snapshot
        _ok(app)
        app.signal(waiter.run_id, "go", "yes")
        clock.advance(timedelta(minutes=5))
        assert waiter.result(timeout=30) == [8, "yes"]
        wait_for(lambda: state(sleeper) == "suspended", 30, "the other to wait for its signal")
        app.compact()  # now waiting for a signal
        _ok(app)
        app.publish("orders.created", {"id": "o2"})
        app.signal(sleeper.run_id, "go", "later")
        app.resume(queue="slow")
        clock.advance(timedelta(hours=1))
        w.run_until_idle()
    assert sleeper.result() == [6, "later"]
    assert held.result() == "slow"
    assert debounced.result() == "b"
    assert sorted(h.result() for h in rated) == [0, 1, 2]
    assert got == ["o1", "o2"]
    assert [r.sequence for r in app.receipts(subscriber="billing")] == [1, 2]
    _ok(app)


def test_prune_and_compact_while_a_worker_drains_and_a_reader_follows(make_app: Make) -> None:
    app = make_app(check=False)

    @app.task
    def job(i: int) -> int:
        return i

    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def follow() -> None:  # what `mainspring log --follow` does
        last = 0
        try:
            while not stop.is_set():
                for e in app.log(since=last, limit=500):
                    seen.append(e.seq)
                    last = e.seq
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=follow)
    reader.start()
    try:
        with app.worker(concurrency=4) as w:
            for _ in range(4):
                job.submit_many([{"i": i} for i in range(200)])
                wait_for(lambda: app.stats()["completed"] > 0, 30, "runs to complete")
                app.prune(0)
                app.compact()
            w.run_until_idle()
        with app.store.read() as tx:
            last = tx.last_seq()
        wait_for(lambda: bool(seen) and seen[-1] == last, 30, "the reader to catch up")
    finally:
        stop.set()
        reader.join(30)
    assert not errors, errors  # a reader that keeps up never meets a compacted range
    assert seen == list(range(1, len(seen) + 1))  # no gap, no repeat
    _ok(app)


def test_verify_reports_a_log_that_does_not_reach_its_snapshot(make_app: Make) -> None:
    app = make_app(check=False)

    @app.task
    def job() -> None:
        pass

    for _ in range(3):
        job.submit()
    with app.store.write() as tx:  # (damage made on purpose: no snapshot covers this)
        tx._write_many("DELETE FROM ms_log WHERE seq = 1", [()])  # type: ignore[attr-defined]
    report = app.verify()
    assert not report.ok
    assert "the log starts at seq " in report.problems[0]
    assert "but the latest snapshot is at seq 0" in report.problems[0]


def _pg_app_with_finished_runs(
    make_app: Make, store_kind: str, n: int, why: str
) -> tuple[ms.App, ms.TaskFunction, list[ms.RunHandle]]:
    """On PostgreSQL only (else skip, saying ``why``): an App whose task ``job`` ran ``n``
    runs to completion; the App, the task and the runs' handles."""
    if store_kind != "postgres":
        pytest.skip(why)
    app = make_app(check=False)

    @app.task
    def job(i: int) -> int:
        return i

    handles = job.submit_many([{"i": i} for i in range(n)])
    with app.worker(concurrency=4) as w:
        w.run_until_idle()
    return app, job, handles


def test_on_postgresql_a_compaction_vacuums_the_log_it_shortened(
    make_app: Make, store_kind: str
) -> None:
    why = "PostgreSQL reuses a deleted row's space only once it is vacuumed"
    app, _, _ = _pg_app_with_finished_runs(make_app, store_kind, 20, why)
    schema = app.store.schema  # type: ignore[attr-defined]

    def vacuums() -> int:  # of the log's partitions (what was deleted row by row is in one)
        with app.store.read() as tx:
            conn = tx.con  # type: ignore[attr-defined]
            row = conn.execute(
                "SELECT coalesce(sum(vacuum_count), 0) FROM pg_stat_user_tables "
                "WHERE schemaname = %s AND relname ~ '^ms_log_[0-9]+_[0-9]+$'",
                (schema,),
            ).fetchone()
        return int(row[0])

    before = vacuums()
    app.compact()
    wait_for(lambda: vacuums() > before, 10, "a VACUUM of the log after the compaction")
    _ok(app)


def test_on_postgresql_compaction_drops_the_partitions_its_snapshot_covers(
    make_app: Make, store_kind: str
) -> None:
    app, _, handles = _pg_app_with_finished_runs(make_app, store_kind, 30, PARTITIONED)
    before = partitions(app)
    seq = app.compact()
    after = partitions(app)
    with app.store.read() as tx:
        first = tx.first_seq()
    assert first == seq + 1
    # gone: every partition that ends at or before the log's first record
    assert after[0][0] <= first < after[0][1]
    assert [p for p in before if p[1] <= first] == before[: len(before) - len(after)]
    assert len(before) - len(after) >= seq // PARTITION - 1
    assert [h.result() for h in handles] == list(range(30))
    _ok(app)


def test_on_postgresql_a_compaction_that_cannot_lock_the_log_deletes_records_instead(
    make_app: Make, store_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition is dropped under a lock on the whole log, which a long transaction that
    read the log holds off: compaction waits a moment for it, then deletes the records by
    seq range, a partition at a time, and a later compaction drops the partitions."""
    import psycopg

    from mainspring.store import pg_log_parts

    monkeypatch.setattr(pg_log_parts, "LOCK_TIMEOUT", "20ms")
    app, job, _ = _pg_app_with_finished_runs(make_app, store_kind, 30, PARTITIONED)
    before = partitions(app)
    with psycopg.connect(app.store.conninfo) as reader:  # type: ignore[attr-defined]
        reader.execute("SELECT count(*) FROM ms_log").fetchone()  # (and holds its lock)
        seq = app.compact()
        assert partitions(app)[: len(before)] == before  # none dropped
        with app.store.read() as tx:
            assert tx.first_seq() == seq + 1  # the records were deleted all the same
        _ok(app)
    job.submit(1)
    app.compact()
    after = partitions(app)
    with app.store.read() as tx:
        assert after[0][0] <= tx.first_seq() < after[0][1]
    _ok(app)


def test_a_snapshot_read_a_page_at_a_time_is_cut_into_the_same_parts_as_the_whole_state(
    make_app: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mainspring.store import snapshots

    monkeypatch.setattr(snapshots, "PART_SIZE", 7)  # (several parts of runs and of tasks)
    app = make_app(check=False)

    @app.task
    def job(i: int) -> int:
        return i

    job.submit_many([{"i": i} for i in range(40)])
    with app.worker(concurrency=4) as w:
        w.run_until_idle()
    job.submit_many([{"i": i} for i in range(5)])  # (ready runs too)
    with app.engine.store.read(snapshot=True) as tx:
        seq, streamed = tx.last_seq(), tx.encode_snapshot()
        whole = tx.snapshot()
    assert seq == whole.last_seq == app.log(since=0, limit=100_000)[-1].seq
    assert streamed == list(snapshots.encode_parts(whole))
    assert len(streamed) >= 2 * 45 // 7  # runs and tasks, each over several parts
    decoded = snapshots.decode_parts(seq, streamed)
    assert decoded.runs == whole.runs and decoded.tasks == whole.tasks
