"""Helpers shared by the store tests: requests, raw SQL on either store, racing threads and
processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import traceback
from collections.abc import Callable
from typing import Any

from mainspring.core.model import TaskOptions
from mainspring.engine import Engine, SubmitRequest
from mainspring.store import open_store


def req(i: Any = 0, **kw: Any) -> SubmitRequest:
    """A submission of task ``job`` with argument ``i`` (``kw``: SubmitRequest fields)."""
    options = kw.pop("options", None) or TaskOptions()
    return SubmitRequest(name="job", args=[i], kwargs={}, options=options, **kw)


def make_store(url: str, runs: int = 3) -> None:
    """Create the store at ``url`` with ``runs`` ready runs."""
    s = open_store(url)
    try:
        eng = Engine(s)
        for i in range(runs):
            eng.submit(req(i))
    finally:
        s.close()


def raw_execute(url: str, statement: str) -> None:
    """Run one SQL statement on the store's tables behind mainspring's back."""
    if url.startswith("sqlite:"):
        from mainspring.store.sqlite import parse_url as sqlite_url

        con = sqlite3.connect(sqlite_url(url)[0])
        try:
            con.execute(statement)
            con.commit()
        finally:
            con.close()
        return
    import psycopg

    from mainspring.store.postgres import parse_url as pg_url

    conninfo, schema = pg_url(url)[:2]
    with psycopg.connect(conninfo, autocommit=True) as con:
        con.execute(f'SET search_path TO "{schema}"')
        con.execute(statement)  # type: ignore[arg-type]


def in_threads(n: int, target: Callable[[int], Any], timeout: float = 60) -> list[Any]:
    """Run ``target(i)`` for i in 0..n-1 in n threads released together; their results.

    The first exception a thread raised is raised here."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
        assert not t.is_alive(), "a racing thread hung"
    if errors:
        raise errors[0]
    return results


def _child(
    target: Callable[..., Any], barrier: Any, out: Any, i: int, args: tuple[Any, ...]
) -> None:
    try:
        out.put((i, True, target(barrier, i, *args)))
    except BaseException:
        out.put((i, False, traceback.format_exc()))


def in_processes(n: int, target: Callable[..., Any], *args: Any, timeout: float = 120) -> list[Any]:
    """Run ``target(barrier, i, *args)`` in n spawned processes; their results, by ``i``.

    ``target`` must be a module-level function; it calls ``barrier.wait()`` where the
    processes should start racing (a spawned interpreter takes a while to import)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    out = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(target, barrier, out, i, args)) for i in range(n)]
    for p in procs:
        p.start()
    try:
        got = [out.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    failures = [tb for _, ok, tb in got if not ok]
    assert not failures, failures[0]
    assert all(p.exitcode == 0 for p in procs)
    return [value for _, _, value in sorted(got, key=lambda g: g[0])]
