"""PostgreSQL's log in partitions by seq range (store/pg_log_parts.py): made ahead of the
log by its writers, made on demand by a write that finds none (in the store's transactions
and in a caller's), and the same ranges for ``ms_log`` and ``ms_log_runs``. Compaction's
drops are tested with compaction (tests/e2e/test_compaction.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from conftest import pg_log_ranges, pg_schema_url

import mainspring as ms
from mainspring.engine import Engine
from mainspring.store import open_store, pg_log_parts
from mainspring.store.base import Store

from .helpers import req

try:
    import psycopg
except ImportError:  # pragma: no cover - without the extra, pg_database skips (fails under CI)
    psycopg = None  # type: ignore[assignment]

pytestmark = pytest.mark.timeout(60)

SIZE = 20  # events per partition here


@pytest.fixture
def url(pg_database: str) -> str:
    return pg_schema_url(pg_database, "parts") + f"&log_partition={SIZE}"


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = open_store(url)
    yield s
    s.close()


def ranges(s: Store) -> list[tuple[int, int]]:
    """The log's partitions, checked to be the same for both tables and contiguous from 0."""
    with s.read() as tx:
        found = {t: pg_log_ranges(tx.con, t) for t in ("ms_log", "ms_log_runs")}  # type: ignore[attr-defined]
    assert found["ms_log"] == found["ms_log_runs"]
    got = found["ms_log"]
    assert got[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(got))
    return got


def seqs(s: Store) -> list[int]:
    with s.read() as tx:
        return [e.seq for e in tx.iter_all_events()]


def test_a_new_store_has_the_first_partition_and_those_ahead(store: Store) -> None:
    ahead = pg_log_parts.AHEAD
    assert ranges(store) == [(i * SIZE, (i + 1) * SIZE) for i in range(ahead + 1)]


def test_writers_keep_partitions_made_ahead_of_the_log(store: Store) -> None:
    eng = Engine(store)
    subs = []
    for i in range(60):
        subs.append(eng.submit(req(i)))
        last = seqs(store)[-1]
        # at least a whole partition past the last event, whoever wrote it
        assert ranges(store)[-1][1] >= last + SIZE
    assert seqs(store) == list(range(1, last + 1))
    with store.read() as tx:  # a run's events, found through ms_log_runs' partitions
        for sub in (subs[0], subs[-1]):
            run_id = sub.run_ids[0]
            assert {e.run_id for e in tx.events(0, run_id, 100)} == {run_id}
    assert eng.verify() == []


def test_a_write_that_finds_no_partition_makes_them_and_runs_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partitions not made ahead (here: never after a commit): the write that needs one
    is rolled back, makes them, and runs again; nothing is lost or numbered twice."""
    monkeypatch.setattr(pg_log_parts.LogPartitions, "committed", lambda *a: None)
    made = []
    make = pg_log_parts.LogPartitions.try_make_ahead
    monkeypatch.setattr(
        pg_log_parts.LogPartitions,
        "try_make_ahead",
        lambda self, con: made.append(1) or make(self, con),
    )
    eng = Engine(store)
    subs = [eng.submit(req(i)) for i in range(60)]
    last = seqs(store)[-1]
    assert last > (pg_log_parts.AHEAD + 1) * SIZE  # past what was made when it opened
    assert made  # by the writes that found no partition
    assert seqs(store) == list(range(1, last + 1))
    assert len({s.run_ids[0] for s in subs}) == 60
    assert eng.verify() == []


def test_a_write_in_the_callers_transaction_that_finds_no_partition_runs_again(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_log_parts.LogPartitions, "committed", lambda *a: None)
    app = ms.App(url)
    try:

        @app.task
        def job(i: int) -> int:
            return i

        conninfo = app.store.conninfo  # type: ignore[attr-defined]
        with psycopg.connect(conninfo) as con:
            handles = []
            for i in range(40):
                with con.transaction():
                    handles.append(job.with_options(connection=con).submit(i))
        last = seqs(app.store)[-1]
        assert last > (pg_log_parts.AHEAD + 1) * SIZE
        assert [h.status() for h in handles] == ["ready"] * 40
        assert seqs(app.store) == list(range(1, last + 1))
        assert app.verify().ok
    finally:
        app.close()


def test_another_size_on_reopening_goes_on_from_the_last_partition(url: str) -> None:
    s = open_store(url)
    Engine(s).submit(req())
    before = ranges(s)
    s.close()
    s = open_store(url.replace(f"log_partition={SIZE}", "log_partition=50"))
    try:
        eng = Engine(s)
        for i in range(30):
            eng.submit(req(i))
        after = ranges(s)
        assert after[: len(before)] == before
        assert all(hi - lo == 50 for lo, hi in after[len(before) :])
        assert eng.verify() == []
    finally:
        s.close()
