"""Shared timing helper: the workloads (W1, W2, W4, idle load) and the process plumbing.

This module runs inside every peer's virtual environment, so it uses the standard library
only. A peer driver subclasses :class:`Peer` and calls :func:`main` with it; ``run.py``
starts the driver as ``python -m peers.<name>_peer bench ...`` and the driver starts its own
worker processes as ``python -m peers.<name>_peer worker ...``.

Two backends: ``sqlite`` (a fresh store file per workload, under the work directory) and
``postgres`` (a fresh database per workload, ``bench_<peer>_<phase>_<pid>``, created and
dropped with ``psql`` on the server given by ``--pg-url``).

Timing rules (see ``benchmarks/README.md``):

* W1 times the producer's calls only (``time.perf_counter``), one producer, fresh store.
* W2 preloads the store, starts the workers, waits until every worker process has booted,
  then releases them together; the drain window runs from the first handler start to the
  last handler end, both written by the no-op task itself (``time.time``), so worker boot
  is excluded. The harness also waits until the store reports every task completed.
* W4 measures sequential submit -> result round trips from the producer process, with one
  worker process already running and idle.
* Idle load (PostgreSQL only) counts the transactions (and, where ``pg_stat_statements`` is
  loaded, the statements) that idle worker processes make the server run, from the
  server's own statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
STAMP_FORMAT = "%18.6f %18.6f\n"
STAMP_SIZE = len(STAMP_FORMAT % (0.0, 0.0))
BATCH_SIZE = 1000
WARMUP_ROUNDS = 10
READY_TIMEOUT = 60.0

_stamp_fd: int | None = None
_stamp_lock = threading.Lock()


#: The handler's stand-in for I/O, the same for every peer (``BENCH_HANDLER_MS``, set by
#: benchmarks/scale.py; 0: the no-op of every other workload).
HANDLER_SECONDS = float(os.environ.get("BENCH_HANDLER_MS", "0") or 0) / 1000


def handle() -> None:
    """The task's body in a thread: wait ``HANDLER_SECONDS`` (if any), then stamp."""
    started = time.time()
    if HANDLER_SECONDS:
        time.sleep(HANDLER_SECONDS)
    stamp(started)


async def handle_async() -> None:
    """The task's body on an event loop: the same, awaiting the wait."""
    started = time.time()
    if HANDLER_SECONDS:
        await asyncio.sleep(HANDLER_SECONDS)
    stamp(started)


class Unsupported(Exception):
    """The peer has no API for this operation (the cell shows n/a)."""


def payload(i: int) -> str:
    """The task argument: a 16-byte JSON string, as the fairness rules ask."""
    return f"task-{i:011d}"


def stamp(started: float) -> None:
    """Record one handler execution (start, end) in this process's stamp file.

    One ``os.write`` on an ``O_APPEND`` descriptor per task: cheap, atomic for a line
    this short, and identical for every peer.
    """
    global _stamp_fd
    if _stamp_fd is None:
        with _stamp_lock:
            if _stamp_fd is None:
                folder = os.environ["BENCH_STAMPS"]
                path = os.path.join(folder, f"{os.getpid()}.txt")
                _stamp_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_stamp_fd, (STAMP_FORMAT % (started, time.time())).encode())


def stamp_count(folder: Path) -> int:
    """How many handler executions the stamp files in ``folder`` record."""
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.glob("*.txt")) // STAMP_SIZE


def read_stamps(folder: Path) -> tuple[int, float, float]:
    """(count, first handler start, last handler end) over every stamp file."""
    count, first, last = 0, float("inf"), float("-inf")
    for path in folder.glob("*.txt"):
        for line in path.read_text().splitlines():
            start, end = (float(v) for v in line.split())
            count += 1
            first = min(first, start)
            last = max(last, end)
    return count, first, last


def percentile(values: list[float], pct: float) -> float:
    """Percentile by linear interpolation between closest ranks (values in seconds)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
        "max_ms": max(samples) * 1000,
    }


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process (Linux ``/proc``), None if unavailable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds() -> float:
    """User + system CPU seconds of this machine's PostgreSQL processes (the server and
    its backends, ``postgres`` in ``/proc/<pid>/comm``) alive now: 0 with the server
    elsewhere. A backend that exits takes its seconds with it, so it is read while the
    connections that did the work are open."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if Path(entry.path, "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        total += cpu_seconds(int(entry.name)) or 0.0
    return total


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def sqlite_pragmas(execute: Callable[[str], Any]) -> dict[str, str]:
    """Read journal_mode and synchronous back through a peer's own connection.

    ``execute(sql)`` must return the first column of the first row.
    """
    level = int(execute("PRAGMA synchronous"))
    return {
        "journal_mode": str(execute("PRAGMA journal_mode")).upper(),
        "synchronous": SYNC_NAMES.get(level, str(level)),
        "source": "PRAGMA read back",
    }


# --------------------------------------------------------------------------- PostgreSQL

PG_DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_SHOWN = "SHOW read back"
UNLOGGED_SQL = "SELECT count(*) FROM pg_class WHERE relpersistence = 'u' AND relkind IN ('r', 'p')"


def pg_settings(execute: Callable[[str], Any]) -> dict[str, str]:
    """Read the durability settings back through a peer's own connection.

    ``execute(sql)`` must return the first column of the first row. Besides the two server
    settings this counts unlogged tables in the peer's database (a table can opt out of
    the WAL whatever ``synchronous_commit`` says).
    """
    return {
        "synchronous_commit": str(execute("SHOW synchronous_commit")),
        "fsync": str(execute("SHOW fsync")),
        "unlogged_tables": str(execute(UNLOGGED_SQL)),
        "source": PG_SHOWN,
    }


def psql(url: str, sql: str, timeout: float = 60.0) -> str:
    """Run one SQL command with ``psql`` (unaligned, tuples only); its output, stripped.

    Each call is one connection and, for a single command, one transaction.
    """
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"psql exited {done.returncode}")
    return done.stdout.strip()


def pg_url(server: str, database: str) -> str:
    """``server`` (any database) with its database replaced by ``database``."""
    parts = urlsplit(server)
    return urlunsplit(parts._replace(path="/" + database))


def pg_dbname(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def pg_bench_dbname(peer: str, phase: str, pid: int) -> str:
    """``bench_<peer>_<phase>_<pid>``: a fresh database per peer and workload."""
    return re.sub(r"[^a-z0-9_]", "_", f"bench_{peer}_{phase}_{pid}".lower())


def pg_quote(name: str) -> str:
    """An identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def pg_literal(text: str) -> str:
    """A string literal, quoted."""
    return "'" + text.replace("'", "''") + "'"


def create_database(server: str, name: str) -> str:
    """Create a fresh database (dropping a leftover of the same name); its URL."""
    drop_database(server, name)
    psql(server, f"CREATE DATABASE {pg_quote(name)}")
    return pg_url(server, name)


def drop_database(server: str, name: str) -> None:
    psql(server, f"DROP DATABASE IF EXISTS {pg_quote(name)} WITH (FORCE)")


def drop_bench_databases(server: str, pid: int) -> list[str]:
    """Drop every ``bench_..._<pid>`` database (what a killed driver left behind)."""
    names = psql(
        server,
        "SELECT datname FROM pg_database "
        f"WHERE datname LIKE 'bench\\_%\\_{int(pid)}' ORDER BY datname",
    ).split()
    for name in names:
        drop_database(server, name)
    return names


def pg_xacts(server: str, name: str) -> int:
    """xact_commit + xact_rollback of database ``name``, read from ``server``'s database.

    Read through a connection to another database (the server URL's, normally
    ``postgres``), so the reading itself adds nothing to ``name``'s counters.
    """
    sql = (
        "SELECT xact_commit + xact_rollback FROM pg_stat_database "
        f"WHERE datname = {pg_literal(name)}"
    )
    return int(psql(server, sql) or 0)


def pg_writes(server: str, name: str) -> tuple[int, int]:
    """Rows written in database ``name`` (inserted + updated + deleted, as the server
    counts them: ``pg_stat_database``) and the server's WAL position in bytes (the whole
    cluster's: nothing else should write while it is measured)."""
    sql = (
        "SELECT (SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
        f"WHERE datname = {pg_literal(name)}) || ' ' || "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
    )
    rows, wal = (psql(server, sql) or "0 0").split()
    return int(rows), int(wal)


def pg_connections(server: str, name: str) -> int:
    """Client connections to database ``name`` right now."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        f"AND datname = {pg_literal(name)}"
    )
    return int(psql(server, sql) or 0)


def pgss_unavailable(server: str) -> str | None:
    """None when ``pg_stat_statements`` can be used, else why not."""
    preload = psql(server, "SHOW shared_preload_libraries")
    if "pg_stat_statements" not in [x.strip() for x in preload.split(",")]:
        return "pg_stat_statements is not in shared_preload_libraries"
    if not psql(server, "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'"):
        return "the pg_stat_statements extension is not installed on the server"
    return None


PGSS_PROBE = "pg_stat_statements_bench_probe"


def pgss_calls(url: str) -> int:
    """Statements executed so far in the database of ``url`` (pg_stat_statements.calls).

    The harness's own statements (this query, CREATE EXTENSION) are left out by text.
    """
    return int(
        psql(
            url,
            f"SELECT /* {PGSS_PROBE} */ coalesce(sum(calls), 0) FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            f"AND query NOT LIKE '%{PGSS_PROBE}%' AND query NOT ILIKE '%CREATE EXTENSION%'",
        )
        or 0
    )


class Peer:
    """What a driver implements. One instance is opened on one store (file or database)."""

    name = "peer"
    #: the store backends this driver supports; the harness sets ``backend`` before ``open``
    backends: tuple[str, ...] = ("sqlite",)
    backend = "sqlite"
    #: a short description of the batch enqueue API, or None when the peer has none
    batch_api: str | None = None
    #: free text shown under the results table (polling, result storage, ...)
    notes = ""

    def version(self) -> str:
        raise NotImplementedError

    def open(self, db: str, sync: str, role: str) -> None:
        """Create or open the store; ``role``: "producer", "worker" or "init".

        ``db`` is a file path (sqlite) or a ``postgresql://`` URL of a fresh database
        (postgres, where ``sync`` is "server": the server's settings are used as they are).
        """
        raise NotImplementedError

    def durability(self) -> dict[str, str]:
        """As the peer's own connection reports it: :func:`sqlite_pragmas` / :func:`pg_settings`."""
        raise NotImplementedError

    def enqueue(self, x: str) -> None:
        """Submit one no-op task in one call (one transaction)."""
        raise NotImplementedError

    def enqueue_batch(self, xs: list[str]) -> None:
        """Submit many no-op tasks in one call."""
        raise Unsupported(f"{self.name} has no batch enqueue API")

    def preload(self, xs: list[str]) -> None:
        """Load tasks for W2 (not timed): batched when possible."""
        if self.batch_api is None:
            for x in xs:
                self.enqueue(x)
            return
        for i in range(0, len(xs), BATCH_SIZE):
            self.enqueue_batch(xs[i : i + BATCH_SIZE])

    def completed(self, stamps: Path) -> int:
        """How many no-op tasks are complete (default: counted from the stamp files)."""
        return stamp_count(stamps)

    def run_worker(self, concurrency: int, started: Callable[[], None]) -> None:
        """Run a worker until killed; call ``started()`` once it is consuming."""
        raise NotImplementedError

    def round_trip(self, x: str, timeout: float) -> None:
        """Submit one task that returns its argument and wait for its result."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the store (called again after the idle phase closed it: idempotent)."""


# --------------------------------------------------------------------------- workers


class Workers:
    """Worker subprocesses of one phase: spawn, release together, measure, kill."""

    def __init__(
        self,
        module: str,
        args: argparse.Namespace,
        phase: Path,
        db: str,
        lifetime: float | None = None,
    ) -> None:
        self.phase = phase
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cpu_at_go: dict[int, float] = {}
        self.server_at_go = 0.0  # the PostgreSQL processes' CPU seconds at release
        self.go_at = 0.0  # when they were released (``time.time()``, as the stamps are)
        self.stamps = phase / "stamps"
        self.stamps.mkdir(parents=True, exist_ok=True)
        self.lifetime = lifetime or args.phase_timeout + READY_TIMEOUT
        self._spawn_args = (module, args, db)

    def start(self, count: int) -> None:
        module, args, db = self._spawn_args
        for idx in range(count):
            cmd = [
                sys.executable, "-m", module, "worker",
                "--db", db, "--sync", args.sync, "--backend", args.backend,
                "--concurrency", str(args.concurrency),
                "--stamps", str(self.stamps), "--control", str(self.phase),
                "--idx", str(idx), "--max-seconds", str(self.lifetime),
            ]  # fmt: skip
            log = (self.phase / f"worker-{idx}.log").open("wb")
            self.procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.phase)
            )
            log.close()
        ready = [self.phase / f"ready-{idx}.json" for idx in range(count)]
        if not wait_for(lambda: all(p.exists() for p in ready) or self.dead(), READY_TIMEOUT):
            raise TimeoutError(f"workers not ready after {READY_TIMEOUT:.0f}s")
        self.check_alive()
        for proc in self.procs:
            self.cpu_at_go[proc.pid] = cpu_seconds(proc.pid) or 0.0
        self.server_at_go = server_cpu_seconds()
        self.go_at = time.time()
        (self.phase / "go").touch()
        started = [self.phase / f"started-{idx}.json" for idx in range(count)]
        if not wait_for(lambda: all(p.exists() for p in started) or self.dead(), READY_TIMEOUT):
            raise TimeoutError(f"workers not started after {READY_TIMEOUT:.0f}s")
        self.check_alive()

    def dead(self) -> bool:
        return any(p.poll() is not None for p in self.procs)

    def check_alive(self) -> None:
        for idx, proc in enumerate(self.procs):
            if proc.poll() is not None:
                tail = (self.phase / f"worker-{idx}.log").read_text(errors="replace")[-600:]
                raise RuntimeError(f"worker {idx} exited with {proc.returncode}: {tail.strip()}")

    def durability(self) -> dict[str, str] | None:
        path = self.phase / "started-0.json"
        if not path.exists():
            return None
        found: dict[str, str] | None = json.loads(path.read_text()).get("durability")
        return found

    def cpu_used(self) -> float | None:
        """CPU seconds the workers used since they were released (None if unknown)."""
        total = 0.0
        for proc in self.procs:
            now = cpu_seconds(proc.pid)
            if now is None:
                return None
            total += now - self.cpu_at_go.get(proc.pid, 0.0)
        return total

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 3.0
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def worker_main(peer: Peer, args: argparse.Namespace) -> None:
    """The ``worker`` role: open, report ready, wait for the go signal, consume."""
    os.environ["BENCH_STAMPS"] = args.stamps
    control = Path(args.control)
    parent = os.getppid()
    deadline = time.monotonic() + args.max_seconds

    def watchdog() -> None:  # bounded in time, and never outlives the bench process
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    peer.open(args.db, args.sync, "worker")
    (control / f"ready-{args.idx}.json").write_text(json.dumps({"pid": os.getpid()}))
    while not (control / "go").exists():
        time.sleep(0.002)

    def started() -> None:
        info = {"pid": os.getpid(), "durability": peer.durability()}
        (control / f"started-{args.idx}.json").write_text(json.dumps(info))

    peer.run_worker(args.concurrency, started)


# --------------------------------------------------------------------------- workloads


def _enqueue_loop(
    call: Callable[[list[str]], None], n: int, size: int, limit: float
) -> dict[str, Any]:
    """Time ``call`` on consecutive slices of ``size`` payloads; stop early at ``limit`` s."""
    xs = [payload(i) for i in range(n)]
    samples = []
    begin = time.perf_counter()
    done = 0
    while done < n:
        t0 = time.perf_counter()
        call(xs[done : done + size])
        samples.append(time.perf_counter() - t0)
        done = min(n, done + size)
        if t0 - begin > limit and done < n:
            break
    elapsed = time.perf_counter() - begin
    result: dict[str, Any] = {
        "rate": done / elapsed,
        "seconds": elapsed,
        "n": done,
        **latency_summary(samples),
    }
    if done < n:
        result["error"] = f"timeout: {done}/{n} submitted in {limit:.0f}s"
    return result


def w1_single(peer: Peer, n: int, limit: float) -> dict[str, Any]:
    return _enqueue_loop(lambda xs: peer.enqueue(xs[0]), n, 1, limit)


def w1_batch(peer: Peer, n: int, limit: float) -> dict[str, Any]:
    if peer.batch_api is None:
        raise Unsupported(f"{peer.name} has no batch enqueue API")
    result = _enqueue_loop(peer.enqueue_batch, n, BATCH_SIZE, limit)
    result.update(batch=BATCH_SIZE, api=peer.batch_api)
    return result


def w2_drain(
    peer: Peer, module: str, args: argparse.Namespace, phase: Path, db: str, procs: int
) -> dict[str, Any]:
    n = args.n
    t0 = time.perf_counter()
    peer.preload([payload(i) for i in range(n)])
    preload_s = time.perf_counter() - t0
    pg = args.backend == "postgres"
    xacts = pg_xacts(args.pg_url, pg_dbname(db)) if pg else 0
    writes = pg_writes(args.pg_url, pg_dbname(db)) if pg else (0, 0)
    workers = Workers(module, args, phase, db)
    try:
        workers.start(procs)
        # Watch the stamp files (a few stat calls) rather than query the store while it
        # drains, then confirm with the store, which records completion after the handler.
        finished = wait_for(
            lambda: stamp_count(workers.stamps) >= n or workers.dead(),
            args.phase_timeout,
            interval=0.1,
        ) and wait_for(lambda: peer.completed(workers.stamps) >= n or workers.dead(), 30.0)
        cpu = workers.cpu_used()
        server_cpu = server_cpu_seconds() - workers.server_at_go
        workers.check_alive()
        durability = workers.durability()
    finally:
        workers.stop()
    count, first, last = read_stamps(workers.stamps)
    result: dict[str, Any] = {
        "procs": procs,
        "n": n,
        "executed": count,
        "preload_seconds": preload_s,
        "durability": durability,
    }
    if pg:
        # Server transactions from the workers' start to their exit (a backend reports its
        # counters when it ends): boot, draining and the harness's completion checks.
        time.sleep(0.5)
        xacts = pg_xacts(args.pg_url, pg_dbname(db)) - xacts
        after = pg_writes(args.pg_url, pg_dbname(db))
        rows, wal = (b - a for a, b in zip(writes, after, strict=True))
        per = max(count, 1)
        result.update(
            transactions=xacts,
            tx_per_task=xacts / per,
            rows_per_task=rows / per,
            wal_bytes_per_task=wal / per,
        )
    if not finished or count < n:
        result["error"] = f"timeout: {count}/{n} done in {args.phase_timeout:.0f}s"
        if count > 1:
            result["partial_rate"] = count / (last - first)
        return result
    elapsed = last - first
    # from the release instead: the work done before the first handler starts (runs leased
    # and started far ahead, a first dequeue batch) counts too
    result.update(rate=n / elapsed, seconds=elapsed, rate_from_go=n / (last - workers.go_at))
    if cpu is not None:
        result["cpu_s_per_1k"] = cpu / n * 1000
    if pg:
        result["server_cpu_s_per_1k"] = server_cpu / n * 1000
    return result


def w4_latency(
    peer: Peer, module: str, args: argparse.Namespace, phase: Path, db: str
) -> dict[str, Any]:
    workers = Workers(module, args, phase, db)
    try:
        workers.start(1)
        for i in range(WARMUP_ROUNDS):
            peer.round_trip(payload(i), timeout=30.0)
        time.sleep(1.0)  # let the worker settle into its idle loop
        samples = []
        begin = time.monotonic()
        for i in range(args.rounds):
            t0 = time.perf_counter()
            peer.round_trip(payload(i), timeout=30.0)
            samples.append(time.perf_counter() - t0)
            if time.monotonic() - begin > args.phase_timeout:
                break
        workers.check_alive()
    finally:
        workers.stop()
    result: dict[str, Any] = {"rounds": len(samples), **latency_summary(samples)}
    if len(samples) < args.rounds:
        result["error"] = (
            f"timeout: {len(samples)}/{args.rounds} rounds in {args.phase_timeout:.0f}s"
        )
    return result


def idle_load(
    peer: Peer, module: str, args: argparse.Namespace, phase: Path, db: str
) -> dict[str, Any]:
    """Idle database load (PostgreSQL): ``args.idle_workers`` idle workers, no tasks.

    Transactions: the delta of ``xact_commit + xact_rollback`` of the peer's database in
    ``pg_stat_database`` over ``args.idle_seconds``, read through a connection to the
    server URL's own database, so the measuring connection adds nothing to the count.
    Statements (only when ``pg_stat_statements`` is loaded): the delta of its ``calls`` for
    the peer's database, read before and after the transaction window (so those reads are
    outside it) and with the harness's own statements left out.
    """
    if args.backend != "postgres":
        raise Unsupported("idle load is measured on PostgreSQL only")
    peer.close()  # the producer takes no part: only the workers are measured
    server, name = args.pg_url, pg_dbname(db)
    pgss_why = pgss_unavailable(server)
    if pgss_why is None:
        psql(db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    lifetime = args.idle_settle + args.idle_seconds + READY_TIMEOUT + 30.0
    workers = Workers(module, args, phase, db, lifetime=lifetime)
    try:
        workers.start(args.idle_workers)
        # Settle: boot-time transactions finish, and backends flush the statistics they
        # hold back (a backend reports at most once a second, an idle one within 10 s).
        time.sleep(args.idle_settle)
        workers.check_alive()
        calls0, tc0 = (pgss_calls(db), time.monotonic()) if pgss_why is None else (0, 0.0)
        cpu0 = workers.cpu_used()
        x0, t0 = pg_xacts(server, name), time.monotonic()
        time.sleep(args.idle_seconds / 2)
        connections = pg_connections(server, name)
        time.sleep(max(0.0, t0 + args.idle_seconds - time.monotonic()))
        x1, t1 = pg_xacts(server, name), time.monotonic()
        cpu1 = workers.cpu_used()
        calls1, tc1 = (pgss_calls(db), time.monotonic()) if pgss_why is None else (0, 0.0)
        workers.check_alive()
        durability = workers.durability()
    finally:
        workers.stop()
    result: dict[str, Any] = {
        "workers": args.idle_workers,
        "seconds": t1 - t0,
        "transactions": x1 - x0,
        "tx_per_s": (x1 - x0) / (t1 - t0),
        "connections": connections,
        "durability": durability,
    }
    if cpu0 is not None and cpu1 is not None:
        result["worker_cpu_pct"] = (cpu1 - cpu0) / (t1 - t0) * 100
    if pgss_why is None:
        result.update(statements=calls1 - calls0, stmt_per_s=(calls1 - calls0) / (tc1 - tc0))
    else:
        result["statements_na"] = pgss_why
    return result


# --------------------------------------------------------------------------- bench role


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def bench_main(make_peer: Callable[[], Peer], module: str, args: argparse.Namespace) -> None:
    """The ``bench`` role: run every workload on fresh stores, write JSON as it goes."""
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    result: dict[str, Any] = {
        "sync": args.sync,
        "backend": args.backend,
        "n": args.n,
        "concurrency": args.concurrency,
    }

    def save() -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(out)

    try:
        probe = make_peer()
        result.update(peer=probe.name, version=probe.version(), notes=probe.notes)
        result["batch_api"] = probe.batch_api
        if args.backend not in probe.backends:
            raise Unsupported(f"{probe.name} has no {args.backend} driver here")
    except Exception as exc:
        result["error"] = describe_error(exc)
        traceback.print_exc()
        save()
        return
    save()

    Run = Callable[[Peer, Path, str], dict[str, Any]]
    phases: list[tuple[str, Run]] = [
        ("w1_single", lambda p, _ph, _db: w1_single(p, args.n, args.phase_timeout)),
        ("w1_batch", lambda p, _ph, _db: w1_batch(p, args.n, args.phase_timeout)),
    ]
    for procs in args.drain_procs:
        phases.append(
            (f"w2_{procs}", lambda p, ph, db, k=procs: w2_drain(p, module, args, ph, db, k))
        )
    phases.append(("w4", lambda p, ph, db: w4_latency(p, module, args, ph, db)))
    if args.idle_seconds > 0:
        phases.append(("idle", lambda p, ph, db: idle_load(p, module, args, ph, db)))
    result["phases"] = [key for key, _ in phases]

    def run_phase(key: str, run: Run, phase: Path) -> dict[str, Any]:
        """One workload on a fresh store (a fresh database on PostgreSQL)."""
        phase.mkdir(parents=True, exist_ok=True)
        db = str(phase / "store.db")
        database = ""  # the fresh PostgreSQL database of this phase, dropped at its end
        peer = make_peer()
        began = time.monotonic()
        print(f"[{result['peer']}/{args.sync}] {phase.name} ...", file=sys.stderr, flush=True)
        cell: dict[str, Any]
        try:
            if args.backend == "postgres":
                database = pg_bench_dbname(result["peer"], phase.name, os.getpid())
                db = create_database(args.pg_url, database)
            peer.open(db, args.sync, "producer")
            result.setdefault("producer_durability", peer.durability())
            cell = run(peer, phase, db)
        except Unsupported as exc:
            cell = {"na": str(exc)}
        except Exception as exc:
            traceback.print_exc()
            cell = {"error": describe_error(exc)}
        finally:
            try:
                peer.close()
            except Exception:
                traceback.print_exc()
            if database:
                try:
                    drop_database(args.pg_url, database)
                except Exception:
                    traceback.print_exc()
        cell["wall_seconds"] = time.monotonic() - began
        return cell

    for key, run in phases:
        if args.phases and key not in args.phases:
            continue
        if key.startswith("w2_") and args.repeat > 1:
            # the drain again on fresh stores: the cell of the median rate, with every rate
            cells = [run_phase(key, run, work / f"{key}.{i}") for i in range(args.repeat)]
            failed = [c for c in cells if "rate" not in c]
            if failed:
                result[key] = failed[0]
            else:
                cells.sort(key=lambda c: float(c["rate"]))
                result[key] = {**cells[len(cells) // 2], "rates": [c["rate"] for c in cells]}
        else:
            result[key] = run_phase(key, run, work / key)
        found = result[key].get("durability")
        if found and "durability" not in result:
            result["durability"] = found
        save()


def main(make_peer: Callable[[], Peer], module: str, argv: Iterable[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    sub = parser.add_subparsers(dest="role", required=True)
    bench = sub.add_parser("bench", help="run the workloads (the producer side)")
    worker = sub.add_parser("worker", help="one worker process (started by bench)")
    init = sub.add_parser("init", help="create the store's schema, then exit")
    for role in (bench, worker, init):
        # full / normal: SQLite synchronous levels; server: PostgreSQL, the server's settings
        role.add_argument("--sync", choices=["full", "normal", "server"], default="full")
        role.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    bench.add_argument("--workdir", required=True)
    bench.add_argument("--out", required=True)
    bench.add_argument("--n", type=int, default=10_000)
    bench.add_argument("--rounds", type=int, default=400)
    bench.add_argument("--concurrency", type=int, default=8)
    bench.add_argument("--phase-timeout", type=float, default=150.0)
    bench.add_argument("--phases", nargs="*", default=[])
    bench.add_argument("--drain-procs", type=int, nargs="+", default=[1, 2])
    bench.add_argument("--repeat", type=int, default=1, help="drains per cell (median)")
    bench.add_argument("--pg-url", default=PG_DEFAULT_URL, help="server (maintenance db)")
    bench.add_argument("--idle-seconds", type=float, default=0.0, help="0: no idle phase")
    bench.add_argument("--idle-workers", type=int, default=4)
    bench.add_argument("--idle-settle", type=float, default=12.0)
    worker.add_argument("--db", required=True)
    worker.add_argument("--concurrency", type=int, default=8)
    worker.add_argument("--stamps", required=True)
    worker.add_argument("--control", required=True)
    worker.add_argument("--idx", type=int, default=0)
    worker.add_argument("--max-seconds", type=float, default=300.0)
    init.add_argument("--db", required=True)
    args = parser.parse_args(None if argv is None else list(argv))

    def make() -> Peer:
        peer = make_peer()
        peer.backend = args.backend
        return peer

    if args.role == "bench":
        bench_main(make, module, args)
    elif args.role == "worker":
        worker_main(make(), args)
    else:
        peer = make()
        peer.open(args.db, args.sync, "init")
        peer.close()
