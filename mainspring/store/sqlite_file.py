"""SQLite store URLs and files: where a store is, and whether a file there is one of ours.

An existing file is inspected read-only before anything is written to it: another
program's database, a file that is not SQLite, or a store of a newer schema is refused
with StoreError and left untouched.
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import parse_qs, quote

from ..core.errors import StoreError
from .schema import APP_ID, SCHEMA_VERSION

#: The parameters a SQLite store URL takes (docs/operations.md, "Stores").
PARAMETERS = ("synchronous", "auto_migrate")


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """The path and the parameters of a ``sqlite://`` URL; one it does not take (a typo
    would drop the setting meant without a word) is a ``StoreError``."""
    if not url.startswith("sqlite://"):
        raise StoreError(f"not a sqlite URL: {url!r}")
    rest = url[len("sqlite://") :]
    query: dict[str, str] = {}
    if "?" in rest:
        rest, qs = rest.split("?", 1)
        query = {k: v[-1] for k, v in parse_qs(qs, keep_blank_values=True).items()}
        unknown = sorted(set(query) - set(PARAMETERS))
        if unknown:
            raise StoreError(
                f"unknown parameter {unknown[0]!r} in the SQLite URL {url!r}: it takes "
                + ", ".join(f"{p}=" for p in PARAMETERS)
            )
    if not rest.startswith("/") or rest == "/":
        raise StoreError(
            f"invalid sqlite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = rest[1:]  # sqlite:///rel -> "rel"; sqlite:////abs -> "/abs"
    return path, query


def check_existing(path: str) -> int:
    """Inspect an existing file read-only. Returns its schema version (0 = empty file)."""
    if os.path.getsize(path) == 0:
        return 0
    try:
        # quote: a '#', '?' or '%' in the path must not change which file is opened, or how
        con = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path!r} as a SQLite database: {exc}") from None
    try:
        objects = con.execute("SELECT type, name FROM sqlite_master").fetchall()
        tables = {name for kind, name in objects if kind == "table"}
        marks = [
            con.execute(f"PRAGMA {p}").fetchone()[0] for p in ("user_version", "application_id")
        ]
        if not objects and not any(marks):
            return 0  # a database with nothing in it (a store whose creation was cut short)
        if "ms_meta" not in tables:
            raise StoreError(
                f"{path!r} is a SQLite database of another program, not a mainspring store; "
                "point --store / MAINSPRING_STORE at a new or mainspring file"
            )
        meta = dict(con.execute("SELECT key, value FROM ms_meta").fetchall())
    except sqlite3.OperationalError as exc:
        # (not what the file holds: what this process may do with it and its directory)
        raise StoreError(
            f"cannot read {path!r}: {exc} (a store in WAL mode needs its -wal and -shm "
            "files beside it, even to be read: check the permissions of the file and of "
            "its directory)"
        ) from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path!r} is not a mainspring store (not a SQLite database: {exc}); "
            "point --store / MAINSPRING_STORE at a new or mainspring file"
        ) from None
    finally:
        con.close()
    if meta.get("app") != APP_ID:
        raise StoreError(f"{path!r} is not a mainspring store (ms_meta.app = {meta.get('app')!r})")
    version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise StoreError(newer(path, version))
    return version


def newer(path: str, version: int) -> str:
    return (
        f"{path!r} was written by a newer mainspring (schema {version}; this version "
        f"understands up to {SCHEMA_VERSION}); upgrade mainspring to open it"
    )
