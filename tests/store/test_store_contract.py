"""What every store guarantees, tested on each (``store_url``: a SQLite file, a PostgreSQL
schema): reopening, the log, failed transactions, tampering, conflicts, several processes."""

from __future__ import annotations

import sqlite3
import time
import types
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

import mainspring as ms
from mainspring.core.clock import ManualClock
from mainspring.core.model import Event, TaskOptions
from mainspring.engine import Batch, Engine, Finished, SubmitRequest
from mainspring.engine import transact as engine_mod
from mainspring.engine.submission import submit_one
from mainspring.engine.transact import MAX_CONFLICT_RETRIES
from mainspring.store import log_tx, open_store, rows
from mainspring.store.base import Conflict, Store, WriteTx

from .helpers import in_processes, make_store, raw_execute, req


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


def all_events(s: Store) -> list[Event]:
    with s.read() as tx:
        return list(tx.iter_all_events())


def test_reopen_keeps_everything(store_url: str) -> None:
    clock = ManualClock()
    s = open_store(store_url)
    eng = Engine(s, clock=clock)
    sub = eng.submit(req(7))
    eng.set_paused(True)
    seq_before = [e.seq for e in all_events(s)]
    s.close()

    s2 = open_store(store_url)
    try:
        eng2 = Engine(s2, clock=clock)
        assert eng2.get_run(sub.run_ids[0]).state == ms.RunState.READY
        with s2.read() as tx:
            assert tx.paused() is True
            task = tx.get_task(sub.task_id)
            assert task is not None and task.args == [7]
        assert eng2.verify() == []
        eng2.set_paused(False)
        eng2.submit(req(8))
        seqs = [e.seq for e in all_events(s2)]
        assert seqs[: len(seq_before)] == seq_before
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        s2.close()


def test_closed_store_refuses_work(store_url: str) -> None:
    s = open_store(store_url)
    s.close()
    with pytest.raises(ms.StoreError), s.read():
        pass
    with pytest.raises(ms.StoreError), s.write():
        pass
    s.close()  # closing twice is harmless


# -- the log --------------------------------------------------------------------------------------
def test_seq_is_gapless_increasing_and_pages(store: Store) -> None:
    clock = ManualClock()
    eng = Engine(store, clock=clock)
    subs = eng.submit_many([req(i) for i in range(20)])
    res = eng.cycle("w", ["job"], None, [], 10, 30.0)
    assert len(res.leased) == 10
    eng.cycle(
        "w",
        ["job"],
        None,
        [
            Finished(run_id=lz.run_id, attempt_id=lz.attempt_id, result=ms.AttemptResult.SUCCESS)
            for lz in res.leased
        ],
        5,
        30.0,
    )
    clock.advance(60)
    eng.housekeeping()
    eng.cancel_run(subs[-1].run_ids[0])
    with store.read() as tx:
        events = tx.events(0, None, 100_000)
        snap = tx.snapshot()
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # numbered 1, 2, 3 ... in commit order
    assert snap.last_seq == seqs[-1]
    assert len({e.event_id for e in events}) == len(events)
    assert [e.seq for e in all_events(store)] == seqs  # iter_all_events pages the same log
    # paging with `since` returns exactly the later events; `limit` caps a page
    mid = seqs[len(seqs) // 2]
    with store.read() as tx:
        assert [e.seq for e in tx.events(mid, None, 100_000)] == [s for s in seqs if s > mid]
        assert [e.seq for e in tx.events(mid, None, 3)] == [mid + 1, mid + 2, mid + 3]
        run_id = subs[0].run_ids[0]
        own = tx.events(0, run_id, 1000)
    assert own and all(e.run_id == run_id for e in own)
    assert [e.seq for e in own] == sorted(e.seq for e in own)
    assert eng.verify() == []


def test_every_window_of_the_log_reads_the_same_as_the_whole(store: Store) -> None:
    """The log is stored a record per transaction: a read that starts or stops inside a
    record, filters by run, or needs more than one page of records still gives exactly the
    matching slice of the whole log."""
    eng = Engine(store, clock=ManualClock())
    subs = eng.submit_many([req(i) for i in range(6)])  # one record of many events
    for i in range(130):  # more records than one page (100)
        eng.submit(req(100 + i))
    res = eng.cycle("w", ["job"], None, [], 4, 30.0)
    done = [
        Finished(run_id=lz.run_id, attempt_id=lz.attempt_id, result=ms.AttemptResult.SUCCESS)
        for lz in res.leased
    ]
    eng.cycle("w", ["job"], None, done, 3, 30.0)
    whole = all_events(store)
    seqs = [e.seq for e in whole]
    assert seqs == list(range(1, len(whole) + 1))
    with store.read() as tx:
        for since in [0, 1, 2, 3, 5, 7, 11, len(whole) // 2, len(whole) - 1, len(whole)]:
            for limit in (1, 2, 5, 150, 100_000):
                got = tx.events(since, None, limit)
                assert got == whole[since : since + limit], (since, limit)
        for rid in (subs[0].run_ids[0], subs[5].run_ids[0], res.leased[0].run_id):
            own = [e for e in whole if e.run_id == rid]
            assert len(own) >= 2
            assert tx.events(0, rid, 1000) == own
            assert tx.events(own[0].seq, rid, 1000) == own[1:]
            assert tx.events(own[0].seq - 1, rid, 1) == own[:1]


def test_a_window_of_the_log_decodes_only_the_records_it_needs(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records can be large (a batch submission is one): reading a few events must not
    decode a page of them (verify of a 300,000-event log decoded 1.2 million)."""
    eng = Engine(store, clock=ManualClock())
    for batch in range(5):
        eng.submit_many([req(100 * batch + i) for i in range(100)])  # 300 events each
    decoded: list[int] = []
    real = rows.decode_record

    def counting(seq: int, body: bytes | str, run_id: str | None = None) -> list[Event]:
        events = real(seq, body, run_id)
        decoded.append(len(events))
        return events

    monkeypatch.setattr(log_tx, "decode_record", counting)
    with store.read() as tx:
        assert [e.seq for e in tx.events(250, None, 10)] == list(range(251, 261))
        assert decoded == [300]  # the one record that holds them
        decoded.clear()
        assert [e.seq for e in tx.events(295, None, 10)] == list(range(296, 306))
        assert decoded == [300, 300]


def _downgrade_log_to_v1(url: str, events: list[Event]) -> None:
    """Rewrite the store's log as schema 1 kept it (one row per event), as an earlier
    mainspring left it."""
    cols = "seq, event_id, type, at, task_id, run_id, attempt_id, correlation_id, execution_id"
    rows = [
        (
            *(e.seq, e.event_id, e.type, e.at, e.task_id, e.run_id, e.attempt_id),
            *(e.correlation_id, e.execution_id, msgspec.json.encode(e.data).decode()),
        )
        for e in events
    ]
    ddl = [
        "DROP TABLE ms_log_runs",
        "DROP TABLE ms_log",
        "CREATE TABLE ms_log (seq bigint PRIMARY KEY, event_id text NOT NULL, type text NOT NULL,"
        " at double precision NOT NULL, task_id text, run_id text, attempt_id text,"
        " correlation_id text, execution_id text, data {} NOT NULL)",
        "CREATE INDEX ms_log_run ON ms_log (run_id, seq) WHERE run_id IS NOT NULL",
        # (and without what schemas 3, 4 and 5 added)
        "DROP TABLE ms_snapshots",
        "DROP INDEX ms_runs_time",
        "DELETE FROM ms_meta WHERE key IN ('store_id', 'snapshot')",
        *(f"DROP TABLE {t}" for t in ("ms_steps", "ms_waits", "ms_signals", "ms_executions")),
        *(f"DROP TABLE {t}" for t in ("ms_messages", "ms_topics", "ms_receipts", "ms_subscribers")),
        "DROP TABLE ms_calls",
        "DROP TABLE ms_queues",
        "DROP TABLE ms_debounces",
        "DROP TABLE ms_idempotency",  # (schema 8)
        "DROP TABLE ms_rates",
        "DROP TABLE ms_deadlines",
        "DROP INDEX ms_runs_due",
        "CREATE INDEX ms_runs_due ON ms_runs (due_at) WHERE state IN ('scheduled', 'retry_wait')",
        "DROP TABLE ms_workers",
        "DROP INDEX ms_runs_task",
        "CREATE INDEX ms_runs_task ON ms_runs (task_id)",
        "UPDATE ms_meta SET value = '1' WHERE key = 'schema_version'",
    ]
    if url.startswith("sqlite:"):
        from mainspring.store.sqlite import parse_url as sqlite_url

        con = sqlite3.connect(sqlite_url(url)[0])
        for statement in ddl:
            con.execute(statement.format("BLOB"))
        con.executemany(f"INSERT INTO ms_log ({cols}, data) VALUES ({', '.join('?' * 10)})", rows)
        con.commit()
        con.close()
        return
    import psycopg

    from mainspring.store.postgres import parse_url as pg_url

    conninfo, schema = pg_url(url)[:2]
    with psycopg.connect(conninfo) as pg:
        pg.execute(f'SET search_path TO "{schema}"')
        for statement in ddl:
            pg.execute(statement.format("json"))  # type: ignore[arg-type]
        with pg.cursor() as cur:
            cur.executemany(
                f"INSERT INTO ms_log ({cols}, data) VALUES ({', '.join(['%s'] * 10)})", rows
            )


def test_a_schema_1_log_is_migrated_event_for_event(store_url: str) -> None:
    s = open_store(store_url)
    eng = Engine(s, clock=ManualClock())
    eng.submit_many([req(i) for i in range(3)])
    res = eng.cycle("w", ["job"], None, [], 2, 30.0)
    eng.cycle(
        "w",
        ["job"],
        None,
        [Finished(run_id=res.leased[0].run_id, attempt_id=res.leased[0].attempt_id,
                  result=ms.AttemptResult.SUCCESS)],
        0,
        30.0,
    )  # fmt: skip
    before = all_events(s)
    s.close()
    _downgrade_log_to_v1(store_url, before)

    with pytest.raises(ms.StoreError, match="mainspring migrate"):
        open_store(store_url, migrate=False)  # refused, and left as it was: ...
    s2 = open_store(store_url)  # ... opening migrates it
    try:
        assert all_events(s2) == before
        eng2 = Engine(s2)
        assert eng2.verify() == []
        rid = res.leased[0].run_id
        with s2.read() as tx:
            assert tx.events(0, rid, 100) == [e for e in before if e.run_id == rid]
        eng2.submit(req(9))  # and the log goes on after the migrated events
        seqs = [e.seq for e in all_events(s2)]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > len(before)
    finally:
        s2.close()


def test_a_failed_transaction_writes_nothing(store: Store) -> None:
    eng = Engine(store)
    eng.submit(req())
    before = all_events(store)
    with pytest.raises(ms.IdempotencyConflict):
        eng.submit_many([req(1, idempotency_key="k"), req(2, idempotency_key="k")])
    assert all_events(store) == before
    with store.read() as tx:
        assert tx.task_by_idempotency("job", "k") is None
    eng.submit(req(3))  # and numbering continues without a gap
    seqs = [e.seq for e in all_events(store)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert eng.verify() == []


def test_tampering_is_found_by_verify(store: Store, store_url: str) -> None:
    eng = Engine(store)
    sub = eng.submit(req())
    rid = sub.run_ids[0]
    raw_execute(store_url, f"UPDATE ms_runs SET state = 'completed' WHERE run_id = '{rid}'")
    problems = eng.verify()
    assert any(rid in p and "state" in p for p in problems), problems


# -- conflicts: Engine.transact runs the command again ------------------------------------------
def submit_body(eng: Engine, calls: list[int], fail_times: int) -> Any:
    """A command that writes a task into its transaction, then conflicts ``fail_times``."""

    def body(tx: WriteTx, b: Batch) -> int:
        calls.append(len(calls) + 1)
        submit_one(tx, b, req(len(calls)), {})
        b.flush(tx)  # the rows are in the transaction when it conflicts
        if len(calls) <= fail_times:
            raise Conflict("simulated: a concurrent transaction got in the way")
        return len(calls)

    return body


def test_transact_runs_a_conflicted_command_again(store: Store) -> None:
    eng = Engine(store)
    calls: list[int] = []
    out, b = eng.transact(submit_body(eng, calls, fail_times=1))
    assert out == 2 and calls == [1, 2]
    with store.read() as tx:
        assert tx.stats()["ready"] == 1  # only the second run's writes were kept
        task = tx.get_task(b.events[0].task_id or "")
        assert task is not None and task.args == [2]
    events = all_events(store)
    assert [e.seq for e in events] == [1, 2, 3]
    assert {e.task_id for e in events} == {task.task_id}
    assert eng.verify() == []


def test_transact_gives_up_after_max_conflict_retries(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []
    fake_time = types.SimpleNamespace(**vars(time))
    fake_time.sleep = sleeps.append  # the backoff between attempts, recorded
    monkeypatch.setattr(engine_mod, "time", fake_time)
    eng = Engine(store)
    calls: list[int] = []
    with pytest.raises(ms.StoreError) as info:
        eng.transact(submit_body(eng, calls, fail_times=10**6))
    assert isinstance(info.value, Conflict)
    assert len(calls) == MAX_CONFLICT_RETRIES + 1
    assert len(sleeps) == MAX_CONFLICT_RETRIES  # a backoff between attempts ...
    assert all(0 <= s <= 0.25 for s in sleeps)  # ... capped
    assert all_events(store) == []
    monkeypatch.undo()
    eng.submit(req())  # the store still works
    assert [e.seq for e in all_events(store)] == [1, 2, 3]


# -- several processes ----------------------------------------------------------------------------
def _submit_in_child(barrier: Any, i: int, url: str, n: int, keyed: bool) -> list[Any]:
    s = open_store(url)
    try:
        eng = Engine(s)
        barrier.wait(timeout=60)
        got = []
        for k in range(n):
            if keyed:
                sub = eng.submit(req(k, idempotency_key=f"key-{k}"))
            else:
                sub = eng.submit(req([i, k]))
            got.append((sub.task_id, sub.run_ids[0], sub.replayed))
        return got
    finally:
        s.close()


@pytest.mark.timeout(180)
def test_two_processes_submit_concurrently(store_url: str) -> None:
    make_store(store_url, runs=0)
    n = 60
    a, b = in_processes(2, _submit_in_child, store_url, n, False)
    assert len({r for (_, r, _) in a + b}) == 2 * n
    assert len({t for (t, _, _) in a + b}) == 2 * n
    s = open_store(store_url)
    try:
        with s.read() as tx:
            assert tx.stats()["ready"] == 2 * n
        events = all_events(s)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert len({e.event_id for e in events}) == len(events)
        assert Engine(s).verify() == []
    finally:
        s.close()


@pytest.mark.timeout(180)
def test_two_processes_share_idempotency_keys(store_url: str) -> None:
    make_store(store_url, runs=0)
    n = 30
    a, b = in_processes(2, _submit_in_child, store_url, n, True)
    for x, y in zip(a, b, strict=True):
        assert x[:2] == y[:2]  # same task, same run for the same key
        assert x[2] != y[2]  # exactly one of them created it
    s = open_store(store_url)
    try:
        with s.read() as tx:
            assert sum(tx.stats().values()) == n
        assert Engine(s).verify() == []
    finally:
        s.close()


@pytest.mark.parametrize("fenced", [True, False], ids=["row-kept", "row-encoded"])
@pytest.mark.parametrize("report_on", ["renewed", "leased", "canceled"])
def test_a_finished_attempt_is_decided_ahead_only_on_the_run_as_stored(
    store: Store, monkeypatch: pytest.MonkeyPatch, report_on: str, fenced: bool
) -> None:
    """A worker hands back the run as it leased (or last renewed) it, with the row the
    store wrote of it then (or without: the row is encoded again from the run), and the
    turn then does not read the run in its transaction. A report on an outdated snapshot
    (renewed since) is decided again in the transaction, with the same outcome; one on a
    run canceled since is fenced out."""
    from mainspring.core.states import AttemptResult
    from mainspring.engine.messages import snapshot_decoder

    eng = Engine(store)
    eng.submit(req())
    (lz,) = eng.cycle("w", ["job"], None, [], 1, 30.0, housekeeping=False).leased
    # the row kept by the store is the row the run encodes to
    assert lz.fence == rows.fence_of(snapshot_decoder.decode(lz.snapshot))
    snapshots: dict[str, bytes] = {}
    fences: dict[str, rows.Fence] = {}
    assert eng.renew("w", [lz.run_id], 60.0, snapshots, fences=fences) == set()
    assert snapshots[lz.run_id] != lz.snapshot  # the renewal changed the stored run
    assert fences[lz.run_id] == rows.fence_of(snapshot_decoder.decode(snapshots[lz.run_id]))
    if report_on == "canceled":
        assert eng.cancel_run(lz.run_id, "operator")
    with store.write() as wtx:
        tx_class = type(wtx)
    read: list[str] = []
    load_runs = tx_class.load_runs

    def spy(self: WriteTx, run_ids: Any, state: Any) -> None:
        read.extend(run_ids)
        load_runs(self, run_ids, state)

    monkeypatch.setattr(tx_class, "load_runs", spy)
    snapshot = lz.snapshot if report_on == "leased" else snapshots[lz.run_id]
    fence = (lz.fence if report_on == "leased" else fences[lz.run_id]) if fenced else None
    fin = Finished(
        lz.run_id,
        lz.attempt_id,
        AttemptResult.SUCCESS,
        7,
        options=lz.options,
        snapshot=snapshot,
        fence=fence,
    )
    res = eng.cycle("w", ["job"], None, [fin], 0, 30.0, housekeeping=False)
    run = eng.get_run(lz.run_id)
    if report_on == "canceled":
        assert (res.accepted, res.rejected) == ([], [lz.run_id])
        assert run.state == "canceled"
    else:
        assert res.accepted == [lz.run_id]
        assert (run.state, run.output, run.lease_owner) == ("completed", 7, None)
    assert read == ([] if report_on == "renewed" else [lz.run_id])
    assert eng.verify() == []


ODD = ["a b", "NULL", "null", "x,y", 'q"uote', "back\\slash", "{brace}", "tab\there", "é"]


def test_keys_and_names_that_need_quoting_travel_as_they_are(store: Store) -> None:
    """Concurrency keys, task names and a worker id with what an array literal must quote
    (spaces, commas, quotes, braces, backslashes, "NULL", non-ASCII): each key is held
    apart, each name leased, each run recorded under its own key, the log complete."""
    from mainspring.core.states import AttemptResult

    eng = Engine(store)
    for i, key in enumerate(ODD):
        eng.submit(req(i, concurrency_key=key))
        eng.submit(req(i, concurrency_key=key))  # the second waits for the first's key
        eng.submit(SubmitRequest(name=key, args=[], kwargs={}, options=TaskOptions()))
    worker = 'w "1", {x}'
    first = eng.cycle(worker, ["job", *ODD], None, [], 100, 30.0).leased
    by_key = Counter(eng.get_run(lz.run_id).concurrency_key for lz in first)
    assert by_key == Counter({None: len(ODD), **{k: 1 for k in ODD}})
    assert {lz.task_name for lz in first} == {"job", *ODD}
    done = [
        Finished(lz.run_id, lz.attempt_id, AttemptResult.SUCCESS, None, options=lz.options)
        for lz in first
    ]
    second = eng.cycle(worker, ["job", *ODD], None, done, 100, 30.0).leased
    assert sorted(eng.get_run(lz.run_id).concurrency_key for lz in second) == sorted(ODD)
    for lz in first:
        assert eng.get_run(lz.run_id).state == "completed"
        with store.read() as tx:  # through the log's run index: created, ready, then 7
            assert len(tx.events(0, lz.run_id, 100)) == 9
    assert eng.verify() == []
