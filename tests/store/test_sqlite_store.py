"""The embedded SQLite store: schema, refusal of foreign files, URLs, paths.

What every store guarantees (the log, reopening, several processes) is in
test_store_contract.py, run on both stores."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import rss_mb

import mainspring as ms
from mainspring.core.model import TaskOptions
from mainspring.core.states import AttemptResult
from mainspring.engine import Engine, Finished, memory
from mainspring.store import checkpoint, open_store, resolve_url, sqlite_file, sqlite_schema
from mainspring.store import sqlite as sq
from mainspring.store.base import Store

from .helpers import in_processes, make_store, req

TABLES = {"ms_meta", "ms_log", "ms_tasks", "ms_runs", "ms_definitions", "ms_engine"}


def url_of(path: Path) -> str:
    assert path.is_absolute()
    return f"sqlite:///{path}"  # sqlite:/// + /abs/path = sqlite:////abs/path


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


def test_reopen_of_a_current_store_does_not_migrate(store_path: Path) -> None:
    make_store(url_of(store_path))
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


# -- refusal ----------------------------------------------------------------------------------
def another_programs(*statements: str) -> Callable[[Path], None]:
    """A maker of another program's SQLite database: these statements, committed."""

    def make(path: Path) -> None:
        con = sqlite3.connect(path)
        for sql in statements:
            con.execute(sql)
        con.commit()
        con.close()

    return make


foreign_sqlite = another_programs(
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)",
    "INSERT INTO customers (name) VALUES ('ada'), ('grace')",
)
foreign_with_ms_meta = another_programs(
    "CREATE TABLE ms_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "INSERT INTO ms_meta VALUES ('app', 'somebody-else'), ('schema_version', '1')",
)
foreign_view_only = another_programs("CREATE VIEW answer AS SELECT 42 AS value")  # no table
# nothing in it yet but its own marks
foreign_marked_only = another_programs("PRAGMA user_version = 7", "PRAGMA application_id = 1234")


def text_file(path: Path) -> None:
    path.write_text("name,email\nada,ada@example.com\n" * 50)


def fake_header(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))


def newer_store(path: Path) -> None:
    src = path.with_name("source.db")
    make_store(url_of(src))
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
        (foreign_view_only, "not a mainspring store"),
        (foreign_marked_only, "not a mainspring store"),
        (text_file, "not a mainspring store"),
        (fake_header, "not a mainspring store"),
        (newer_store, "newer"),
    ],
    ids=[
        "foreign-sqlite",
        "foreign-ms_meta",
        "foreign-view-only",
        "foreign-marked-only",
        "text-file",
        "fake-header",
        "newer-schema",
    ],
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


def test_a_store_made_newer_after_the_first_look_is_refused_not_marked_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process may create (or upgrade) the store between the read-only look and
    the write transaction that would create it: the transaction looks again."""
    p = tmp_path / "raced.db"
    newer_store(p)
    monkeypatch.setattr(sqlite_schema, "check_existing", lambda path: 0)  # "empty a moment ago"
    with pytest.raises(ms.StoreError, match="newer"):
        open_store(url_of(p))
    con = sqlite3.connect(p)
    version = con.execute("SELECT value FROM ms_meta WHERE key = 'schema_version'").fetchone()
    con.close()
    assert int(version[0]) == sq.SCHEMA_VERSION + 1


def _open_new(barrier: Any, i: int, url: str) -> int:
    barrier.wait()
    s = open_store(url)
    try:
        return s.schema_version
    finally:
        s.close()


def test_processes_creating_one_new_store_at_once_all_open_it(tmp_path: Path) -> None:
    # one creates the file, the others wait for it and find it made (none sees "locked")
    versions = in_processes(6, _open_new, url_of(tmp_path / "new.db"))
    assert versions == [sq.SCHEMA_VERSION] * 6
    con = raw(tmp_path / "new.db")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables >= TABLES


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


@pytest.mark.parametrize("query", ["synchronous=sometimes", "synchronus=off", "schema=x"])
def test_a_bad_url_parameter_is_refused_before_touching_anything(
    tmp_path: Path, query: str
) -> None:
    """A misspelt parameter would drop the durability setting meant without a word."""
    with pytest.raises(ms.StoreError, match="synchronous"):
        open_store(f"sqlite:///{tmp_path}/s.db?{query}")
    assert list(tmp_path.iterdir()) == []


# -- paths with URI-special characters (regression: the read-only check built a file: URI
# without quoting, so '#' cut the path short and '%20' was decoded) --------------------------
@pytest.mark.parametrize("dirname", ["with#hash", "with%20percent", "with space", "with&amp=1"])
def test_store_in_a_directory_with_special_characters(tmp_path: Path, dirname: str) -> None:
    d = tmp_path / dirname
    d.mkdir()
    p = d / "s.db"
    make_store(url_of(p), runs=2)
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


# -- the WAL and the pages a commit writes ------------------------------------------------------
def test_background_checkpoint_copies_the_wal_into_the_file(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "CHECKPOINT_EVENTS", 50)
    s = open_store(url_of(store_path))
    try:
        before = store_path.stat().st_size
        eng = Engine(s)
        eng.submit_many([req(i) for i in range(40)])  # 120 events, far below SQLite's valve
        deadline = time.monotonic() + 10
        while store_path.stat().st_size == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store_path.stat().st_size > before  # pages reached the file without a commit
        thread = s._checkpointer._thread  # type: ignore[attr-defined]
        assert thread is not None and thread.is_alive()
    finally:
        s.close()
    assert not thread.is_alive()  # close() ends it
    assert Engine(open_store(url_of(store_path))).verify() == []


def test_a_wal_a_long_reader_made_grow_is_cut_back_when_it_starts_over(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sq, "WAL_SIZE_LIMIT", 64 * 1024)
    s = open_store(url_of(store_path))
    wal = Path(f"{store_path}-wal")
    try:
        eng = Engine(s)
        reader = raw(store_path)  # a long read (a compaction's snapshot, a backup)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM ms_runs").fetchone()
        for i in range(20):
            eng.submit_many([req(i * 50 + k) for k in range(50)])
        grown = wal.stat().st_size
        assert grown > 1024 * 1024  # the reader kept the WAL from starting over
        reader.execute("COMMIT")
        reader.close()
        deadline = time.monotonic() + 10  # (the background checkpointer may be at it)
        while raw(store_path).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0] != 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        eng.submit(req(10_000))  # the next write starts the WAL over, and cuts it back
        assert wal.stat().st_size <= 64 * 1024
        assert eng.verify() == []
    finally:
        s.close()


def test_below_the_threshold_no_checkpoint_thread_starts(store: Store, store_path: Path) -> None:
    Engine(store).submit(req())
    assert store._checkpointer._thread is None  # type: ignore[attr-defined]


def test_runs_made_together_are_stored_in_id_order(store: Store, store_path: Path) -> None:
    Engine(store).submit_many([req(i) for i in range(200)])
    ids = [r[0] for r in raw(store_path).execute("SELECT run_id FROM ms_runs ORDER BY rowid")]
    assert len(ids) == 200
    assert ids == sorted(ids)


def test_run_rows_keep_only_what_their_columns_do_not(store: Store, store_path: Path) -> None:
    eng = Engine(store)
    run_id = eng.submit(req()).run_ids[0]
    doc = json.loads(raw(store_path).execute("SELECT doc FROM ms_runs").fetchone()[0])
    assert "run_id" not in doc and "state" not in doc and "lease_owner" not in doc
    assert eng.get_run(run_id).state == "ready"


def test_a_whole_run_document_of_an_earlier_version_still_reads(
    store: Store, store_path: Path
) -> None:
    eng = Engine(store)
    run_id = eng.submit(req()).run_ids[0]
    run = eng.get_run(run_id)
    con = raw(store_path)
    with con:  # the document as versions before the compact one wrote it: the whole run
        con.execute("UPDATE ms_runs SET doc = ?", (msgspec.json.encode(run),))
    assert eng.get_run(run_id) == run
    assert eng.verify() == []


def test_a_run_rewritten_unchanged_keeps_the_same_bytes(store: Store, store_path: Path) -> None:
    """Workers write a finished run only over the exact row they leased (its bytes):
    decoding a row and writing it back must not change them (omit_defaults compares by
    identity, and a decoded string is a new object)."""
    eng = Engine(store)
    eng.submit(req(options=TaskOptions(concurrency_key="k")))
    doc = raw(store_path).execute("SELECT doc FROM ms_runs").fetchone()[0]
    with store.read() as tx:
        run = tx.snapshot().runs.popitem()[1]
    assert sq._run_row(run)[-1] == doc
    assert b"key_policy" not in doc


def test_writers_queue_on_the_store_lock_file(store: Store, store_path: Path) -> None:
    """A writer waits in the kernel's queue for the store's lock file before BEGIN
    IMMEDIATE, and starts the moment it is released (no busy-handler sleeps)."""
    import fcntl
    import threading

    assert isinstance(store, sq.SQLiteStore)
    os.makedirs(os.path.dirname(store._lock_path), exist_ok=True)
    fd = os.open(store._lock_path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another process's writer would hold it
    done = threading.Event()

    def write() -> None:
        Engine(store).submit(req())
        done.set()

    t = threading.Thread(target=write)
    t.start()
    try:
        assert not done.wait(0.3), "the writer did not wait for the queue"
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    t.join(10)
    assert done.is_set()
    with store.read() as tx:
        assert tx.stats()["ready"] == 1


# -- the commit that ends a run tells the threads waiting for it ------------------------------------
def _cancel_in_a_process(barrier: Any, i: int, url: str, run_id: str) -> bool:
    s = open_store(url)
    try:
        barrier.wait()
        return Engine(s).cancel_run(run_id)
    finally:
        s.close()


def test_a_commit_that_ends_a_run_wakes_the_waiter_named_for_it(store: Store) -> None:
    eng = Engine(store)
    mine, other = (eng.submit(req(i)).run_ids[0] for i in range(2))
    waiter = store.ended_waiter()
    assert waiter is not None and store.ended_waiter() is waiter  # one per thread
    assert not waiter.wait_for(mine, 0.05)  # nothing ended yet
    eng.cancel_run(other)
    assert not waiter.wait_for(mine, 0.05)  # another run's end is not ours
    eng.cancel_run(mine)
    assert waiter.wait_for(mine, 5)


def test_the_waiter_hears_a_commit_of_another_process(store: Store, store_path: Path) -> None:
    run_id = Engine(store).submit(req()).run_ids[0]
    waiter = store.ended_waiter()
    assert waiter is not None
    assert in_processes(1, _cancel_in_a_process, url_of(store_path), run_id) == [True]
    assert waiter.wait_for(run_id, 5)


def test_another_path_to_the_file_is_the_same_store(store: Store, tmp_path: Path) -> None:
    """A process that reaches the file by a symlink hears the others' wake-ups and queues
    with their writers. (They met by the path's hash: a worker on the symlink was never
    woken, and its writes did not queue with the others'.)"""
    alias = tmp_path / "alias"
    alias.symlink_to(tmp_path, target_is_directory=True)
    other = open_store(url_of(alias / "store.db"))
    try:
        waiter = other.waiter()
        ended = other.ended_waiter()
        assert ended is not None
        run_id = Engine(store).submit(req()).run_ids[0]
        assert waiter.wait(5)  # the submit through the real path wakes it
        Engine(store).cancel_run(run_id)
        assert ended.wait_for(run_id, 5)
        waiter.close()
    finally:
        other.close()


def test_a_wake_up_for_too_many_runs_to_name_wakes_every_waiter(store: Store) -> None:
    eng = Engine(store)
    n = sq.MAX_NAMED + 1
    eng.submit_many([req(i) for i in range(n)])
    leased = eng.cycle("w", ["job"], None, [], n, 30.0, housekeeping=False).leased
    assert len(leased) == n
    waiter = store.ended_waiter()
    assert waiter is not None
    assert not waiter.wait_for("some-other-run", 0.05)
    done = [Finished(lz.run_id, lz.attempt_id, AttemptResult.SUCCESS) for lz in leased]
    res = eng.cycle("w", ["job"], None, done, 0, 30.0, housekeeping=False)  # one commit
    assert len(res.accepted) == n
    assert waiter.wait_for("some-other-run", 5)


def test_closing_the_store_removes_its_waiters_sockets(store_path: Path) -> None:
    s = open_store(url_of(store_path))
    waiter = s.ended_waiter()
    path = waiter.path  # type: ignore[union-attr]
    assert os.path.exists(path)
    s.close()
    assert not os.path.exists(path)


def test_a_compaction_leaves_no_page_cache_behind(tmp_path: Path) -> None:
    """A compaction reads the whole store through its connection's page cache (up to 32
    MB); ``release_memory`` empties it, so a process that compacts now and then does not
    hold those pages until it closes."""
    if memory._trim is None:
        pytest.skip("no glibc malloc_trim here to measure against")
    url = url_of(tmp_path / "big.db")
    with ms.App(url) as app:
        noop = app.task(name="noop")(lambda blob: None)
        app.submit_many(noop, [((os.urandom(6_000).hex(),), {}) for _ in range(4_000)])
    assert os.path.getsize(tmp_path / "big.db") > 40e6
    with ms.App(url) as app:
        app.stats()  # (the connection opened, before what the compaction reads)
        memory.release_free_memory()  # (what making the store left in the heap)
        before = rss_mb()
        app.compact()
        assert rss_mb() - before < 12  # (the full cache alone would be 32 MB)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_store_file_deleted_or_replaced_under_a_process_is_not_written_to(
    tmp_path: Path, how: str
) -> None:
    """Its open connections would go on writing to the old file (all of it lost, silently),
    and a new connection made an empty file at the path."""
    path = tmp_path / "gone.db"
    app = ms.App(f"sqlite:///{path}")

    @app.task(name="gone.job")
    def job() -> None:
        pass

    try:
        job.submit()
        os.remove(path)
        if how == "replaced":
            shutil.copy(tmp_path / "gone.db-wal", tmp_path / "other")  # any file will do
            os.rename(tmp_path / "other", path)
        with pytest.raises(ms.StoreError, match=how):
            job.submit()
        with pytest.raises(ms.StoreError), ThreadPoolExecutor(1) as pool:
            pool.submit(job.submit).result()  # a new thread's new connection too
        assert path.exists() == (how == "replaced")
    finally:
        app.close()


def test_a_store_that_cannot_be_read_for_want_of_permissions_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite needs the -wal and -shm files beside a store even to read it; in a directory
    this process cannot write it answers "attempt to write a readonly database" (an
    ``OperationalError``). The error names the permissions rather than calling the file
    "not a mainspring store". (Faked here: root reads and writes whatever the modes say.)"""
    path = tmp_path / "s.db"
    with ms.App(f"sqlite:///{path}") as app:
        app.stats()

    class Readonly:  # what sqlite3 gives: a connection whose first read fails
        def execute(self, *args: Any) -> Any:
            raise sqlite3.OperationalError("attempt to write a readonly database")

        def close(self) -> None:
            pass

    def readonly(*args: Any, **kwargs: Any) -> Any:
        return Readonly()

    monkeypatch.setattr(sqlite_file.sqlite3, "connect", readonly)
    with pytest.raises(ms.StoreError) as info:
        ms.App(f"sqlite:///{path}").open()
    assert "not a mainspring store" not in str(info.value)
    assert "permissions" in str(info.value) and "readonly" in str(info.value)
