"""Fixtures shared by every test package: the two stores.

PostgreSQL tests use the server named by ``MAINSPRING_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``). A test run creates a throwaway database of
its own there, gives every test its own schema in it, and drops the database at the end, so
runs never see each other's data. When the server is unreachable the PostgreSQL tests are
skipped, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_SERVER = os.environ.get("MAINSPRING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
STORES = ("sqlite", "postgres")
_schemas = itertools.count(1)


def _with_database(url: str, database: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + database, p.query, p.fragment))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh database for this test run (dropped afterwards); its URL."""
    try:
        import psycopg

        admin = psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5)
    except Exception as exc:
        message = f"PostgreSQL at {PG_SERVER} is unreachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    name = f"mainspring_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(PG_SERVER, name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def pg_schema_url(database_url: str, prefix: str = "t") -> str:
    """A store URL in a schema of its own in the run's database."""
    sep = "&" if "?" in database_url else "?"
    return f"{database_url}{sep}schema={prefix}{next(_schemas)}_{os.getpid()}"


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A new, empty store of each kind (tests using it run once per store)."""
    if store_kind == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    return pg_schema_url(request.getfixturevalue("pg_database"))


def rss_mb() -> float:
    """This process's resident set size (Linux ``/proc``), in MiB."""
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024


def pg_log_ranges(con: Any, table: str = "ms_log") -> list[tuple[int, int]]:
    """The seq ranges (from, to) of the partitions of a PostgreSQL store's ``table``, in
    order, by their names (``ms_log_<from>_<to>``); ``table`` as ``con`` resolves it."""
    rows = con.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass",
        (table,),
    ).fetchall()
    return sorted((int(lo), int(hi)) for lo, hi in (n.rsplit("_", 2)[1:] for (n,) in rows))
