"""The embedded SQLite store: schema, refusal of foreign files, URLs, the log, processes."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mainspring as ms
from mainspring.core.clock import ManualClock
from mainspring.core.model import TaskOptions
from mainspring.engine import Engine, Finished, SubmitRequest
from mainspring.store import open_store, resolve_url
from mainspring.store import sqlite as sq
from mainspring.store.base import Store

TABLES = {"ms_meta", "ms_log", "ms_tasks", "ms_runs", "ms_definitions", "ms_engine"}


def url_of(path: Path) -> str:
    assert path.is_absolute()
    return f"sqlite:///{path}"  # sqlite:/// + /abs/path = sqlite:////abs/path


def req(i: int = 0, **kw: Any) -> SubmitRequest:
    return SubmitRequest(name="job", args=[i], kwargs={}, options=TaskOptions(), **kw)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    s = open_store(url_of(store_path))
    yield s
    s.close()


def make_store(path: Path, runs: int = 3) -> None:
    s = open_store(url_of(path))
    eng = Engine(s)
    for i in range(runs):
        eng.submit(req(i))
    s.close()


def fingerprint(path: Path) -> tuple[bytes, int, int]:
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns, st.st_size


# -- schema ---------------------------------------------------------------------------------
def test_creates_the_schema(store: Store, store_path: Path) -> None:
    assert store_path.exists()
    con = raw(store_path)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables >= TABLES
    meta = dict(con.execute("SELECT key, value FROM ms_meta").fetchall())
    assert meta["app"] == "mainspring"
    assert int(meta["schema_version"]) == sq.SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT paused FROM ms_engine").fetchall() == [(0,)]
    con.close()


def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    p = tmp_path / "empty.db"
    p.touch()
    s = open_store(url_of(p))
    Engine(s).submit(req())
    s.close()
    assert p.stat().st_size > 0


def test_reopen_keeps_everything(store_path: Path) -> None:
    clock = ManualClock()
    s = open_store(url_of(store_path))
    eng = Engine(s, clock=clock)
    sub = eng.submit(req(7))
    eng.set_paused(True)
    with s.read() as tx:
        seq_before = [e.seq for e in tx.events(0, None, 1000)]
    s.close()

    s2 = open_store(url_of(store_path))
    eng2 = Engine(s2, clock=clock)
    run = eng2.get_run(sub.run_ids[0])
    assert run.state == ms.RunState.READY
    with s2.read() as tx:
        assert tx.paused() is True
        assert tx.get_task(sub.task_id) is not None
        assert tx.get_task(sub.task_id).args == [7]  # type: ignore[union-attr]
    assert eng2.verify() == []
    eng2.set_paused(False)
    eng2.submit(req(8))
    with s2.read() as tx:
        seqs = [e.seq for e in tx.events(0, None, 1000)]
    assert seqs[: len(seq_before)] == seq_before
    assert all(a < b for a, b in itertools.pairwise(seqs))
    s2.close()


def test_reopen_of_a_current_store_does_not_migrate(store_path: Path) -> None:
    make_store(store_path)
    con = raw(store_path)
    version = con.execute("SELECT value FROM ms_meta WHERE key = 'schema_version'").fetchone()
    con.close()
    s = open_store(url_of(store_path))
    s.close()
    con = raw(store_path)
    assert (
        con.execute("SELECT value FROM ms_meta WHERE key = 'schema_version'").fetchone() == version
    )
    assert con.execute("SELECT COUNT(*) FROM ms_runs").fetchone()[0] == 3
    con.close()


def test_closed_store_refuses_work(store_path: Path) -> None:
    s = open_store(url_of(store_path))
    s.close()
    with pytest.raises(ms.StoreError), s.read():
        pass


# -- refusal ----------------------------------------------------------------------------------
def foreign_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers (name) VALUES ('ada'), ('grace')")
    con.commit()
    con.close()


def foreign_with_ms_meta(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE ms_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("INSERT INTO ms_meta VALUES ('app', 'somebody-else'), ('schema_version', '1')")
    con.commit()
    con.close()


def text_file(path: Path) -> None:
    path.write_text("name,email\nada,ada@example.com\n" * 50)


def fake_header(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))


def newer_store(path: Path) -> None:
    src = path.with_name("source.db")
    make_store(src)
    shutil.copyfile(src, path)
    con = sqlite3.connect(path)
    con.execute(
        "UPDATE ms_meta SET value = ? WHERE key = 'schema_version'", (str(sq.SCHEMA_VERSION + 1),)
    )
    con.commit()
    con.close()
    # the copy must be self-contained: no WAL left beside it
    assert not path.with_name(path.name + "-wal").exists() or (
        path.with_name(path.name + "-wal").stat().st_size == 0
    )


@pytest.mark.parametrize(
    ("maker", "needle"),
    [
        (foreign_sqlite, "not a mainspring store"),
        (foreign_with_ms_meta, "not a mainspring store"),
        (text_file, "not a mainspring store"),
        (fake_header, "not a mainspring store"),
        (newer_store, "newer"),
    ],
    ids=["foreign-sqlite", "foreign-ms_meta", "text-file", "fake-header", "newer-schema"],
)
def test_refuses_and_leaves_the_file_untouched(tmp_path: Path, maker: Any, needle: str) -> None:
    p = tmp_path / "victim.db"
    maker(p)
    before = fingerprint(p)
    with pytest.raises(ms.StoreError, match=needle) as info:
        open_store(url_of(p))
    assert isinstance(info.value, ms.MainspringError)
    assert str(p) in str(info.value)  # the message names the file
    assert fingerprint(p) == before  # byte-for-byte, and not even touched
    # and again: a second attempt is refused the same way
    with pytest.raises(ms.StoreError):
        open_store(url_of(p))
    assert fingerprint(p) == before


def test_refused_foreign_database_still_works_for_its_owner(tmp_path: Path) -> None:
    p = tmp_path / "theirs.db"
    foreign_sqlite(p)
    with pytest.raises(ms.StoreError):
        open_store(url_of(p))
    con = sqlite3.connect(p)
    assert con.execute("SELECT name FROM customers ORDER BY id").fetchall() == [
        ("ada",),
        ("grace",),
    ]
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"customers"}
    con.close()


def test_newer_store_message_says_to_upgrade(tmp_path: Path) -> None:
    p = tmp_path / "future.db"
    newer_store(p)
    with pytest.raises(ms.StoreError, match="upgrade"):
        open_store(url_of(p))


def test_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "adir"
    d.mkdir()
    with pytest.raises(ms.StoreError, match="directory"):
        open_store(url_of(d))


def test_missing_directory_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    p = tmp_path / "no" / "such" / "dir" / "s.db"
    with pytest.raises(ms.StoreError):
        open_store(url_of(p))
    assert not (tmp_path / "no").exists()


# -- URLs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "path", "query"),
    [
        ("sqlite:///rel.db", "rel.db", {}),
        ("sqlite:///sub/dir/rel.db", "sub/dir/rel.db", {}),
        ("sqlite:////abs/path.db", "/abs/path.db", {}),
        ("sqlite:////abs/path.db?synchronous=normal", "/abs/path.db", {"synchronous": "normal"}),
    ],
)
def test_parse_url(url: str, path: str, query: dict[str, str]) -> None:
    assert sq.parse_url(url) == (path, query)


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite:x.db", "postgresql-ish:///x.db"],
)
def test_parse_invalid_url(url: str) -> None:
    with pytest.raises(ms.StoreError):
        sq.parse_url(url)


@pytest.mark.parametrize(
    "url", ["mysql://localhost/db", "sqlite:x.db", "sqlite://", "file.db", "://"]
)
def test_open_invalid_url(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ms.StoreError):
        open_store(url)
    assert list(tmp_path.iterdir()) == []


def test_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    s = open_store("sqlite:///data/rel.db")
    try:
        assert (tmp_path / "data" / "rel.db").exists()
        assert Path(s.path) == tmp_path / "data" / "rel.db"  # type: ignore[attr-defined]
    finally:
        s.close()


def test_absolute_url(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path}/abs.db")
    s.close()
    assert (tmp_path / "abs.db").exists()
    assert f"sqlite:///{tmp_path}/abs.db".startswith("sqlite:////")


def test_resolve_url_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAINSPRING_STORE", raising=False)
    assert resolve_url(None) == "sqlite:///mainspring.db"
    monkeypatch.setenv("MAINSPRING_STORE", "sqlite:////env/x.db")
    assert resolve_url(None) == "sqlite:////env/x.db"
    assert resolve_url("sqlite:///explicit.db") == "sqlite:///explicit.db"


def test_open_store_uses_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINSPRING_STORE", f"sqlite:///{tmp_path}/env.db")
    s = open_store()
    s.close()
    assert (tmp_path / "env.db").exists()


def synchronous_of(s: Store) -> int:
    with s.read() as tx:
        return int(tx.con.execute("PRAGMA synchronous").fetchone()[0])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "level"),
    [(None, 2), ("off", 0), ("normal", 1), ("full", 2), ("extra", 3), ("NORMAL", 1)],
)
def test_synchronous_query_parameter(tmp_path: Path, value: str | None, level: int) -> None:
    url = f"sqlite:///{tmp_path}/s.db" + ("" if value is None else f"?synchronous={value}")
    s = open_store(url)
    try:
        assert synchronous_of(s) == level
        Engine(s).submit(req())  # and it works
    finally:
        s.close()


def test_invalid_synchronous_is_refused_before_touching_anything(tmp_path: Path) -> None:
    with pytest.raises(ms.StoreError, match="synchronous"):
        open_store(f"sqlite:///{tmp_path}/s.db?synchronous=sometimes")
    assert list(tmp_path.iterdir()) == []


# -- the log --------------------------------------------------------------------------------------
def test_seq_is_strictly_increasing_and_complete(store: Store) -> None:
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
    assert seqs[0] >= 1
    assert all(a < b for a, b in itertools.pairwise(seqs))
    assert snap.last_seq == seqs[-1]
    assert len({e.event_id for e in events}) == len(events)
    # paging with `since` returns exactly the later events
    mid = seqs[len(seqs) // 2]
    with store.read() as tx:
        assert [e.seq for e in tx.events(mid, None, 100_000)] == [s for s in seqs if s > mid]
        run_id = subs[0].run_ids[0]
        own = tx.events(0, run_id, 1000)
    assert own and all(e.run_id == run_id for e in own)
    assert [e.seq for e in own] == sorted(e.seq for e in own)
    assert eng.verify() == []


def test_a_failed_transaction_writes_nothing(store: Store) -> None:
    eng = Engine(store)
    eng.submit(req())
    with store.read() as tx:
        n = len(tx.events(0, None, 1000))
    with pytest.raises(ms.IdempotencyConflict):
        eng.submit_many([req(1, idempotency_key="k"), req(2, idempotency_key="k")])
    with store.read() as tx:
        assert len(tx.events(0, None, 1000)) == n
        assert tx.task_by_idempotency("job", "k") is None
    assert eng.verify() == []


def test_tampering_is_found_by_verify(store: Store, store_path: Path) -> None:
    eng = Engine(store)
    sub = eng.submit(req())
    con = raw(store_path)
    con.execute("UPDATE ms_runs SET state = 'completed' WHERE run_id = ?", (sub.run_ids[0],))
    con.commit()
    con.close()
    problems = eng.verify()
    assert problems
    assert any(sub.run_ids[0] in p and "state" in p for p in problems)


# -- several processes ---------------------------------------------------------------------------
def _submit_in_child(url: str, tag: str, n: int, barrier: Any, out: Any, keyed: bool) -> None:
    s = open_store(url)
    eng = Engine(s)
    barrier.wait(timeout=60)
    got = []
    for i in range(n):
        key = f"key-{i}" if keyed else None
        r = SubmitRequest(
            name="job",
            args=[i] if keyed else [tag, i],
            kwargs={},
            options=TaskOptions(),
            idempotency_key=key,
        )
        sub = eng.submit(r)
        got.append((sub.task_id, sub.run_ids[0], sub.replayed))
    s.close()
    out.put((tag, got))


def _run_children(url: str, n: int, keyed: bool) -> dict[str, list[tuple[str, str, bool]]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_submit_in_child, args=(url, tag, n, barrier, out, keyed))
        for tag in ("a", "b")
    ]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


@pytest.mark.timeout(180)
def test_two_processes_submit_concurrently(store_path: Path) -> None:
    make_store(store_path, runs=0)
    url = url_of(store_path)
    n = 60
    results = _run_children(url, n, keyed=False)
    all_runs = [r for got in results.values() for (_, r, _) in got]
    all_tasks = [t for got in results.values() for (t, _, _) in got]
    assert len(all_runs) == 2 * n
    assert len(set(all_runs)) == 2 * n
    assert len(set(all_tasks)) == 2 * n
    s = open_store(url)
    try:
        with s.read() as tx:
            events = list(tx.iter_all_events())
            assert tx.stats()["ready"] == 2 * n
        seqs = [e.seq for e in events]
        assert all(a < b for a, b in itertools.pairwise(seqs))
        assert len({e.event_id for e in events}) == len(events)
        assert Engine(s).verify() == []
    finally:
        s.close()


@pytest.mark.timeout(180)
def test_two_processes_share_idempotency_keys(store_path: Path) -> None:
    make_store(store_path, runs=0)
    url = url_of(store_path)
    n = 30
    results = _run_children(url, n, keyed=True)
    a, b = results["a"], results["b"]
    for i in range(n):
        assert a[i][:2] == b[i][:2]  # same task, same run for the same key
        assert a[i][2] != b[i][2]  # exactly one of them created it
    s = open_store(url)
    try:
        with s.read() as tx:
            assert sum(tx.stats().values()) == n
        assert Engine(s).verify() == []
    finally:
        s.close()


# -- paths with URI-special characters (regression: the read-only check built a file: URI
# without quoting, so '#' cut the path short and '%20' was decoded) --------------------------
@pytest.mark.parametrize("dirname", ["with#hash", "with%20percent", "with space", "with&amp=1"])
def test_store_in_a_directory_with_special_characters(tmp_path: Path, dirname: str) -> None:
    d = tmp_path / dirname
    d.mkdir()
    p = d / "s.db"
    make_store(p, runs=2)
    s = open_store(url_of(p))  # reopen goes through the read-only check
    try:
        with s.read() as tx:
            assert sum(tx.stats().values()) == 2
        assert Engine(s).verify() == []
    finally:
        s.close()
    assert sorted(x.name for x in tmp_path.iterdir()) == [dirname]  # no stray files beside it


@pytest.mark.parametrize("maker", [foreign_sqlite, newer_store], ids=["foreign", "newer"])
def test_refusal_in_a_directory_with_a_hash(tmp_path: Path, maker: Any) -> None:
    d = tmp_path / "a#b"
    d.mkdir()
    p = d / "victim.db"
    maker(p)
    before = fingerprint(p)
    with pytest.raises(ms.StoreError):
        open_store(url_of(p))
    assert fingerprint(p) == before
    assert not (tmp_path / "a").exists()
