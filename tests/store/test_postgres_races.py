"""Concurrent submitters racing on one idempotency key, as web processes do: separate Apps
(each with its own connection pool) in threads, and separate processes.

Every key is submitted by every submitter at the same moment (a barrier per key), so the
losers' INSERTs meet the winner's on the idempotency index: a unique violation inside the
write transaction's final pipeline, which the engine handles as a ``Conflict`` by running
the submit again. That must leave the connection usable, its prepared statements included
(psycopg prepares a statement on its sixth use; one whose turn came in the aborted part of
a pipeline was once believed prepared and then failed every later write on that
connection: ``prepared statement "_pg3_2" does not exist``).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import pg_schema_url

import mainspring as ms
from mainspring.store import postgres as pg

from .helpers import in_processes

try:
    import psycopg
except ImportError:  # pragma: no cover - without the extra, pg_database skips (fails under CI)
    psycopg = None  # type: ignore[assignment]

pytestmark = pytest.mark.timeout(120)

SUBMITTERS = 4
KEYS = 8
#: Each race is run this many times, in a schema of its own: whether a connection loses its
#: races at the unlucky moment varies from one to the next.
ROUNDS = 3


def _submit_every_key(app: ms.App, wait: Any) -> list[str]:
    """Submit keys k0..k7 (each at the same moment as the other submitters); per key the run
    id, or the error it raised (the submitter carries on, so the others never wait for it)."""
    out = []
    for j in range(KEYS):
        wait()
        try:
            out.append(app.submit("job", [j], idempotency_key=f"k{j}").run_id)
        except Exception as exc:
            out.append(f"error: {type(exc).__name__}: {exc}")
    return out


def _check(url: str, results: list[list[str]]) -> None:
    errors = [r for rs in results for r in rs if r.startswith("error")]
    assert not errors, errors
    for j in range(KEYS):
        assert len({rs[j] for rs in results}) == 1, f"k{j}: {[rs[j] for rs in results]}"
    assert len({rs[j] for rs in results for j in range(KEYS)}) == KEYS
    conninfo, schema = pg.parse_url(url)[:2]
    with psycopg.connect(conninfo) as con:
        tasks = con.execute(f'SELECT count(*) FROM "{schema}".ms_tasks').fetchone()
        runs = con.execute(f'SELECT count(*) FROM "{schema}".ms_runs').fetchone()
    assert tasks is not None and tasks[0] == KEYS
    assert runs is not None and runs[0] == KEYS
    with ms.App(url) as app:
        assert app.engine.verify() == []


def _race_in_threads(url: str) -> list[list[str]]:
    apps = [ms.App(url) for _ in range(SUBMITTERS)]
    barrier = threading.Barrier(SUBMITTERS)
    results: list[list[str]] = [[] for _ in range(SUBMITTERS)]

    def submitter(i: int) -> None:
        results[i] = _submit_every_key(apps[i], lambda: barrier.wait(timeout=60))

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(SUBMITTERS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=100)
            assert not t.is_alive(), "a submitter hung"
    finally:
        for app in apps:
            app.close()
    return results


@pytest.mark.filterwarnings("ignore:no App has declared:UserWarning")  # (by name)
def test_apps_in_threads_submit_the_same_keys_at_once(pg_database: str) -> None:
    for _ in range(ROUNDS):
        url = pg_schema_url(pg_database, prefix="race")
        _check(url, _race_in_threads(url))


def _submitter_process(barrier: Any, i: int, urls: list[str]) -> list[list[str]]:
    out = []
    for url in urls:  # a round each
        with ms.App(url) as app:
            out.append(_submit_every_key(app, lambda: barrier.wait(timeout=60)))
    return out


def test_processes_submit_the_same_keys_at_once(pg_database: str) -> None:
    urls = [pg_schema_url(pg_database, prefix="race") for _ in range(ROUNDS)]
    for url in urls:
        ms.App(url).close()  # the schema exists before the race (each process opens it too)
    results = in_processes(SUBMITTERS, _submitter_process, urls)
    for r, url in enumerate(urls):
        _check(url, [per_process[r] for per_process in results])
