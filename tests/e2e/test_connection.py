"""``connection=``: submitting and publishing inside the caller's own transaction, on both
stores (docs/transactions.md). The run or message exists only if the caller commits, it
commits or rolls back together with the caller's own rows, workers wake after that commit
and not otherwise, and a connection that does not reach the store, or bad input, changes
nothing: not in the store, not in the caller's transaction."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PG_SERVER

import mainspring as ms
from mainspring.worker import timers as timers_module

from .helpers import wait_for

Make = Callable[..., ms.App]


class Db:
    """The application's side: connections of its own to the store's database (a SQLite
    file; a PostgreSQL database, the application's tables in a schema of their own, which
    its connections have on their ``search_path``), and its table ``orders``."""

    def __init__(self, store_url: str, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.p = "?" if kind == "sqlite" else "%s"
        self._open: list[Any] = []
        self._cleanup: list[Callable[[], None]] = []
        if kind == "sqlite":
            self.path = store_url[len("sqlite:///") :]
        else:
            from mainspring.store.pg_url import parse_url

            self.conninfo, self.store_schema = parse_url(store_url)[:2]
            self.schema = f"app_{uuid.uuid4().hex[:10]}"
        self.tmp_path = tmp_path

    def setup(self) -> None:
        """The application's table (once the store exists)."""
        con = self.connect(autocommit=True) if self.kind == "postgres" else self.connect()
        self.create_orders(con)
        con.close()

    def create_orders(self, con: Any) -> None:
        if self.kind == "postgres":
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        con.execute("CREATE TABLE orders (id integer PRIMARY KEY, note text)")
        if self.kind == "sqlite":
            con.commit()

    def connect(self, **kw: Any) -> Any:
        if self.kind == "sqlite":
            con: Any = sqlite3.connect(self.path, **kw)
        else:
            import psycopg

            con = psycopg.connect(self.conninfo, options=f"-c search_path={self.schema}", **kw)
        self._open.append(con)
        return con

    def insert(self, con: Any, order_id: int, note: str = "x") -> None:
        con.execute(f"INSERT INTO orders (id, note) VALUES ({self.p}, {self.p})", (order_id, note))

    def orders(self) -> list[int]:
        """The orders committed, read on a fresh connection."""
        con = self.connect()
        try:
            return sorted(r[0] for r in con.execute("SELECT id FROM orders").fetchall())
        finally:
            con.close()

    def elsewhere(self) -> Any:
        """A connection to another database (another file; PostgreSQL: the server's own
        database, where the store's schema does not exist), with an ``orders`` table."""
        if self.kind == "sqlite":
            con: Any = sqlite3.connect(self.tmp_path / "other.db")
            self._open.append(con)
            self.create_orders(con)
            return con
        import psycopg

        schema = f"app_{uuid.uuid4().hex[:10]}"
        admin = psycopg.connect(PG_SERVER, autocommit=True)
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"CREATE TABLE {schema}.orders (id integer PRIMARY KEY, note text)")
        self._cleanup.append(lambda: _drop(admin, schema))
        con = psycopg.connect(PG_SERVER, options=f"-c search_path={schema}")
        self._open.append(con)
        return con

    def close(self) -> None:
        for con in self._open:
            con.close()
        for undo in self._cleanup:
            undo()


def _drop(admin: Any, schema: str) -> None:
    admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    admin.close()


@pytest.fixture
def db(store_url: str, store_kind: str, tmp_path: Path) -> Iterator[Db]:
    d = Db(store_url, store_kind, tmp_path)
    yield d
    d.close()


def _declare(app: ms.App, calls: list[int] | None = None) -> Any:
    @app.task
    def charge(order_id: int) -> str:
        if calls is not None:
            calls.append(order_id)
        return f"charged {order_id}"

    @app.subscriber("orders.*", name="notify")
    def notify(msg: ms.Message) -> None:
        pass

    app.open()  # (before the caller's transaction: opening records the definitions)
    return charge


def _unknown(app: ms.App, run_id: str) -> bool:
    try:
        app.get_run(run_id)
    except ms.UnknownRun:
        return True
    return False


# -- commit and rollback ----------------------------------------------------------------------


def test_the_run_and_message_commit_with_the_callers_rows(app: ms.App, db: Db) -> None:
    calls: list[int] = []
    charge = _declare(app, calls)
    db.setup()
    con = db.connect()
    db.insert(con, 1)
    h = charge.with_options(connection=con).submit(1)
    m = app.publish("orders.created", {"order": 1}, connection=con)
    assert isinstance(h, ms.RunHandle) and isinstance(m, ms.Message)
    assert m.sequence == 1
    # not there for anyone else until the caller commits
    assert _unknown(app, h.run_id)
    assert app.messages("orders.created") == [] and db.orders() == []
    con.commit()
    assert app.get_run(h.run_id).state == ms.RunState.READY
    assert [x.event_id for x in app.messages("orders.created")] == [m.event_id]
    assert db.orders() == [1]
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    assert h.result(timeout=5) == "charged 1"
    assert calls == [1]  # exactly once
    deliveries = app.runs(task="notify")
    assert [r.state for r in deliveries] == [ms.RunState.COMPLETED]


def test_a_rollback_leaves_nothing_and_wakes_no_one(app: ms.App, db: Db) -> None:
    charge = _declare(app)
    db.setup()
    waiter = app.store.waiter()
    try:
        before = app.log(limit=1_000_000)
        con = db.connect()
        db.insert(con, 1)
        h = charge.with_options(connection=con).submit(1)
        t = charge.with_options(connection=con).repeat(2, every=60, args=(1,))
        m = app.publish("orders.created", {"order": 1}, connection=con)
        con.rollback()
        assert _unknown(app, h.run_id)
        with pytest.raises(ms.UnknownTask):
            app.get_task(t.task_id)
        assert app.messages("orders.created") == [] and db.orders() == []
        assert app.runs() == []
        assert app.log(limit=1_000_000) == before
        assert m.sequence == 1  # (numbered in the transaction that was rolled back)
        assert app.verify().ok
        assert not waiter.wait(0.5)  # (a wake-up would have come by now, see below)
        # the same, committed: the wake-up comes after the commit
        h = charge.with_options(connection=con).submit(2)
        con.commit()
        assert waiter.wait(10)
        assert app.get_run(h.run_id).state == ms.RunState.READY
    finally:
        waiter.close()


def test_a_waiting_worker_picks_the_run_up_after_the_commit(
    make_app: Make, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the worker neither polls nor renews for an hour: a run it starts after the commit was
    # announced by the commit's wake-up
    monkeypatch.setattr(timers_module, "POLL_SECONDS", 3600.0)
    app = make_app(lease_seconds=3 * 3600)
    calls: list[int] = []
    charge = _declare(app, calls)
    db.setup()
    with app.worker():
        assert charge.submit(0).result(timeout=10) == "charged 0"  # the worker is up, idle
        con = db.connect()
        db.insert(con, 1)
        h = charge.with_options(connection=con).submit(1)
        con.commit()
        assert h.result(timeout=20) == "charged 1"
    assert calls == [0, 1]


def test_no_transaction_open_begins_one_that_commits_with_the_caller(app: ms.App, db: Db) -> None:
    charge = _declare(app)
    db.setup()
    if db.kind == "sqlite":
        con = db.connect(isolation_level=None)  # statements commit on their own
        assert not con.in_transaction
    else:
        con = db.connect()  # not autocommit, nothing run yet: idle
    h = charge.with_options(connection=con).submit(1)
    db.insert(con, 1)  # in the transaction that was begun
    assert _unknown(app, h.run_id)
    con.rollback()
    assert _unknown(app, h.run_id) and db.orders() == []
    h = charge.with_options(connection=con).submit(2)
    db.insert(con, 2)
    con.commit()
    assert app.get_run(h.run_id).state == ms.RunState.READY
    assert db.orders() == [2]


def test_a_transaction_that_has_not_written_takes_the_lock_while_others_commit(
    app: ms.App, db: Db
) -> None:
    """A transaction begun but with nothing written yet (Django's ``atomic()`` before its
    first query) while other writers commit. (On SQLite the store read which database it
    was before taking the lock: that read opened a snapshot, and once another writer had
    committed SQLite refused the lock at once, "database is locked".)"""
    charge = _declare(app)
    db.setup()
    stop = threading.Event()

    def other_writer() -> None:
        while not stop.is_set():
            charge.submit(0)

    writer = threading.Thread(target=other_writer)
    writer.start()
    con = db.connect()
    handles = []
    try:
        for i in range(1, 101):
            if db.kind == "sqlite":
                con.execute("BEGIN")
            handles.append(charge.with_options(connection=con).submit(i))
            con.commit()
    finally:
        stop.set()
        writer.join()
    assert {h.status() for h in handles} == {ms.RunState.READY}


def test_submit_many_repeat_schedule_and_by_name_in_the_callers_transaction(
    app: ms.App, db: Db
) -> None:
    charge = _declare(app)
    db.setup()
    con = db.connect()
    many = charge.with_options(connection=con, priority=5).submit_many(
        [{"order_id": 1}, ((2,), {})]
    )
    rep = charge.with_options(connection=con).repeat(2, every=60, args=(3,))
    cron = charge.with_options(connection=con).schedule("0 9 * * *", args=(4,))
    named = app.submit(charge.name, args=(5,), connection=con)
    published = app.publish_many("orders.created", [{"n": 1}, {"n": 2}], connection=con)
    assert app.runs() == []
    con.commit()
    assert [app.get_run(h.run_id).priority for h in many] == [5, 5]
    assert len(rep.runs()) == 2 and len(cron.runs()) == 1
    assert app.get_run(named.run_id).state == ms.RunState.READY
    assert [m.sequence for m in app.messages("orders.created")] == [1, 2]
    assert [m.sequence for m in published] == [1, 2]


# -- the caller's transaction stays theirs ----------------------------------------------------


def test_a_failure_inside_leaves_the_callers_transaction_usable(app: ms.App, db: Db) -> None:
    charge = _declare(app)
    db.setup()
    first = charge.with_options(idempotency_key="k").submit(1)
    con = db.connect()
    db.insert(con, 1)
    with pytest.raises(ms.IdempotencyConflict):
        charge.with_options(connection=con, idempotency_key="k").submit(2)
    with pytest.raises(ms.IdempotencyConflict):
        app.publish("orders.created", {"v": 1}, event_id="e1", connection=con)
        app.publish("orders.created", {"v": 2}, event_id="e1", connection=con)
    if db.kind == "postgres":
        import psycopg

        assert con.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    db.insert(con, 2)  # the caller's transaction goes on
    again = charge.with_options(connection=con, idempotency_key="k").submit(1)
    assert again.run_id == first.run_id  # the same submission: nothing written
    h = charge.with_options(connection=con).submit(3)
    con.commit()
    assert db.orders() == [1, 2]
    assert app.get_run(h.run_id).state == ms.RunState.READY
    assert [m.payload for m in app.messages("orders.created")] == [{"v": 1}]
    assert len(app.runs(task=charge.name)) == 2


def test_rows_come_back_as_tuples_whatever_the_callers_factories(app: ms.App, db: Db) -> None:
    charge = _declare(app)
    db.setup()
    if db.kind == "sqlite":
        con = db.connect()
        con.row_factory = sqlite3.Row
        con.text_factory = bytes
    else:
        from psycopg.rows import dict_row

        con = db.connect(row_factory=dict_row)
    charge.with_options(idempotency_key="k").submit(1)  # (a lookup that reads a row)
    h = charge.with_options(connection=con, idempotency_key="k").submit(1)
    h2 = charge.with_options(connection=con).submit(2)
    con.commit()
    assert app.get_run(h2.run_id).state == ms.RunState.READY
    assert app.get_run(h.run_id).idempotency_key == "k"
    if db.kind == "sqlite":
        assert con.row_factory is sqlite3.Row and con.text_factory is bytes
        assert isinstance(con.execute("SELECT 1 AS one").fetchone(), sqlite3.Row)
    else:
        assert con.execute("SELECT 1 AS one").fetchone() == {"one": 1}


def test_the_callers_search_path_is_left_as_it_was(app: ms.App, db: Db) -> None:
    if db.kind != "postgres":
        pytest.skip("PostgreSQL: a store's tables live in its URL's schema")
    charge = _declare(app)
    db.setup()
    con = db.connect()
    with con.transaction():
        assert con.execute("SHOW search_path").fetchone() == (db.schema,)
        h = charge.with_options(connection=con).submit(1)
        assert con.execute("SHOW search_path").fetchone() == (db.schema,)
        db.insert(con, 1)  # unqualified: the application's own table
        con.execute(f"SET LOCAL search_path = {db.schema}, public")
        with pytest.raises(ms.IdempotencyConflict):
            app.publish("orders.created", {"v": 1}, event_id="e1", connection=con)
            app.publish("orders.created", {"v": 2}, event_id="e1", connection=con)
        assert con.execute("SHOW search_path").fetchone() == (f"{db.schema}, public",)
        db.insert(con, 2)
    assert con.execute("SHOW search_path").fetchone() == (db.schema,)
    assert db.orders() == [1, 2]
    assert app.get_run(h.run_id).state == ms.RunState.READY


def test_a_psycopg_connection_needs_a_read_committed_transaction(app: ms.App, db: Db) -> None:
    if db.kind != "postgres":
        pytest.skip("psycopg's autocommit mode")
    charge = _declare(app)
    db.setup()
    con = db.connect(autocommit=True)
    with pytest.raises(ms.InvalidArgument, match=r"conn\.transaction\(\)"):
        charge.with_options(connection=con).submit(1)
    with pytest.raises(ms.InvalidArgument, match=r"conn\.transaction\(\)"):
        app.publish("orders.created", {"v": 1}, connection=con)
    assert app.runs() == [] and app.messages("orders.created") == []
    with con.transaction():
        db.insert(con, 1)
        h = charge.with_options(connection=con).submit(1)
    assert app.get_run(h.run_id).state == ms.RunState.READY
    assert db.orders() == [1]
    # a snapshot older than another writer's commit could not update the log's counter
    with con.transaction():
        con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        db.insert(con, 2)
        with pytest.raises(ms.InvalidArgument, match="READ COMMITTED"):
            charge.with_options(connection=con).submit(2)
        db.insert(con, 3)
    assert db.orders() == [1, 2, 3]
    assert len(app.runs()) == 1


def test_concurrent_callers_of_one_idempotency_key_get_one_run(app: ms.App, db: Db) -> None:
    charge = _declare(app)
    db.setup()
    a = db.connect()
    b = db.connect(check_same_thread=False) if db.kind == "sqlite" else db.connect()
    first = charge.with_options(connection=a, idempotency_key="k").submit(1)
    got: list[Any] = []

    def second() -> None:
        try:
            got.append(charge.with_options(connection=b, idempotency_key="k").submit(1))
            b.commit()
        except BaseException as exc:  # (reported below)
            got.append(exc)

    t = threading.Thread(target=second)
    t.start()
    if db.kind == "postgres":  # the second waits on the first's transaction
        pid = b.info.backend_pid
        watch = db.connect(autocommit=True)
        wait_for(
            lambda: (
                watch.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                == ("Lock",)
            ),
            what="the second submitter to wait for the first's lock",
        )
    a.commit()
    t.join(timeout=30)
    assert len(got) == 1 and isinstance(got[0], ms.RunHandle), got
    assert got[0].run_id == first.run_id
    assert len(app.runs()) == 1


# -- refused: nothing written, anywhere -------------------------------------------------------


def test_a_connection_to_another_database_is_refused(app: ms.App, db: Db) -> None:
    charge = _declare(app)
    db.setup()
    other = db.elsewhere()
    db.insert(other, 1)
    with pytest.raises(ms.InvalidArgument, match="own database") as caught:
        charge.with_options(connection=other).submit(1)
    assert app.store.display_url in str(caught.value)
    with pytest.raises(ms.InvalidArgument, match="own database"):
        app.publish("orders.created", {"v": 1}, connection=other)
    db.insert(other, 2)  # the caller's transaction goes on
    other.commit()
    assert sorted(r[0] for r in other.execute("SELECT id FROM orders").fetchall()) == [1, 2]
    assert app.runs() == [] and app.messages("orders.created") == []


def test_a_connection_to_another_store_is_refused(
    make_app: Make, db: Db, store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    app = make_app()
    charge = _declare(app)
    if db.kind == "sqlite":
        other_url = f"sqlite:///{tmp_path}/other-store.db"
    else:  # a store in a schema of the same name, in another database
        database = request.getfixturevalue("pg_database")  # (the test run's own)
        assert store_url.startswith(database)
        other_url = PG_SERVER + store_url[len(database) :]
    other_app = ms.App(other_url)
    try:
        _declare(other_app)
        before = other_app.log(limit=1_000_000)
        if db.kind == "sqlite":
            con: Any = sqlite3.connect(other_url[len("sqlite:///") :])
        else:
            import psycopg

            con = psycopg.connect(PG_SERVER)
        try:
            with pytest.raises(ms.InvalidArgument, match="another mainspring store"):
                charge.with_options(connection=con).submit(1)
            con.rollback()
        finally:
            con.close()
        assert other_app.log(limit=1_000_000) == before and other_app.runs() == []
        assert app.runs() == []
    finally:
        if db.kind == "postgres":
            import psycopg

            from mainspring.store.pg_url import parse_url

            schema = parse_url(other_url)[1]
            other_app.close()
            with psycopg.connect(PG_SERVER, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        else:
            other_app.close()


def test_bad_connections_and_handlers_are_refused(app: ms.App, db: Db) -> None:
    charge = _declare(app)
    db.setup()
    for bad in ("sqlite:///x.db", 42, object()):
        with pytest.raises(ms.InvalidArgument):
            charge.with_options(connection=bad).submit(1)
    wrong_driver: Any
    if db.kind == "sqlite":
        closed = db.connect()
        closed.close()
        with pytest.raises(ms.InvalidArgument):
            charge.with_options(connection=closed).submit(1)
        wrong_driver = None  # (a psycopg connection needs a server: the other store's test)
    else:
        wrong_driver = sqlite3.connect(":memory:")
    if wrong_driver is not None:
        with pytest.raises(ms.InvalidArgument, match="psycopg"):
            charge.with_options(connection=wrong_driver).submit(1)
        wrong_driver.close()
    outcomes: list[str] = []

    @app.task
    def inside() -> None:
        con = object()
        for attempt in (
            lambda: charge.with_options(connection=con).submit(1),
            lambda: charge.with_options(connection=con).submit_many([{"order_id": 1}]),
            lambda: app.publish("orders.created", {"v": 1}, connection=con),
        ):
            try:
                attempt()
            except ms.InvalidArgument as exc:
                outcomes.append(str(exc))

    h = inside.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    assert h.status() == ms.RunState.COMPLETED
    assert len(outcomes) == 3 and all("outside handlers" in o for o in outcomes)
    assert [r.task_name for r in app.runs()] == [inside.name]
