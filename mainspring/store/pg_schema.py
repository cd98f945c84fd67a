"""Opening a PostgreSQL store's schema: install it, migrate it (one migrator at a time, in
one transaction, with the data steps only this store has), or refuse a schema that is not
mainspring's or is newer than this version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from ..core.errors import StoreError
from . import schema
from .pg_log_parts import partition_log
from .pg_tx import DIALECT
from .rows import records_of_v1_rows
from .schema import APP_ID, SCHEMA_VERSION, migration

if TYPE_CHECKING:
    from .postgres import PostgresStore

#: the tables of a store here: the schema's, and the log's counter
TABLES = (*schema.TABLES, "ms_seq")


def _migrate_log_v2(con: Any, store: PostgresStore) -> None:
    """Version 2: the events of version 1's log, one record each."""
    try:
        with con.transaction():  # (a savepoint: a server built without lz4 says no)
            con.execute("ALTER TABLE ms_log ALTER COLUMN events SET COMPRESSION lz4")
    except psycopg.errors.FeatureNotSupported:
        pass
    with con.cursor(name="ms_migrate_v2") as cur:
        cur.execute(
            "SELECT seq, event_id, type, at, task_id, run_id, attempt_id, correlation_id, "
            "execution_id, data::text FROM ms_log_v1 ORDER BY seq"
        )
        while rows := cur.fetchmany(5000):
            records, runs = records_of_v1_rows(rows)
            with con.cursor() as w:
                w.executemany(
                    "INSERT INTO ms_log (seq, last_seq, events) VALUES (%s, %s, %s)", records
                )
                w.executemany("INSERT INTO ms_log_runs (run_id, seq) VALUES (%s, %s)", runs)
    con.execute("DROP TABLE ms_log_v1")


def _partition_log_v6(con: Any, store: PostgresStore) -> None:
    """Version 6: the log in partitions (store/pg_log_parts.py)."""
    partition_log(con, store.log_parts.size)


_MIGRATE_DATA = {2: _migrate_log_v2, 6: _partition_log_v6}


def open_schema(store: PostgresStore, migrate: bool, create: bool = True) -> int:
    """Open the store's schema: install it, migrate it (``migrate``) or refuse it; its
    version. One connection of its own, closed after."""
    try:
        con = psycopg.connect(store.conninfo, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {store.display_url!r}: {exc}".strip()) from None
    try:
        version = installed_version(store, con)
        if version == SCHEMA_VERSION:
            store.log_parts.try_make_ahead(con)
            return version
        if version == 0 and not create:
            raise StoreError(
                f"no mainspring store in {store.display_url!r} (schema {store.schema!r}); "
                "commands that only read never create one: check --store / MAINSPRING_STORE"
            )
        if not migrate:
            raise StoreError(
                f"{store.display_url!r} has mainspring schema version {version or 'none'}, "
                f"this version needs {SCHEMA_VERSION}; run `mainspring migrate --store URL` "
                "(or open it without auto_migrate=false)"
            )
        with con.transaction():
            # one migrator at a time when a whole fleet starts at once
            con.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (
                f"mainspring:{store.schema}:migrate",
            ))  # fmt: skip
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{store.schema}"')
            current = installed_version(store, con)
            for v in range(current + 1, SCHEMA_VERSION + 1):
                for stmt in migration(v, DIALECT):
                    con.execute(stmt)
                if v in _MIGRATE_DATA:
                    _MIGRATE_DATA[v](con, store)
            con.execute(
                "INSERT INTO ms_meta (key, value) VALUES ('app', %s), ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (APP_ID, str(SCHEMA_VERSION)),
            )
        store.log_parts.try_make_ahead(con)
        return SCHEMA_VERSION
    except psycopg.Error as exc:
        raise StoreError(f"cannot open {store.display_url!r}: {exc}") from None
    finally:
        con.close()


def installed_version(store: PostgresStore, con: Any) -> int:
    """The schema version in the store's schema (0: none), refusing what is not ours."""
    found = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name = ANY(%s)",
            (store.schema, list(TABLES)),
        )
    }
    if not found:
        return 0
    where = f"{store.display_url!r} (schema {store.schema!r})"
    if "ms_meta" not in found:
        raise StoreError(
            f"{where} has tables named like mainspring's ({', '.join(sorted(found))}) "
            "but is not a mainspring store; use another database or ?schema="
        )
    meta = dict(con.execute(f'SELECT key, value FROM "{store.schema}".ms_meta').fetchall())
    if meta.get("app") != APP_ID:
        raise StoreError(f"{where} is not a mainspring store (ms_meta.app = {meta.get('app')!r})")
    version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where} was written by a newer mainspring (schema {version}; this version "
            f"understands up to {SCHEMA_VERSION}); upgrade mainspring to open it"
        )
    return version
