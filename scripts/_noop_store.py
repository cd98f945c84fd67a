"""What the by-hand measurements share: a fresh SQLite store with N ready no-op runs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mainspring as ms


def noop_store(name: str, runs: int, synchronous: str) -> tuple[ms.App, Path]:
    """An App on a new store file ``name`` in a temp dir, ``runs`` runs of task ``noop``
    submitted (1,000 per call); the App and the file's path."""
    path = Path(tempfile.mkdtemp()) / name
    app = ms.App(store=f"sqlite:///{path}?synchronous={synchronous}")

    @app.task(name="noop")
    def noop(x: str) -> None:
        pass

    for i in range(0, runs, 1000):
        app.submit_many(noop, [((f"x{j}",), {}) for j in range(i, min(i + 1000, runs))])
    return app, path
