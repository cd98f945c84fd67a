"""What the by-hand measurements share: a store with N ready no-op runs (a fresh SQLite
file, or a throwaway PostgreSQL database)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mainspring as ms

PG = os.environ.get("MAINSPRING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def noop_store(name: str, runs: int, synchronous: str) -> tuple[ms.App, Path]:
    """An App on a new store file ``name`` in a temp dir, ``runs`` runs of task ``noop``
    submitted (1,000 per call); the App and the file's path."""
    path = Path(tempfile.mkdtemp()) / name
    app = ms.App(store=f"sqlite:///{path}?synchronous={synchronous}")

    @app.task(name="noop")
    def noop(x: str) -> None:
        pass

    submit_noops(app, noop, runs)
    return app, path


def fill(url: str, runs: int) -> None:
    """Submit ``runs`` runs of the no-op task ``noop`` into the store at ``url``."""
    app = ms.App(store=url)

    @app.task(name="noop")
    def noop(x: str) -> None:
        pass

    submit_noops(app, noop, runs)
    app.close()


def reports(leased: Any) -> list[Any]:
    """The report of each run a turn leased (``Leased``), as a worker hands it back when
    its handler returned: success, with the run's snapshot and fence."""
    from mainspring.core.states import AttemptResult
    from mainspring.engine import Finished

    return [
        Finished(
            lz.run_id,
            lz.attempt_id,
            AttemptResult.SUCCESS,
            options=lz.options,
            snapshot=lz.snapshot,
            # (a commit before fences: PYTHONPATH=<its checkout> measures it too)
            **({"fence": lz.fence} if hasattr(lz, "fence") else {}),
        )
        for lz in leased
    ]


def submit_noops(app: ms.App, task: Any, runs: int) -> None:
    """``runs`` runs of ``task`` (one str argument each), 1,000 per call."""
    for i in range(0, runs, 1000):
        app.submit_many(task, [((f"x{j}",), {}) for j in range(i, min(i + 1000, runs))])


@contextmanager
def pg_database(prefix: str) -> Iterator[str]:
    """The URL of a new database on ``$MAINSPRING_TEST_PG``'s server, dropped after."""
    import psycopg

    server = PG.rsplit("/", 1)[0]
    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
