"""The PostgreSQL store: its schema (install, migrate, refuse), URLs, concurrent writers (SKIP
LOCKED claims, per-key locks, idempotency races, the commit-ordered log), lost connections and
LISTEN/NOTIFY wake-ups.

Every test gets a schema of its own in the run's throwaway database (tests/conftest.py); the
behaviour every store shares is in test_store_contract.py.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from conftest import pg_log_ranges, pg_schema_url

import mainspring as ms
from mainspring.core.clock import ManualClock
from mainspring.core.model import Event, Policy, TaskOptions
from mainspring.core.reducer import State
from mainspring.engine import Batch, Engine
from mainspring.engine.submission import submit_one
from mainspring.store import open_store, pg_schema, pg_tx
from mainspring.store import postgres as pg
from mainspring.store.base import Conflict, Store, WriteTx
from mainspring.store.pg_url import DEFAULT_LOG_PARTITION
from mainspring.store.rows import row_run
from mainspring.store.sql import ready_query

from .helpers import in_processes, in_threads, req

try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - without the extra, pg_database skips (fails under CI)
    psycopg = None  # type: ignore[assignment]

pytestmark = pytest.mark.timeout(60)

Admin = Any  # a psycopg connection to the test database, autocommit


@pytest.fixture
def url(pg_database: str) -> str:
    """A store URL in a schema of its own (not created yet)."""
    return pg_schema_url(pg_database)


@pytest.fixture
def admin(pg_database: str) -> Iterator[Admin]:
    con = psycopg.connect(pg_database, autocommit=True)
    yield con
    con.close()


@pytest.fixture
def stores(url: str) -> Iterator[Callable[..., Store]]:
    """``stores(url=None, **open_store_kw)``: open a store (this test's schema by default);
    every store opened is closed at the end."""
    opened: list[Store] = []

    def make(u: str | None = None, **kw: Any) -> Store:
        s = open_store(u or url, **kw)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def schema_of(url: str) -> str:
    return pg.parse_url(url)[1]


def schemas(admin: Admin) -> set[str]:
    return {r[0] for r in admin.execute("SELECT nspname FROM pg_namespace")}


def relations(admin: Admin, schema: str) -> list[tuple[str, str, str]]:
    """(name, kind, xmin) of every table, index and sequence in ``schema``."""
    return admin.execute(
        "SELECT c.relname::text, c.relkind::text, c.xmin::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s ORDER BY 1",
        (schema,),
    ).fetchall()


def tables(admin: Admin, schema: str) -> set[str]:
    """The tables of ``schema``, partitioned ones as one (their partitions: ``partitions``)."""
    rows = admin.execute(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
        (schema,),
    )
    return {name for (name,) in rows}


def partitions(admin: Admin, schema: str, table: str) -> list[str]:
    """The partitions of ``table``, in the order of their ranges."""
    return [f"{table}_{lo}_{hi}" for lo, hi in pg_log_ranges(admin, f"{schema}.{table}")]


def fingerprint(admin: Admin, schema: str) -> dict[str, Any]:
    """Every relation of ``schema`` and every row with its xmin: any DDL, insert, update or
    delete changes it (an UPDATE to the same value too)."""
    rels = relations(admin, schema)
    rows = {
        name: admin.execute(
            sql.SQL("SELECT xmin::text, t::text FROM {}.{} t ORDER BY 2").format(
                sql.Identifier(schema), sql.Identifier(name)
            )
        ).fetchall()
        for name, kind, _ in rels
        if kind == "r"
    }
    return {"relations": rels, "rows": rows}


def meta(admin: Admin, schema: str) -> dict[str, str]:
    q = sql.SQL("SELECT key, value FROM {}.ms_meta").format(sql.Identifier(schema))
    return dict(admin.execute(q).fetchall())


def all_events(s: Store) -> list[Event]:
    with s.read() as tx:
        return list(tx.iter_all_events())


def terminate(admin: Admin, pid: int) -> None:
    """Kill a backend and wait until it is gone."""
    assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()[0]


# -- schema: install, reopen, migrate -------------------------------------------------------------
def test_first_open_creates_and_migrates_the_schema(
    url: str, admin: Admin, stores: Callable[..., Store]
) -> None:
    schema = schema_of(url)
    assert schema not in schemas(admin)
    s = stores()
    assert s.schema_version == pg_schema.SCHEMA_VERSION  # type: ignore[attr-defined]
    assert tables(admin, schema) == set(pg_schema.TABLES)
    # the log in partitions of DEFAULT_LOG_PARTITION events: the first and two ahead
    size = DEFAULT_LOG_PARTITION
    bounds = [(0, size), (size, 2 * size), (2 * size, 3 * size)]
    for table in ("ms_log", "ms_log_runs"):
        assert partitions(admin, schema, table) == [f"{table}_{lo}_{hi}" for lo, hi in bounds]
    found = meta(admin, schema)
    assert len(found.pop("store_id")) == 32 and found == {
        "app": "mainspring",
        "snapshot": "0",
        "schema_version": str(pg_schema.SCHEMA_VERSION),
    }
    q = sql.SQL("SELECT * FROM {}.{}")
    seq_row = admin.execute(q.format(sql.Identifier(schema), sql.Identifier("ms_seq"))).fetchall()
    assert seq_row == [(1, 0)]
    eng_row = admin.execute(q.format(sql.Identifier(schema), sql.Identifier("ms_engine")))
    assert eng_row.fetchall() == [(1, False)]
    # nothing leaked into the default schema
    assert not tables(admin, "public") & set(pg_schema.TABLES)
    Engine(s).submit(req())
    assert [e.seq for e in all_events(s)] == [1, 2, 3]


def test_reopening_a_current_schema_changes_nothing(
    url: str, admin: Admin, stores: Callable[..., Store]
) -> None:
    Engine(stores()).submit(req(1))
    before = fingerprint(admin, schema_of(url))
    for s in (
        stores(),
        stores(url + "&auto_migrate=false"),
        stores(url, migrate=True),
        stores(url, migrate=False),
    ):
        assert s.schema_version == pg_schema.SCHEMA_VERSION  # type: ignore[attr-defined]
        with s.read() as tx:
            assert tx.stats()["ready"] == 1
    assert fingerprint(admin, schema_of(url)) == before  # not even ms_meta was rewritten


@pytest.mark.parametrize("schema_exists", [False, True], ids=["no-schema", "empty-schema"])
def test_auto_migrate_false_refuses_a_new_schema_and_creates_nothing(
    url: str, admin: Admin, stores: Callable[..., Store], schema_exists: bool
) -> None:
    schema = schema_of(url)
    if schema_exists:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for attempt in (
        lambda: open_store(url + "&auto_migrate=false"),
        lambda: open_store(url + "&auto_migrate=0"),
        lambda: open_store(url, migrate=False),
    ):
        with pytest.raises(ms.StoreError, match="mainspring migrate"):
            attempt()
        assert (schema in schemas(admin)) is schema_exists
        assert relations(admin, schema) == []
    # migrate=True installs it whatever the URL says, and then auto_migrate=false opens it
    s = stores(url + "&auto_migrate=false", migrate=True)
    assert s.schema_version == pg_schema.SCHEMA_VERSION  # type: ignore[attr-defined]
    assert tables(admin, schema) == set(pg_schema.TABLES)
    Engine(stores(url + "&auto_migrate=false")).submit(req())


# -- schema: refusal --------------------------------------------------------------------------------
def foreign_table(admin: Admin, schema: str, url: str) -> None:
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    table = sql.SQL("{}.ms_runs").format(sql.Identifier(schema))
    admin.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(table))
    admin.execute(sql.SQL("INSERT INTO {} VALUES (1, 'theirs'), (2, 'also theirs')").format(table))


def foreign_meta(admin: Admin, schema: str, url: str) -> None:
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    table = sql.SQL("{}.ms_meta").format(sql.Identifier(schema))
    admin.execute(sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, value text)").format(table))
    admin.execute(
        sql.SQL("INSERT INTO {} VALUES ('app', 'somebody-else'), ('schema_version', '1')").format(
            table
        )
    )


def newer_schema(admin: Admin, schema: str, url: str) -> None:
    s = open_store(url)
    Engine(s).submit(req())
    s.close()
    admin.execute(
        sql.SQL("UPDATE {}.ms_meta SET value = %s WHERE key = 'schema_version'").format(
            sql.Identifier(schema)
        ),
        (str(pg_schema.SCHEMA_VERSION + 1),),
    )


@pytest.mark.parametrize(
    ("maker", "needle"),
    [
        (foreign_table, "not a mainspring store"),
        (foreign_meta, "not a mainspring store"),
        (newer_schema, "newer mainspring.*upgrade"),
    ],
    ids=["table-named-like-ours", "other-app", "newer-schema"],
)
def test_refuses_and_leaves_the_schema_untouched(
    url: str, admin: Admin, maker: Callable[[Admin, str, str], None], needle: str
) -> None:
    schema = schema_of(url)
    maker(admin, schema, url)
    before = fingerprint(admin, schema)
    for kw in ({}, {"migrate": True}):
        with pytest.raises(ms.StoreError, match=needle) as info:
            open_store(url, **kw)
        assert schema in str(info.value)  # the message names the schema
        assert fingerprint(admin, schema) == before  # not a row, not an index, not a lock


@pytest.mark.timeout(120)
def test_many_processes_open_a_new_schema_at_once(url: str, admin: Admin) -> None:
    n = 6
    results = in_processes(n, _open_and_submit, url)
    schema = schema_of(url)
    assert [v for v, _ in results] == [pg_schema.SCHEMA_VERSION] * n
    assert len({t for _, t in results}) == n  # each submitted its own task
    # installed once: every relation of the schema was created by the same transaction
    rels = relations(admin, schema)
    assert tables(admin, schema) == set(pg_schema.TABLES)
    assert len({xmin for _, _, xmin in rels}) == 1
    assert meta(admin, schema)["schema_version"] == str(pg_schema.SCHEMA_VERSION)
    s = open_store(url)
    try:
        events = all_events(s)
        assert [e.seq for e in events] == list(range(1, 3 * n + 1))
        assert Engine(s).verify() == []
    finally:
        s.close()


def _open_and_submit(barrier: Any, i: int, url: str) -> tuple[int, str]:
    barrier.wait(timeout=60)  # all open at the same moment
    s = open_store(url)
    try:
        return s.schema_version, Engine(s).submit(req(i)).task_id  # type: ignore[attr-defined]
    finally:
        s.close()


# -- URLs and connection errors ----------------------------------------------------------------------
def test_an_app_dropped_without_close_closes_its_pool_quietly(url: str) -> None:
    # left to psycopg_pool's __del__, the pool could be collected in one of its own
    # threads, which cannot join itself: "Exception ignored ... cannot join current thread"
    script = (
        "import gc, sys, time, mainspring as ms\n"
        "for _ in range(3):\n"
        "    a = ms.App(sys.argv[1])\n"
        "    print(dir(a))  # a moment of other work\n"
        "    del a  # while the pool's thread is still connecting\n"
        "    gc.collect()\n"
        "time.sleep(1)\n"
        "kept = ms.App(sys.argv[1])  # and one left open until the interpreter exits\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_parse_url() -> None:
    default = DEFAULT_LOG_PARTITION
    assert pg.parse_url("postgresql://u@h/db") == (
        "postgresql://u@h/db", "public", 8, True, default,
    )  # fmt: skip
    assert pg.parse_url(
        "postgres://u:pw@h:5433/db?schema=s_1&pool_size=3&auto_migrate=no"
        "&sslmode=disable&log_partition=1000&application_name=x"
    ) == ("postgresql://u:pw@h:5433/db?sslmode=disable&application_name=x", "s_1", 3, False, 1000)


@pytest.mark.parametrize(
    ("url", "conninfo", "libpq"),
    [
        ("postgresql:///jobs", "postgresql:///jobs", {"dbname": "jobs"}),  # the local socket
        ("postgres:///jobs", "postgresql:///jobs", {"dbname": "jobs"}),
        ("postgresql://", "postgresql://", {}),  # every default
        (
            "postgresql://postgres@/jobs",
            "postgresql://postgres@/jobs",
            {"user": "postgres", "dbname": "jobs"},
        ),
        (
            "postgresql:///jobs?host=/var/run/postgresql&schema=s&port=5433",
            "postgresql:///jobs?host=/var/run/postgresql&port=5433",
            {"dbname": "jobs", "host": "/var/run/postgresql", "port": "5433"},
        ),
        (
            "postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/jobs?pool_size=2",
            "postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/jobs",
            {"user": "postgres", "host": "/var/run/postgresql", "dbname": "jobs"},
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/test",
            "postgresql://postgres@127.0.0.1:5432/test",
            {"user": "postgres", "host": "127.0.0.1", "port": "5432", "dbname": "test"},
        ),
        (  # a password with @ : / % + and a space, percent-encoded, arrives decoded
            "postgres://u:p%40s%3As%2Fw%25o+r%20d@db.example:6432/app?auto_migrate=false",
            "postgresql://u:p%40s%3As%2Fw%25o+r%20d@db.example:6432/app",
            {"user": "u", "password": "p@s:s/w%o+r d", "host": "db.example", "port": "6432",
             "dbname": "app"},
        ),
        (  # libpq's own parameters pass through as written, in their order, around ours
            "postgresql://h1:5432,h2:5433/app?sslmode=disable&schema=s&options=-c%20a%3Db+c"
            "&pool_size=3&target_session_attrs=read-write&auto_migrate=no",
            "postgresql://h1:5432,h2:5433/app?sslmode=disable&options=-c%20a%3Db+c"
            "&target_session_attrs=read-write",
            {"host": "h1,h2", "port": "5432,5433", "dbname": "app", "sslmode": "disable",
             "options": "-c a=b+c", "target_session_attrs": "read-write"},
        ),
        (
            "postgresql://[::1]:5432/app?password=se%26cret",
            "postgresql://[::1]:5432/app?password=se%26cret",
            {"host": "::1", "port": "5432", "dbname": "app", "password": "se&cret"},
        ),
    ],
)  # fmt: skip
def test_parse_url_keeps_every_libpq_form(url: str, conninfo: str, libpq: dict[str, str]) -> None:
    """No server needed: what libpq gets, and what it makes of it."""
    got = pg.parse_url(url).conninfo
    assert got == conninfo
    assert psycopg.conninfo.conninfo_to_dict(got) == libpq


def test_parse_url_takes_out_mainspring_parameters() -> None:
    default = DEFAULT_LOG_PARTITION
    assert pg.parse_url("postgresql:///jobs") == (
        "postgresql:///jobs", "public", 8, True, default,
    )  # fmt: skip
    assert pg.parse_url("postgresql:///jobs?schema=s_1&pool_size=3&auto_migrate=0") == (
        "postgresql:///jobs", "s_1", 3, False, default,
    )  # fmt: skip
    assert pg.parse_url("postgresql://u@h/db?auto_migrate=YES&schema=a&schema=b")[1:] == (
        "b", 8, True, default,
    )  # fmt: skip
    with pytest.raises(ms.StoreError, match="not a PostgreSQL URL"):
        pg.parse_url("postgresql:/jobs")  # libpq wants the //


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql:///jobs?schema=s", "postgresql:///jobs?schema=s"),
        ("postgresql://u:secret@/jobs", "postgresql://u:***@/jobs"),
        ("postgres://u:se%40cr@et@h:1/db", "postgres://u:***@h:1/db"),
        ("postgresql://u@h/db?sslmode=disable&password=secret&schema=s",
         "postgresql://u@h/db?sslmode=disable&password=***&schema=s"),
    ],
)  # fmt: skip
def test_display_url_hides_passwords(url: str, shown: str) -> None:
    assert pg._redact(url) == shown


def test_a_url_libpq_refuses_is_a_store_error_without_the_password() -> None:
    for url in ("postgresql://u:secret@127.0.0.1:1/x?bogus=1", "postgresql://u:se%zzcret@h/x"):
        with pytest.raises(ms.StoreError, match="invalid PostgreSQL URL") as info:
            open_store(url)
        assert "secret" not in str(info.value) and "se%zz" not in str(info.value)


def _socket_dir(pg_database: str) -> tuple[str, str]:
    """The directory of the test server's Unix socket and its port (skips without one)."""
    port = psycopg.conninfo.conninfo_to_dict(pg_database).get("port") or "5432"
    for d in ("/var/run/postgresql", "/run/postgresql", "/tmp"):
        if os.path.exists(f"{d}/.s.PGSQL.{port}"):
            try:  # the same server? (the test database is there)
                psycopg.connect(
                    host=d, port=port, user="postgres", dbname=urlsplit(pg_database).path[1:]
                ).close()
            except psycopg.Error:
                continue
            return d, str(port)
    pytest.skip(f"no Unix socket of the test server (port {port})")


@pytest.mark.parametrize(
    "form",
    [
        "postgresql:///{db}",  # as the OS user: PGUSER says postgres
        "postgresql:///{db}?host={dir}&port={port}&user=postgres",
        "postgresql://postgres@/{db}?pool_size=2&application_name=ms_socket",
        "postgres://postgres@{qdir}:{port}/{db}",
    ],
)
def test_a_store_opens_through_the_local_socket(
    form: str, pg_database: str, stores: Callable[..., Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, port = _socket_dir(pg_database)
    monkeypatch.setenv("PGHOST", sock)  # what an empty host means: the default socket
    monkeypatch.setenv("PGPORT", port)
    monkeypatch.setenv("PGUSER", "postgres")
    db = urlsplit(pg_database).path[1:]
    url = pg_schema_url(form.format(db=db, dir=sock, qdir=quote(sock, safe=""), port=port))
    s = stores(url)
    assert s.display_url == url
    sub = Engine(s).submit(req(1, idempotency_key="k"))
    with s.read() as tx:
        con = tx.con  # type: ignore[attr-defined]
        assert con.info.host == sock  # a socket directory, not a TCP host
        assert con.execute("SELECT inet_server_addr()").fetchone()[0] is None
        assert con.execute("SELECT current_user, current_schema").fetchone() == (
            "postgres", schema_of(url),
        )  # fmt: skip
        assert tx.task_by_idempotency("job", "k").task_id == sub.task_id  # type: ignore[union-attr]
    with ms.App(url) as app, pytest.warns(UserWarning):  # an App the same way (by name)
        assert app.submit("job", [1], idempotency_key="k").run_id == sub.run_ids[0]


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("pool_size=0", "pool_size"),
        ("pool_size=-1", "pool_size"),
        ("pool_size=many", "pool_size"),
        ("schema=bad-name;drop", "schema"),
        ("schema=", "schema"),
        ("schema=" + "s" * 64, "schema"),
        ("auto_migrate=maybe", "auto_migrate"),
        ("log_partition=0", "log_partition"),
        ("log_partition=1e5", "log_partition"),
    ],
)
def test_invalid_url_parameters_are_refused_before_touching_anything(
    pg_database: str, admin: Admin, query: str, needle: str
) -> None:
    before = schemas(admin)
    with pytest.raises(ms.StoreError, match=needle):
        open_store(f"{pg_database}?{query}")
    assert schemas(admin) == before


def no_such_database(pg_database: str) -> str:
    """The test server, a database that does not exist, and a password in the URL."""
    p = urlsplit(pg_database)
    netloc = f"{p.username}:secret@{p.hostname}:{p.port or 5432}"
    return urlunsplit((p.scheme, netloc, "/no_such_database_here", "schema=s", ""))


@pytest.mark.parametrize(
    "make_url",
    [
        lambda _: "postgresql://u:secret@127.0.0.1:1/x",  # nothing listens there
        lambda _: "postgres://u:secret@127.0.0.1:1/x?schema=s&pool_size=2&connect_timeout=3",
        no_such_database,  # the server says no
    ],
    ids=["refused", "refused-with-params", "no-database"],
)
def test_unreachable_server_fails_fast_without_showing_the_password(
    make_url: Callable[[str], str], pg_database: str
) -> None:
    t0 = time.monotonic()
    with pytest.raises(ms.StoreError) as info:
        open_store(make_url(pg_database))
    assert time.monotonic() - t0 < 5
    shown = "".join(traceback.format_exception(info.value))  # what a log would show
    assert "secret" not in shown
    assert ":***@" in str(info.value)  # it still says which server


def test_password_in_the_query_is_not_shown(pg_database: str) -> None:
    with pytest.raises(ms.StoreError) as info:
        open_store("postgresql://u@127.0.0.1:1/x?password=secret")
    assert "secret" not in str(info.value)


def test_libpq_options_in_the_url_are_kept(url: str, stores: Callable[..., Store]) -> None:
    s = stores(url + "&options=-c%20statement_timeout%3D1234&application_name=ms_test")
    with s.read() as tx:
        con = tx.con  # type: ignore[attr-defined]
        assert con.execute("SHOW application_name").fetchone()[0] == "ms_test"
        assert con.execute("SHOW statement_timeout").fetchone()[0] == "1234ms"


def test_mixed_case_schema_name_is_refused_clearly(pg_database: str, admin: Admin) -> None:
    url = pg_schema_url(pg_database, prefix="MixedCase")
    name = url.rsplit("schema=", 1)[1]
    with pytest.raises(ms.StoreError, match="lower-case"):
        open_store(url)
    assert name not in schemas(admin) and name.lower() not in schemas(admin)


# -- concurrent writers: claims skip what another transaction holds ----------------------------------
def never_wait(tx: WriteTx) -> None:
    """Make a lock wait in this transaction fail at once (LockNotAvailable, a Conflict) rather
    than hang the test: the second writer of these tests runs in the first one's thread."""
    tx.paused()  # the transaction is open on the server now
    tx.con.execute("SET LOCAL lock_timeout = '1s'")  # type: ignore[attr-defined]


Claim = Callable[[WriteTx, float, int], list[str]]


def setup_ready(eng: Engine, clock: ManualClock, n: int) -> tuple[list[str], Claim]:
    ids = [eng.submit(req(i)).run_ids[0] for i in range(n)]
    return ids, lambda tx, now, k: [r.run_id for r in tx.ready_candidates(now, None, ["job"], k)]


def setup_due(eng: Engine, clock: ManualClock, n: int) -> tuple[list[str], Claim]:
    later = Policy(start_at=clock.now() + 10)
    ids = [eng.submit(req(i, policy=later)).run_ids[0] for i in range(n)]
    clock.advance(20)
    return ids, lambda tx, now, k: tx.due_run_ids(now, k)


def setup_expired(eng: Engine, clock: ManualClock, n: int) -> tuple[list[str], Claim]:
    ids = [eng.submit(req(i)).run_ids[0] for i in range(n)]
    assert len(eng.cycle("w-gone", ["job"], None, [], n, 30.0).leased) == n
    clock.advance(60)
    return ids, lambda tx, now, k: tx.expired_lease_run_ids(now, k)


def setup_cron(eng: Engine, clock: ManualClock, n: int) -> tuple[list[str], Claim]:
    every_minute = Policy(kind="cron", cron="0 * * * * *")
    ids = [eng.submit(req(i, policy=every_minute)).task_id for i in range(n)]
    clock.advance(120)
    return ids, lambda tx, now, k: tx.cron_due_task_ids(now, k)


@pytest.mark.parametrize(
    "setup",
    [setup_ready, setup_due, setup_expired, setup_cron],
    ids=["ready_candidates", "due_run_ids", "expired_lease_run_ids", "cron_due_task_ids"],
)
def test_two_writers_never_claim_the_same_row(
    stores: Callable[..., Store], setup: Callable[..., tuple[list[str], Claim]]
) -> None:
    clock = ManualClock()
    s1, s2 = stores(), stores()
    ids, claim = setup(Engine(s1, clock), clock, 6)
    now = clock.now()
    with s1.write() as t1:
        first = claim(t1, now, 2)
        assert len(first) == 2
        with s2.write() as t2:  # a second writer while the first is still open
            never_wait(t2)
            second = claim(t2, now, 100)
        assert set(first) | set(second) == set(ids)  # it skips exactly the claimed rows
        assert not set(first) & set(second)
    with s2.write() as t2:  # the claims end with the transaction
        assert set(claim(t2, now, 100)) == set(ids)


@pytest.mark.timeout(90)
def test_racing_engines_lease_expire_and_derive_each_row_once(
    url: str, stores: Callable[..., Store]
) -> None:
    clock = ManualClock()
    n_threads, n_runs = 4, 60
    engines = [Engine(stores(), clock) for _ in range(n_threads)]
    eng = engines[0]
    ids = {eng.submit(req(i)).run_ids[0] for i in range(n_runs)}
    cron_tasks = [
        eng.submit(req(i, policy=Policy(kind="cron", cron="0 * * * * *"))).task_id
        for i in range(10)
    ]

    def lease(i: int) -> list[str]:
        got: list[str] = []
        while True:
            res = engines[i].cycle(f"w{i}", ["job"], None, [], 3, 30.0, housekeeping=False)
            if not res.leased:
                return got
            got += [lz.run_id for lz in res.leased]

    leased = [r for got in in_threads(n_threads, lease) for r in got]
    assert Counter(leased).most_common(1)[0][1] == 1  # nobody leased a run twice
    assert ids <= set(leased)  # and all were leased (plus the cron runs)

    clock.advance(150)  # every lease expires; every cron task is due

    def housekeeping(i: int) -> int:
        total = 0
        while (n := engines[i].housekeeping()) > 0:
            total += n
        return total

    in_threads(n_threads, housekeeping)
    events = all_events(eng.store)
    expired = Counter(e.run_id for e in events if e.type == "lease.expired")
    assert set(expired) == set(leased) and set(expired.values()) == {1}
    with eng.store.read() as tx:
        per_task = [[r.scheduled_at for r in tx.query_runs(None, None, 100, t)] for t in cron_tasks]
    assert all(len(set(times)) == len(times) for times in per_task)  # no occurrence twice
    assert len({len(times) for times in per_task}) == 1  # each task derived the same
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert eng.verify() == []


def test_a_rate_account_being_decided_is_passed_over_not_waited_for(
    stores: Callable[..., Store],
) -> None:
    """Turns that waited for each other's rate accounts, taken in their own orders,
    deadlocked (a second's stall each, under keyed limits and several workers)."""
    s1, s2 = stores(), stores()
    with s1.write() as t1:
        assert t1.rate_accounts_free(["job a", "job b"]) == {"job a", "job b"}
        with s2.write() as t2:
            never_wait(t2)
            assert t2.rate_accounts_free(["job b", "job c"]) == {"job c"}
            assert t2.key_holders(["job a"]) == {"job a": set()}  # (keys: another lock)
    with s2.write() as t2:
        assert t2.rate_accounts_free(["job a", "job b"]) == {"job a", "job b"}


def test_a_key_being_decided_is_reported_busy_until_the_commit(
    stores: Callable[..., Store],
) -> None:
    clock = ManualClock()
    s1, s2 = stores(), stores()
    eng = Engine(s1, clock)
    holder = eng.submit(req(0, concurrency_key="k")).run_ids[0]
    assert len(eng.cycle("w0", ["job"], None, [], 1, 30.0).leased) == 1
    with s1.write() as t1:
        assert t1.key_holders(["k"]) == {"k": {holder}}
        with s2.write() as t2:
            never_wait(t2)
            assert t2.key_holders(["k", "free"]) == {"k": None, "free": set()}
            assert t2.key_holders([]) == {}
        with s2.read() as r:  # a reader decides nothing and waits for nothing
            assert r.key_holders(["k"]) == {"k": {holder}}
    with s2.write() as t2:
        assert t2.key_holders(["k"]) == {"k": {holder}}

    # a real decision: an engine leases a run of key "k2" and stays in its transaction
    nxt = eng.submit(req(1, concurrency_key="k2")).run_ids[0]
    decided, go = threading.Event(), threading.Event()

    def lease_and_wait(tx: WriteTx, b: Batch) -> int:
        n = len(eng._lease(tx, b, "w1", ["job"], None, 1, 30.0))
        decided.set()
        assert go.wait(10)
        return n

    t = threading.Thread(target=lambda: eng.transact(lease_and_wait))
    t.start()
    try:
        assert decided.wait(10)
        with s2.write() as t2:
            never_wait(t2)
            assert t2.key_holders(["k2"]) == {"k2": None}
    finally:
        go.set()
        t.join(10)
    with s2.write() as t2:
        assert t2.key_holders(["k2"]) == {"k2": {nxt}}


# -- idempotent submission raced ------------------------------------------------------------------------
def counting_conflicts(s: Store) -> list[Conflict]:
    """Record every Conflict the store's write transactions raise."""
    seen: list[Conflict] = []
    write = s.write

    @contextmanager
    def counted() -> Iterator[WriteTx]:
        try:
            with write() as tx:
                yield tx
        except Conflict as exc:
            seen.append(exc)
            raise

    s.write = counted  # type: ignore[method-assign]
    return seen


def test_a_duplicate_key_insert_conflicts_and_the_loser_gets_the_winners_task(
    stores: Callable[..., Store], admin: Admin
) -> None:
    """Deterministic: B inserts the same key while A's insert is uncommitted, blocks on the
    unique index, gets a unique violation when A commits, and its retry finds A's task."""
    sa, sb = stores(), stores()
    ea, eb = Engine(sa), Engine(sb)
    conflicts = counting_conflicts(sb)
    written, go = threading.Event(), threading.Event()
    box: dict[str, Any] = {}

    def a_body(tx: WriteTx, b: Batch) -> str:
        sub = submit_one(tx, b, req(1, idempotency_key="same"), {})
        b.flush(tx)
        tx.paused()  # a read: the deferred INSERT goes out before it
        written.set()
        assert go.wait(10)
        return sub.task_id

    ta = threading.Thread(target=lambda: box.update(a=ea.transact(a_body)[0]))
    ta.start()
    assert written.wait(10)
    tb = threading.Thread(target=lambda: box.update(b=eb.submit(req(1, idempotency_key="same"))))
    tb.start()
    try:
        deadline = time.monotonic() + 10
        while not admin.execute(  # B waits on A's index entry
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "B never blocked on A's insert"
            time.sleep(0.01)
    finally:
        go.set()
        ta.join(10)
        tb.join(10)
    assert box["b"].task_id == box["a"] and box["b"].replayed
    assert len(conflicts) >= 1 and "conflict" in str(conflicts[0])
    with sa.read() as tx:
        assert sum(tx.stats().values()) == 1
    assert ea.verify() == []


def test_many_threads_submit_one_key(
    url: str, stores: Callable[..., Store], caplog: pytest.LogCaptureFixture
) -> None:
    n = 8
    engines = [Engine(stores()) for _ in range(n)]

    def same_args(i: int) -> list[Any]:
        return [engines[i].submit(req("x", idempotency_key=f"k{j}")) for j in range(8)]

    results = in_threads(n, same_args)
    for j in range(8):
        subs = [results[i][j] for i in range(n)]
        assert len({s.task_id for s in subs}) == 1  # everyone got the one task
        assert len({tuple(s.run_ids) for s in subs}) == 1
        assert sum(not s.replayed for s in subs) == 1  # exactly one created it

    def other_args(i: int) -> Any:
        try:
            return engines[i].submit(req(i, idempotency_key="contested"))
        except ms.IdempotencyConflict as exc:
            return exc

    outcomes = in_threads(n, other_args)
    winners = [o for o in outcomes if not isinstance(o, ms.IdempotencyConflict)]
    assert len(winners) == 1
    with engines[0].store.read() as tx:
        task = tx.task_by_idempotency("job", "contested")
        assert task is not None and task.task_id == winners[0].task_id
        assert task.args == [outcomes.index(winners[0])]  # the winner's arguments
        assert sum(tx.stats().values()) == 8 + 1
    assert engines[0].verify() == []
    # the losers' aborted pipelines are conflicts handled above: psycopg's warning about
    # each ("error ignored terminating ... pipeline aborted") is not shown
    assert not [r.getMessage() for r in caplog.records if "error ignored" in r.getMessage()]


def test_lost_key_races_leave_the_connection_and_its_prepared_statements_usable(
    url: str, stores: Callable[..., Store]
) -> None:
    """Deterministic, on one connection: a submitter whose read missed the winner's key
    (as if it had not committed yet) has its INSERT refused by the idempotency index inside
    the final pipeline, and everything after it in that pipeline is skipped. psycopg
    prepares a statement on its sixth use; when that use fell in the skipped part, it
    believed the statement prepared though the server never saw it, and every later write
    on the connection failed (``prepared statement "_pg3_2" does not exist``)."""
    s = stores(url + "&pool_size=1")  # one connection: every statement counts up on it
    eng = Engine(s)
    winner = eng.submit(req("x", idempotency_key="k"))
    conflicts = 0
    for i in range(12):
        b = Batch(State(), time.time())
        try:
            with s.write() as tx:
                tx.task_by_idempotency = lambda name, key: None  # type: ignore[method-assign]
                submit_one(tx, b, req("x", idempotency_key="k"), {})
                b.flush(tx)
                tx.wake_on_commit()
        except Conflict as exc:
            assert "duplicate key" in str(exc)
            conflicts += 1
        again = eng.submit(req("x", idempotency_key="k"))  # the engine's retry
        assert again.task_id == winner.task_id and again.replayed
        eng.submit(req(i))  # a write that inserts: every statement of the final pipeline
    assert conflicts == 12
    # statements are still prepared after a few uses (the hot path runs generic plans)
    for i in range(8):
        eng.submit(req(f"after{i}"))
    with s.read() as tx:
        con = tx.con  # type: ignore[attr-defined]
        names = [r[0] for r in con.execute("SELECT name FROM pg_prepared_statements")]
    assert any(n.startswith("_pg3_") for n in names), names
    with s.read() as tx:
        assert tx.task_by_idempotency("job", "k") is not None
        assert sum(tx.stats().values()) == 1 + 12 + 8
    assert eng.verify() == []


# -- the log's seq follows commit order ----------------------------------------------------------------
def test_a_follower_sees_every_event_once_while_writers_commit(
    url: str, stores: Callable[..., Store]
) -> None:
    writers, per_writer = 6, 25
    engines = [Engine(stores()) for _ in range(writers)]
    reader = stores()
    done = threading.Event()
    seen: list[Event] = []

    def follow() -> None:
        last = 0
        while True:
            finished = done.is_set()  # read once more after the writers are done
            with reader.read() as tx:
                page = tx.events(last, None, 1000)
            seen.extend(page)
            if page:
                last = page[-1].seq
            elif finished:
                return

    def write(i: int) -> None:
        for k in range(per_writer):
            # every third submission races the other writers for a shared key
            key = f"shared-{k}" if k % 3 == 0 else None
            engines[i].submit(req("same" if key else [i, k], idempotency_key=key))

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        in_threads(writers, write)
    finally:
        done.set()
        follower.join(30)
    everything = all_events(reader)
    assert [e.seq for e in seen] == [e.seq for e in everything]  # none skipped, none twice
    assert [e.event_id for e in seen] == [e.event_id for e in everything]
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))  # no gap
    created = sum(1 for e in everything if e.type == "task.created")
    assert created == writers * per_writer - (writers - 1) * len(range(0, per_writer, 3))
    assert Engine(reader).verify() == []


# -- lost connections -------------------------------------------------------------------------------------
def test_a_write_whose_connection_is_killed_conflicts_and_writes_nothing(
    url: str, admin: Admin, stores: Callable[..., Store]
) -> None:
    s = stores(url + "&pool_size=1")  # the replacement must come from the pool
    eng = Engine(s)
    eng.submit(req(0))
    before = all_events(s)
    with pytest.raises(Conflict, match="lost"), s.write() as tx:
        b = Batch(State(), eng.clock.now())
        submit_one(tx, b, req(1), {})
        b.flush(tx)  # its rows are written into the transaction ...
        terminate(admin, tx.con.info.backend_pid)  # type: ignore[attr-defined]
        submit_one(tx, b, req(2), {})
        b.flush(tx)  # ... and the next statement finds the connection gone
    assert all_events(s) == before
    with s.read() as tx:
        assert sum(tx.stats().values()) == 1
    for i in range(3, 6):  # the store keeps working on a new connection
        eng.submit(req(i))
    events = all_events(s)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert eng.verify() == []


def test_the_engine_reruns_a_command_whose_connection_was_killed(
    url: str, admin: Admin, stores: Callable[..., Store]
) -> None:
    s = stores(url + "&pool_size=1")
    eng = Engine(s)
    pids: list[int] = []

    def body(tx: WriteTx, b: Batch) -> str:
        sub = submit_one(tx, b, req(len(pids)), {})
        b.flush(tx)
        pids.append(tx.con.info.backend_pid)  # type: ignore[attr-defined]
        if len(pids) == 1:
            terminate(admin, pids[0])
            tx.stats()  # fails: Conflict, and transact runs the command again
        return sub.task_id

    task_id = eng.transact(body)[0]
    assert len(pids) == 2 and pids[0] != pids[1]
    with s.read() as tx:
        task = tx.get_task(task_id)
        assert task is not None and task.args == [1]
        assert sum(tx.stats().values()) == 1
    assert [e.seq for e in all_events(s)] == [1, 2, 3]


def test_a_connection_killed_before_the_commit_writes_nothing(
    url: str, admin: Admin, stores: Callable[..., Store]
) -> None:
    """Killed after the body's last statement: the store may report a Conflict only if the
    COMMIT was never sent (the engine then runs the command again); once it may have been
    sent, the outcome is unknown and it must say so instead."""
    s = stores(url + "&pool_size=1")
    eng = Engine(s)
    with pytest.raises(ms.StoreError) as info, s.write() as tx:
        b = Batch(State(), eng.clock.now())
        submit_one(tx, b, req(1), {})
        b.flush(tx)
        terminate(admin, tx.con.info.backend_pid)  # type: ignore[attr-defined]
    if not isinstance(info.value, Conflict):
        assert "may or may not" in str(info.value)
    assert all_events(s) == []
    with pytest.raises(ms.StoreError), s.read() as tx:  # a read loses its connection
        terminate(admin, tx.con.info.backend_pid)  # type: ignore[attr-defined]
        tx.stats()
    eng.submit(req(2))  # and the store still works
    assert [e.seq for e in all_events(s)] == [1, 2, 3]


def test_reads_survive_idle_connections_dropped_by_the_server(
    url: str, admin: Admin, stores: Callable[..., Store]
) -> None:
    s = stores(url + "&pool_size=2")
    Engine(s).submit(req())
    with s.read(), s.read():
        pass  # two connections in the pool
    admin.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND query NOT LIKE 'LISTEN%'"
    )
    for _ in range(3):
        with s.read() as tx:
            assert tx.stats()["ready"] == 1


# -- wake-ups: LISTEN/NOTIFY ----------------------------------------------------------------------------
def listener_pids(admin: Admin, s: Store) -> list[int]:
    return [
        r[0]
        for r in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
            (f'LISTEN "{s.channel}"',),  # type: ignore[attr-defined]
        )
    ]


def test_the_waiter_wakes_on_another_stores_notify_and_only_then(
    pg_database: str, stores: Callable[..., Store]
) -> None:
    s1, s2 = stores(), stores()
    w = s1.waiter()
    try:
        assert w.wait(0) is False
        assert w.wait(0.2) is False
        s2.notify()
        t0 = time.monotonic()
        assert w.wait(2.0) is True
        assert time.monotonic() - t0 < 1.0
        assert w.wait(0.2) is False  # the wake-up was consumed
        s2.notify()
        s2.notify()
        time.sleep(0.1)
        assert w.wait(1.0) is True  # several notifications, one wake-up
        assert w.wait(0.1) is False
        s2.notify()  # the worker selects on fileno() before it calls wait(0)
        ready, _, _ = select.select([w.fileno()], [], [], 2.0)
        assert ready and w.wait(0) is True
        stores(pg_schema_url(pg_database)).notify()  # another schema's commit
        assert w.wait(0.3) is False
        Engine(s2).submit(req())  # a command that makes work ready notifies
        assert w.wait(2.0) is True
    finally:
        w.close()


def test_the_waiter_reconnects_after_its_connection_is_killed(
    admin: Admin, stores: Callable[..., Store]
) -> None:
    s1, s2 = stores(), stores()
    w = s1.waiter()
    try:
        (pid,) = listener_pids(admin, s1)
        terminate(admin, pid)
        t0 = time.monotonic()
        assert w.wait(5.0) is True  # back, and something may have been missed: look
        assert time.monotonic() - t0 < 2.0
        (new_pid,) = listener_pids(admin, s1)
        assert new_pid != pid
        assert w.wait(0.2) is False
        s2.notify()
        assert w.wait(2.0) is True
        # killed while a wait is under way: within moments it is back and wakes again
        (pid,) = listener_pids(admin, s1)
        threading.Timer(0.2, terminate, (admin, pid)).start()
        deadline = time.monotonic() + 3.0
        while not w.wait(max(0.0, deadline - time.monotonic())):
            assert time.monotonic() < deadline, "the waiter did not come back"
        (new_pid,) = listener_pids(admin, s1)
        assert new_pid != pid
        s2.notify()
        assert w.wait(2.0) is True
    finally:
        w.close()


def test_a_wait_under_way_reports_the_reconnection(
    admin: Admin, stores: Callable[..., Store]
) -> None:
    s1 = stores()
    w = s1.waiter()
    try:
        (pid,) = listener_pids(admin, s1)
        killer = threading.Timer(0.2, terminate, (admin, pid))
        killer.start()
        woke = w.wait(3.0)
        killer.join()
        assert woke is True
    finally:
        w.close()


def test_a_long_schema_name_still_wakes_waiters(pg_database: str) -> None:
    url = pg_schema_url(pg_database, prefix="long")
    url += "x" * (63 - len(schema_of(url)))
    assert len(schema_of(url)) == 63
    s1, s2 = open_store(url), open_store(url)
    w = s1.waiter()
    try:
        s2.notify()
        assert w.wait(2.0) is True
    finally:
        w.close()
        s1.close()
        s2.close()


# -- engine over SKIP LOCKED -------------------------------------------------------------------------------
def test_lease_paging_while_another_writer_unlocks_a_row(stores: Callable[..., Store]) -> None:
    clock = ManualClock()
    sa, sb = stores(), stores()
    eng = Engine(sa, clock)

    def sub(priority: int, key: str | None = None, i: int = 0) -> str:
        opts = TaskOptions(priority=priority)
        return eng.submit(req(i, options=opts, concurrency_key=key)).run_ids[0]

    sub(9, "k")
    assert len(eng.cycle("w0", ["job"], None, [], 1, 30.0).leased) == 1  # key k is now full
    top = sub(10)  # B will hold this one
    for i in range(7):
        sub(5, "k", i)  # left behind by the key: page 1 is short of runs
    for i in range(5):
        sub(0, None, i)
    b_cm = sb.write()
    tb = b_cm.__enter__()
    assert [r.run_id for r in tb.ready_candidates(clock.now(), None, ["job"], 1)] == [top]

    write = sa.write

    @contextmanager
    def b_commits_after_the_first_page() -> Iterator[WriteTx]:
        with write() as tx:
            real = tx.ready_candidates

            def candidates(*a: Any, **kw: Any) -> list[Any]:
                out = real(*a, **kw)
                if not b_cm_done:
                    b_cm_done.append(b_cm.__exit__(None, None, None))
                return out

            tx.ready_candidates = candidates  # type: ignore[method-assign]
            yield tx

    b_cm_done: list[Any] = []
    sa.write = b_commits_after_the_first_page  # type: ignore[method-assign]
    res = eng.cycle("wA", ["job"], None, [], 8, 30.0)
    leased = [lz.run_id for lz in res.leased]
    assert len(leased) == len(set(leased))


# -- plans ------------------------------------------------------------------------------------------
def test_the_run_update_finds_its_rows_by_key_on_a_table_of_short_rows(
    url: str, stores: Callable[..., Store], admin: Admin
) -> None:
    """Regression: joined to a recordset of unknown size (the planner assumes 100 rows), the
    UPDATE of a turn's runs scanned the whole table once rows got short (5 ms at 10,000)."""
    s = stores()
    Engine(s).submit_many([req(i) for i in range(3000)])
    schema = schema_of(url)
    admin.execute(sql.SQL("ANALYZE {}.ms_runs").format(sql.Identifier(schema)))
    with admin.transaction():
        admin.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
        rows = admin.execute(f"SELECT {pg_tx.DIALECT.run_cols} FROM ms_runs LIMIT 8").fetchall()
        runs = [row_run(r) for r in rows]
        plan = "\n".join(
            r[0]
            for r in admin.execute(
                "EXPLAIN " + pg_tx._UPDATE_RUNS, (pg_tx._changes_json(runs), len(runs))
            )
        )
    assert "Index Scan using ms_runs_pkey" in plan, plan
    assert "Seq Scan on ms_runs" not in plan, plan


def test_write_transactions_run_generic_plans_that_use_the_indexes(
    url: str, stores: Callable[..., Store], admin: Admin
) -> None:
    """A worker's write transaction runs generic plans (re-planning at every execution cost
    the server a third of a turn): the claim and the run UPDATE must still walk the indexes
    under the settings the store gives a write transaction, whatever the parameters."""
    s = stores()
    Engine(s).submit_many([req(i) for i in range(3000)])
    schema = schema_of(url)
    admin.execute(sql.SQL("ANALYZE {}.ms_runs").format(sql.Identifier(schema)))

    def generic_plan(query: str, params: tuple[Any, ...]) -> str:
        numbered = query
        for n in range(1, query.count("%s") + 1):
            numbered = numbered.replace("%s", f"${n}", 1)
        admin.execute("PREPARE ms_plan_check AS " + numbered)  # type: ignore[arg-type]
        try:
            values = ", ".join(admin.execute("SELECT quote_nullable(%s)", (p,)).fetchone()[0]
                               for p in params)  # fmt: skip
            rows = admin.execute(f"EXPLAIN EXECUTE ms_plan_check({values})").fetchall()  # type: ignore[arg-type]
        finally:
            admin.execute("DEALLOCATE ms_plan_check")
        return "\n".join(r[0] for r in rows)

    with admin.transaction():
        admin.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
        for statement in pg._BEGIN_WRITE[1:]:
            admin.execute(statement)  # type: ignore[arg-type]
        rows = admin.execute(f"SELECT {pg_tx.DIALECT.run_cols} FROM ms_runs LIMIT 8").fetchall()
        runs = [row_run(r) for r in rows]
        query, _ = ready_query(pg_tx.DIALECT, ["job"], None, " FOR UPDATE OF r SKIP LOCKED")
        claim = generic_plan(query, ("{job}", 8, 0))
        update = generic_plan(pg_tx._UPDATE_RUNS, (pg_tx._changes_json(runs), len(runs)))
    assert "Custom" not in claim and "Seq Scan on ms_runs" not in claim, claim
    assert "ms_runs_ready" in claim and "Sort" not in claim, claim
    assert "Index Scan using ms_runs_pkey" in update and "Seq Scan on ms_runs" not in update, update


def test_opening_without_create_refuses_a_schema_with_no_store(url: str, admin: Admin) -> None:
    """What read-only commands open: nothing is created where no store is."""
    with pytest.raises(ms.StoreError, match="no mainspring store"):
        ms.App(url).open(create=False)
    assert tables(admin, schema_of(url)) == set()
    app = ms.App(url).open()  # created by a command that may write ...
    app.close()
    with ms.App(url).open(create=False) as again:  # ... and then opened without create
        assert again.stats()["ready"] == 0


def test_ping_gives_up_after_its_timeout_when_no_connection_can_be_had(url: str) -> None:
    """A readiness probe (``/readyz``) learns within its timeout that the store cannot be
    read, not after the pool's ten seconds: here every pooled connection is held."""
    s = open_store(url + "&pool_size=2" if "?" in url else url + "?pool_size=2")
    try:
        s.ping(5.0)  # answers while a connection can be had
        assert isinstance(s, pg.PostgresStore)
        held = [s.pool.getconn(), s.pool.getconn()]
        began = time.monotonic()
        with pytest.raises(ms.StoreError, match="no connection to"):
            s.ping(0.5)
        assert time.monotonic() - began < 3.0
        for con in held:
            s.pool.putconn(con)
        s.ping(5.0)
    finally:
        s.close()
