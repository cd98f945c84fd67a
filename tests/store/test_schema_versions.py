"""A schema version's statements never change once stores are written at it: a store opened
at version N runs only the statements of the versions after N, so a table or an index added
to version N later would never reach it (stores written at versions 4 and 5 in the making
were left without tables and a ``ms_meta`` row that way). A change to the schema is a new
version; this test holds each version's statements, per store, to what they were."""

from __future__ import annotations

import hashlib

import pytest

from mainspring.store import pg_tx, sqlite
from mainspring.store.dialect import Dialect
from mainspring.store.schema import SCHEMA_VERSION, migration

#: sha256 of each version's statements, one per line: (SQLite, PostgreSQL)
FROZEN = {
    1: ("07543e4a0eca957d", "98c7e9b4c03e43a6"),
    2: ("4d39919940e8b4de", "f28f71d029eef087"),
    3: ("56b53ae0d4babf11", "c733a56af6efa0e5"),
    4: ("c8d8591a34e6c683", "bc573c6ea70a8f52"),
    5: ("b2ea646b5175afcd", "fcd41dfea464e566"),
    6: ("e3b0c44298fc1c14", "e3b0c44298fc1c14"),
    7: ("3055a022e47ea103", "3055a022e47ea103"),
    8: ("dbc5eeb9cd5ea9cd", "ad387c035aecd062"),
}


def _digest(version: int, dialect: Dialect) -> str:
    statements = migration(version, dialect)
    return hashlib.sha256("\n".join(statements).encode()).hexdigest()[:16]


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_a_versions_statements_are_what_they_were(version: int) -> None:
    assert version in FROZEN, (
        f"schema version {version} is new: add its digests to FROZEN once it is final"
    )
    got = (_digest(version, sqlite.DIALECT), _digest(version, pg_tx.DIALECT))
    assert got == FROZEN[version], (
        f"the statements of schema version {version} changed: a store already at version "
        f"{version} would never run them. Make the change a new version (store/schema.py, "
        "store/kinds.py ``since``) instead"
    )
