"""The soak: a steady submission rate for an hour with retention and compaction running,
on SQLite and PostgreSQL. The store's size and every process's RSS must level off, and
the drain rate must hold while pruning and compaction run.

    python benchmarks/soak.py --store both        # one hour, SQLite and PostgreSQL side by side
    python benchmarks/soak.py --store sqlite --minutes 3 --retention 30 --compact-every 60 --sample 10

Per store, three kinds of process (this file, ``--role ...``):

- submit: ``task.submit_many`` every 100 ms, paced by the wall clock (after a stall it
  submits what is due at once, in calls of the usual size, so that a stall does not
  change what one call holds in memory), so the offered rate is ``--rate`` on average;
- work: ``app.run_worker`` (``--workers`` processes of ``--concurrency`` slots) with a no-op
  handler; ``ms.App(url, retention=...)``, so the workers prune in the background. Each
  attempt's end is counted per second (``on_attempt``); each background prune that removed
  something is timed (a wrapper around the engine's ``prune`` in the worker process);
- compact: ``app.compact()`` every ``--compact-every`` seconds, timed.

On PostgreSQL the server's autovacuum reclaims what pruning and compaction delete; the
script reads ``autovacuum`` back and warns when it is off (it changes no server setting):
``--vacuum-every N`` then runs ``VACUUM (ANALYZE)`` of the throwaway database every N s.

The parent samples every ``--sample`` seconds: the store's size (SQLite: the file plus -wal
and -shm; PostgreSQL: ``pg_total_relation_size`` of the store schema's tables), each
process's RSS and CPU, and ``app.stats()`` (backlog: ready + scheduled). At the end it stops
the submitter, lets the workers drain, stops them, runs ``app.verify()``, prints a table per
store and the verdicts, and writes a plot (``<out>.png``) and the tables
(``results-<name>.md`` next to it; by default benchmarks/soak.png and
benchmarks/results-soak.md).

Verdicts (the issue's, with the windows scaled to the run: "minutes 20-40" is the middle
third, "the last 20 minutes" the last third): size and RSS levelled off when the last
third's maximum is no larger than the middle third's (to 0.1 MB, as the table shows them);
the drain rate in the 0.1 s slots a prune or a compaction overlapped is within 10% of the
rate in the other slots.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import functools
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import mainspring as ms  # noqa: E402

PG_URL = os.environ.get("MAINSPRING_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TICK = 0.1  # the submitter's pace: one submit_many every 100 ms
START_DELAY = 3.0  # seconds for the processes to boot before the clock starts
TASK = "soak.noop"


def declare(app: ms.App) -> Any:
    @app.task(name=TASK)
    def noop(i: int) -> None:
        return None

    return noop


# --------------------------------------------------------------------------- child roles


class Out:
    """JSON lines on stdout, one per event, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj)
        with self.lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def stop_event(terminate_self: bool = False) -> threading.Event:
    """Set on SIGTERM/SIGINT or when the parent goes away. With ``terminate_self`` (the
    worker, whose ``run_worker`` handles the signals itself), the parent's going away
    sends this process a SIGTERM instead."""
    stop = threading.Event()
    parent = os.getppid()
    if not terminate_self:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                stop.set()
                if terminate_self:
                    os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
    return stop


def sleep_until(at: float, stop: threading.Event) -> bool:
    """Wait until wall-clock time ``at``; False if stopped first."""
    while not stop.is_set():
        left = at - time.time()
        if left <= 0:
            return True
        stop.wait(min(left, 1.0))
    return False


def role_submit(args: argparse.Namespace) -> None:
    out, stop = Out(), stop_event()
    app = ms.App(args.url, retention=dt.timedelta(seconds=args.retention))
    noop = declare(app)
    app.open()
    out({"k": "ready", "pid": os.getpid()})
    if not sleep_until(args.t0, stop):
        return
    t0, end = args.t0, args.t_end
    done = 0
    counts: collections.Counter[int] = collections.Counter()
    slowest: dict[int, float] = {}  # second -> slowest submit_many call in it (seconds)
    lag: dict[int, int] = {}  # second -> most runs behind schedule in it

    def report(final: bool) -> None:
        now = int(time.time())
        secs = sorted(s for s in counts if final or s < now)
        if secs:
            out(
                {
                    "k": "offered",
                    "n": {s: counts.pop(s) for s in secs},
                    "slow": {s: slowest.pop(s, 0.0) for s in secs},
                    "lag": {s: lag.pop(s, 0) for s in secs},
                    "total": done,
                }
            )

    tick, next_report = 1, t0 + 1.0
    batch = max(1, math.ceil(args.rate * TICK))  # runs per call at the usual pace
    while not stop.is_set():
        now = time.time()
        if now >= end:
            break
        due = int(args.rate * (now - t0))
        behind = due - done
        if behind > 0:
            n = min(behind, batch)
            c = time.perf_counter()
            noop.submit_many([{"i": done + k} for k in range(n)])
            call = time.perf_counter() - c
            done += n
            sec = int(time.time())
            counts[sec] += n
            slowest[sec] = max(slowest.get(sec, 0.0), call)
            lag[sec] = max(lag.get(sec, 0), behind)
        if time.time() >= next_report:
            report(False)
            next_report += 1.0
        if behind > batch:
            continue  # (catching up: the next call at once)
        at = t0 + tick * TICK
        tick = max(tick + 1, int((time.time() - t0) / TICK) + 1)  # (skip ticks missed)
        stop.wait(max(0.0, at - time.time()))
    report(True)
    out({"k": "submit-end", "total": done, "at": time.time()})
    app.close()


def instrument_prune(out: Out) -> bool:
    """Time every prune the worker runs in the background (``App(retention=...)``) by
    wrapping the engine's ``prune`` in this process; report those that removed runs."""
    try:
        from mainspring.engine import Engine
    except ImportError:
        return False
    original = getattr(Engine, "prune", None)
    if original is None:
        return False

    @functools.wraps(original)
    def timed(self: Any, *a: Any, **kw: Any) -> Any:
        start = time.time()
        n = original(self, *a, **kw)
        if n:
            out({"k": "prune", "start": start, "end": time.time(), "runs": n})
        return n

    Engine.prune = timed  # type: ignore[method-assign]
    return True


def role_work(args: argparse.Namespace) -> None:
    out = Out()
    stop = stop_event(terminate_self=True)
    app = ms.App(args.url, retention=dt.timedelta(seconds=args.retention))
    declare(app)
    app.open()
    if not instrument_prune(out):
        out({"k": "warning", "msg": "could not time the background prunes (no Engine.prune)"})
    counts: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    def on_attempt(done: Any) -> None:
        with lock:
            counts[int(time.time() * 10)] += 1  # (per 0.1 s)

    def report(final: bool) -> None:
        now = int(time.time() * 10)
        with lock:
            secs = sorted(s for s in counts if final or s < now)
            n = {s: counts.pop(s) for s in secs}
        if n:
            out({"k": "done", "n": n})

    def reporter() -> None:
        while not stop.wait(1.0):
            report(False)

    threading.Thread(target=reporter, daemon=True).start()
    out({"k": "ready", "pid": os.getpid()})
    try:
        app.run_worker(concurrency=args.concurrency, on_attempt=on_attempt)
    finally:
        stop.set()
        report(True)
        out({"k": "work-end", "at": time.time()})
        app.close()


def role_compact(args: argparse.Namespace) -> None:
    out, stop = Out(), stop_event()
    app = ms.App(args.url, retention=dt.timedelta(seconds=args.retention))
    app.open()
    compact = getattr(app, "compact", None)
    if compact is None:
        out({"k": "warning", "msg": "App.compact does not exist (yet): no compaction ran"})
        return
    out({"k": "ready", "pid": os.getpid()})
    k = 1
    while True:
        at = args.t0 + k * args.compact_every
        if at >= args.t_end or not sleep_until(at, stop):
            break
        start = time.time()
        try:
            result = compact()
            out({"k": "compact", "start": start, "end": time.time(), "result": repr(result)})
        except Exception as exc:
            out({"k": "compact", "start": start, "end": time.time(), "error": repr(exc)})
        k += 1
    stop.wait()  # (alive until the end, so that its RSS is sampled to the end)
    app.close()


# --------------------------------------------------------------------------- measuring


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:  # (macOS)
        kb = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True)
        return int(kb.stdout.strip()) / 1024 if kb.stdout.strip() else None
    except (OSError, ValueError):
        return None


TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


class Child:
    """One role's process: its JSON lines go to ``on_line``, its stderr to a log file."""

    def __init__(self, name: str, cmd: list[str], log: Path, on_line: Any) -> None:
        self.name = name
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,  # (a ^C reaches the parent only; it stops the children)
        )
        self.on_line = on_line
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                self.on_line(self.name, json.loads(line))
            except ValueError:
                continue

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(10)
        self.log.close()
        return rc


class Soak:
    """One store and its processes, and everything measured on them."""

    def __init__(self, kind: str, args: argparse.Namespace, workdir: Path) -> None:
        self.kind = kind
        self.args = args
        self.workdir = workdir
        self.lock = threading.Lock()
        self.children: list[Child] = []
        self.done: collections.Counter[int] = collections.Counter()  # attempts ended, per s
        self.done_ds: collections.Counter[int] = collections.Counter()  # per 0.1 s
        self.offered: collections.Counter[int] = collections.Counter()
        self.slow: dict[int, float] = {}
        self.lag: dict[int, int] = {}
        self.prunes: list[dict[str, Any]] = []
        self.vacuums: list[dict[str, Any]] = []
        self.stopped = threading.Event()
        self.compactions: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.submitted = 0
        self.samples: list[dict[str, Any]] = []
        self.cpu_before: dict[str, float] = {}
        self.drop: Any = None
        if kind == "sqlite":
            self.path = workdir / "soak.db"
            self.url = f"sqlite:///{self.path}"
            self.label = "SQLite (WAL, synchronous=FULL)"
            self.short = self.label
        else:
            import psycopg

            self.db = f"bench_soak_{os.getpid()}"
            self.admin = psycopg.connect(args.pg_url, autocommit=True)
            self.admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            self.admin.execute(f'CREATE DATABASE "{self.db}"')
            base = args.pg_url.split("?", 1)[0].rsplit("/", 1)[0]
            self.url = f"{base}/{self.db}?schema=soak"
            self.sizer = psycopg.connect(f"{base}/{self.db}", autocommit=True)
            self.server = {
                k: str(self.sizer.execute(f"SHOW {k}").fetchone()[0])  # type: ignore[index]
                for k in ("autovacuum", "fsync", "synchronous_commit")
            }
            self.label = (
                f"PostgreSQL {self.admin.info.server_version // 10000} (database {self.db}, "
                f"schema soak; autovacuum {self.server['autovacuum']}, fsync "
                f"{self.server['fsync']}, synchronous_commit {self.server['synchronous_commit']})"
            )
            self.short = (
                f"PostgreSQL {self.admin.info.server_version // 10000} (autovacuum "
                f"{self.server['autovacuum']}"
                + (f", VACUUM every {args.vacuum_every:g} s)" if args.vacuum_every else ")")
            )
            if self.server["autovacuum"] != "on" and not args.vacuum_every:
                self.warnings.append(
                    "the server's autovacuum is off: nothing reclaims dead rows, so the "
                    "store's size cannot level off on this server; turn it on (ALTER SYSTEM "
                    "SET autovacuum = on; SELECT pg_reload_conf()) or pass --vacuum-every"
                )
                print(f"[pg] warning: {self.warnings[-1]}", flush=True)
        self.app = ms.App(self.url)
        declare(self.app)
        self.app.open()  # (creates the store and records the task before the processes start)

    # -- the processes --------------------------------------------------------------------
    def start(self, t0: float, t_end: float) -> None:
        a = self.args
        base = [sys.executable, str(Path(__file__).resolve()), "--url", self.url]
        base += ["--retention", str(a.retention), "--t0", repr(t0), "--t_end", repr(t_end)]
        roles = [("submit", ["--role", "submit", "--rate", str(a.rate)])]
        roles += [
            (f"work{i + 1}" if a.workers > 1 else "work", ["--role", "work"])
            for i in range(a.workers)
        ]
        roles += [("compact", ["--role", "compact", "--compact-every", str(a.compact_every)])]
        for name, extra in roles:
            cmd = [*base, *extra, "--concurrency", str(a.concurrency)]
            log = self.workdir / f"{self.kind}-{name}.log"
            self.children.append(Child(name, cmd, log, self.on_line))
        if self.kind == "pg" and a.vacuum_every:
            threading.Thread(target=self._vacuum, args=(t0, t_end), daemon=True).start()

    def _vacuum(self, t0: float, t_end: float) -> None:
        """``--vacuum-every``: a plain ``VACUUM (ANALYZE)`` of the throwaway database on a
        schedule, in place of a server whose autovacuum is off."""
        import psycopg

        with psycopg.connect(self.url.split("?", 1)[0], autocommit=True) as con:
            k = 1
            while True:
                at = t0 + k * self.args.vacuum_every
                if at >= t_end or self.stopped.wait(max(0.0, at - time.time())):
                    return
                start = time.time()
                con.execute("VACUUM (ANALYZE)")
                self.vacuums.append({"start": start, "end": time.time()})
                k += 1

    def on_line(self, name: str, ev: dict[str, Any]) -> None:
        k = ev.get("k")
        with self.lock:
            if k == "done":
                for s, n in ev["n"].items():
                    self.done_ds[int(s)] += n
                    self.done[int(s) // 10] += n
            elif k == "offered":
                for s, n in ev["n"].items():
                    self.offered[int(s)] += n
                for s, v in ev["slow"].items():
                    self.slow[int(s)] = max(self.slow.get(int(s), 0.0), v)
                for s, v in ev["lag"].items():
                    self.lag[int(s)] = max(self.lag.get(int(s), 0), v)
                self.submitted = ev["total"]
            elif k == "submit-end":
                self.submitted = ev["total"]
            elif k == "prune":
                self.prunes.append({**ev, "by": name})
            elif k == "compact":
                self.compactions.append(ev)
                took = ev["end"] - ev["start"]
                what = ev.get("error") or f"-> {ev.get('result')}"
                print(f"[{self.kind}] compaction took {took:.2f} s {what}", flush=True)
            elif k == "warning":
                self.warnings.append(f"{name}: {ev['msg']}")
                print(f"[{self.kind}] warning: {name}: {ev['msg']}", flush=True)

    def child(self, prefix: str) -> list[Child]:
        return [c for c in self.children if c.name.startswith(prefix)]

    # -- sampling -----------------------------------------------------------------------
    def wal_bytes(self) -> int | None:
        if self.kind != "sqlite":
            return None
        wal = Path(f"{self.path}-wal")
        return wal.stat().st_size if wal.exists() else 0

    def size_bytes(self) -> int:
        if self.kind == "sqlite":
            files = [self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")]
            return sum(p.stat().st_size for p in files if p.exists())
        row = self.sizer.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'soak' AND c.relkind IN ('r', 'p', 'm', 'S')"
        ).fetchone()
        return int(row[0]) if row else 0

    def tables(self) -> dict[str, int]:
        """Bytes per table (with its indexes and TOAST) on PostgreSQL; per table or index
        on SQLite (``dbstat``, a scan of the file: only at the end), and its free pages."""
        if self.kind == "pg":
            rows = self.sizer.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'soak' AND c.relkind IN ('r', 'p') ORDER BY 2 DESC"
            ).fetchall()
            return {name: int(size) for name, size in rows}
        import sqlite3

        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                rows = con.execute(
                    "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
                ).fetchall()
                free = con.execute("PRAGMA freelist_count").fetchone()[0]
                page = con.execute("PRAGMA page_size").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error as exc:
            return {f"(dbstat: {exc})": 0}
        return {**{name: int(size) for name, size in rows}, "(free pages)": free * page}

    def sample(self, at: float) -> dict[str, Any]:
        """A sample due at ``at`` (wall clock), taken now."""
        t = time.time()
        rss, cpu = {}, {}
        for c in self.children:
            if c.proc.poll() is None:
                rss[c.name] = rss_mb(c.proc.pid)
                now = cpu_seconds(c.proc.pid)
                if now is not None:
                    cpu[c.name] = now - self.cpu_before.get(c.name, now)
                    self.cpu_before[c.name] = now
        stats = self.app.stats()
        s = {
            "at": at,
            "t": t,
            "size": self.size_bytes(),
            "wal": self.wal_bytes(),
            "rss": rss,
            "cpu": cpu,
            "backlog": stats.get("ready", 0) + stats.get("scheduled", 0),
            "runs": sum(stats.values()),
            "stats": stats,
            "tables": self.tables() if self.kind == "pg" else None,
        }
        self.samples.append(s)
        return s

    def live_line(self, s: dict[str, Any], t0: float) -> str:
        prev = self.samples[-2]["t"] if len(self.samples) > 1 else t0
        with self.lock:  # (the workers report each second once it is over: look 2 s back)
            secs = range(int(prev) - 2, int(s["t"]) - 2)
            drain = sum(self.done.get(x, 0) for x in secs) / max(1, len(secs))
        rss = " / ".join(f"{k} {v:.0f}" for k, v in s["rss"].items() if v is not None)
        return (
            f"[{self.kind}] {clock(s['at'] - t0)}  size {s['size'] / 1e6:.1f} MB  rss {rss} MB  "
            f"drain ~{drain:.0f}/s  backlog {s['backlog']:,}  runs {s['runs']:,}"
        )

    # -- the end ------------------------------------------------------------------------
    def stop_submitting(self, interrupted: bool) -> None:
        """The submitter stops by itself at the end of the run (or now, if interrupted);
        the compactor once a compaction under way is over."""
        self.stopped.set()
        for c in self.child("compact") + (self.child("submit") if interrupted else []):
            c.signal()

    def finish(self) -> dict[str, Any]:
        end: dict[str, Any] = {}
        for c in self.child("submit"):
            c.wait(60)
        for c in self.child("compact"):
            c.wait(900)  # (a compaction under way finishes first)
        stats = self.app.stats()
        left = sum(stats.get(s, 0) for s in ("ready", "scheduled", "leased", "running"))
        end["backlog_at_end"] = left
        start = time.time()
        limit = start + min(900.0, 60.0 + 3 * left / max(1.0, self.args.rate))
        while left and time.time() < limit:
            time.sleep(0.5)
            stats = self.app.stats()
            left = sum(stats.get(s, 0) for s in ("ready", "scheduled", "leased", "running"))
        end["drained_in"] = time.time() - start
        end["left"] = left
        for c in self.child("work"):
            c.signal()
        end["exit"] = {c.name: c.wait(120) for c in self.children}
        end["final_size"] = self.size_bytes()
        end["tables"] = self.tables()
        end["stats"] = self.app.stats()
        print(f"[{self.kind}] workers stopped; verifying the store...", flush=True)
        start = time.time()
        try:
            report = self.app.verify()
            end["verify"] = {"ok": report.ok, "problems": [str(p) for p in report.problems]}
        except Exception as exc:
            end["verify"] = {"ok": False, "problems": [f"verify raised {exc!r}"]}
        end["verify_seconds"] = time.time() - start
        return end

    def close(self, keep: bool) -> None:
        for c in self.children:
            c.signal(signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.app.close()
        if self.kind == "pg":
            self.sizer.close()
            if not keep:
                self.admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            self.admin.close()
        elif not keep:
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                p.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the report


def clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


def mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def rate_over(counts: dict[int, int], a: float, b: float) -> float:
    secs = range(int(a), int(b))
    return sum(counts.get(s, 0) for s in secs) / max(1, len(secs))


def analyse(soak: Soak, t0: float, t_end: float) -> dict[str, Any]:
    """Rows of the table, and the verdicts."""
    rows = []
    samples = soak.samples
    for i, s in enumerate(samples):
        a = samples[i - 1]["t"] if i else None
        row: dict[str, Any] = {
            "t": s["at"] - t0,  # (nominal: the intervals use the times actually sampled)
            "size_mb": s["size"] / 1e6,
            "wal_mb": None if s["wal"] is None else s["wal"] / 1e6,
            "rss": s["rss"],
            "backlog": s["backlog"],
            "runs": s["runs"],
        }
        if a is not None:
            b = s["t"]
            workers = [v for k, v in s["cpu"].items() if k.startswith("work")]
            row["cpu_work"] = 100 * max(workers) / (b - a) if workers else None
            row["offered"] = rate_over(soak.offered, a, b)
            row["drain"] = rate_over(soak.done, a, b)
            row["slow_ms"] = 1000 * max(
                (soak.slow.get(x, 0.0) for x in range(int(a), int(b))), default=0.0
            )
            pr = [p for p in soak.prunes if a <= p["start"] < b]
            # (a compaction marks the interval it started in, and the next ones it ran in
            # for a second or more)
            co = [
                c
                for c in soak.compactions
                if a <= c["start"] < b or min(b, c["end"]) - max(a, c["start"]) >= 1.0
            ]
            marks = []
            if pr:
                marks.append(f"P{len(pr)} ({sum(p['runs'] for p in pr):,})")
            for c in co:
                if a <= c["start"] < b:
                    marks.append(
                        f"C {c['end'] - c['start']:.1f}s" + (" ERR" if "error" in c else "")
                    )
                else:
                    marks.append("C cont.")
            for v in soak.vacuums:
                if a <= v["start"] < b:
                    marks.append(f"V {v['end'] - v['start']:.1f}s")
            row["marks"] = " ".join(marks)
            row["compacting"] = bool(co)
        rows.append(row)

    span = t_end - t0
    middle = [r for r in rows if span / 3 < r["t"] <= 2 * span / 3]
    last = [r for r in rows if r["t"] > 2 * span / 3]
    level: list[tuple[str, float | None, float | None]] = []

    def levelled(label: str, values: Any) -> None:
        m = [v for v in (values(r) for r in middle) if v is not None]
        z = [v for v in (values(r) for r in last) if v is not None]
        level.append((label, max(m) if m else None, max(z) if z else None))

    levelled("store size (MB)", lambda r: r["size_mb"])
    names = sorted({k for s in samples for k in s["rss"]}, key=role_order)
    for name in names:
        levelled(f"RSS {name} (MB)", lambda r, n=name: r["rss"].get(n))
    kept = (
        max((r["runs"] for r in middle), default=None),
        max((r["runs"] for r in last), default=None),
    )

    # the drain rate while a prune or a compaction ran: in the 0.1 s slots they overlapped
    # (the verdict), and in the whole seconds they touched (a stall and its catch-up)
    def slots_of(windows: list[dict[str, Any]], res: int) -> set[int]:
        out: set[int] = set()
        for w in windows:
            out.update(range(int(w["start"] * res), int(w["end"] * res) + 1))
        return out

    def drain_view(counts: dict[int, int], res: int) -> dict[str, tuple[float | None, float]]:
        within = range(int(t0 * res) + res, int(t_end * res) - res)  # (not the edge seconds)
        kinds = {
            "prune": slots_of(soak.prunes, res),
            "compact": slots_of(soak.compactions, res),
            "vacuum": slots_of(soak.vacuums, res),
        }
        kinds["either"] = kinds["prune"] | kinds["compact"]
        other = kinds["either"] | kinds["vacuum"]
        kinds["quiet"] = {x for x in within if x not in other}
        out: dict[str, tuple[float | None, float]] = {}
        for kind, chosen in kinds.items():
            xs = [counts.get(x, 0) for x in within if x in chosen]
            out[kind] = (sum(xs) * res / len(xs) if xs else None, len(xs) / res)
        return out

    drain = drain_view(soak.done_ds, 10)
    drain_s = drain_view(soak.done, 1)
    by_interval = {
        "with": mean([r["drain"] for r in rows[1:] if r["compacting"]]),
        "without": mean([r["drain"] for r in rows[1:] if not r["compacting"]]),
    }
    submitted = sum(soak.offered.values())
    drained = sum(v for s, v in soak.done.items() if s < int(t_end))
    return {
        "rows": rows,
        "names": names,
        "level": level,
        "kept": kept,
        "drain": drain,
        "drain_s": drain_s,
        "by_interval": by_interval,
        "offered_rate": submitted / span,
        "drained_rate": drained / span,
        "submitted": submitted,
        "max_lag": max(soak.lag.values(), default=0),
    }


def role_order(name: str) -> tuple[int, str]:
    return ({"submit": 0, "compact": 2}.get(name, 1), name)


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "n/a" if v is None else format(v, spec)


def render(soak: Soak, res: dict[str, Any], end: dict[str, Any], args: Any, t0: float) -> list[str]:
    names = res["names"]
    out = [f"### {soak.label}", ""]
    wal = soak.kind == "sqlite"
    head = ["time", "size MB", *(["of which WAL"] if wal else [])]
    head += [*[f"RSS {n} MB" for n in names], "worker CPU %"]
    head += ["offered/s", "drain/s", "backlog", "runs kept", "slowest submit ms", "prune / compact"]
    out.append("| " + " | ".join(head) + " |")
    out.append("| " + " | ".join(["---:"] * (len(head) - 1) + ["---"]) + " |")
    for r in res["rows"]:
        cells = [clock(r["t"]), f"{r['size_mb']:.1f}", *([fmt(r["wal_mb"])] if wal else [])]
        cells += [fmt(r["rss"].get(n)) for n in names]
        cells += [fmt(r.get("cpu_work"), ".0f"), fmt(r.get("offered"), ".0f")]
        cells += [fmt(r.get("drain"), ".0f"), f"{r['backlog']:,}", f"{r['runs']:,}"]
        cells += [fmt(r.get("slow_ms"), ".0f"), r.get("marks", "")]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    m = args.minutes * 60
    mid, last = f"{clock(m / 3)}-{clock(2 * m / 3)}", f"{clock(2 * m / 3)}-{clock(m)}"
    for label, a, b in res["level"]:
        if a is None or b is None:
            out.append(f"- {label}: n/a (no samples in one of the windows)")
            continue
        a, b = round(a, 1), round(b, 1)  # (compared as the table shows them: to 0.1 MB)
        ok = b <= a
        growth = f"{b - a:+.1f} MB, {100 * (b - a) / a:+.1f}%" if a else f"{b - a:+.1f} MB"
        out.append(
            f"- {label}: max {a:.1f} in {mid}, {b:.1f} in {last} ({growth}): "
            f"{'levels off' if ok else 'still growing'} ({'met' if ok else 'missed'})"
        )
    a, b = res["kept"]
    if a is not None and b is not None:
        out.append(
            f"- runs kept (not a target; steady state about rate x retention = "
            f"{args.rate * args.retention:,.0f} plus a prune interval): max {a:,} in {mid}, "
            f"{b:,} in {last} ("
            + (
                "levels off"
                if b <= a
                else "about level"
                if b <= 1.1 * a
                else "pruning falls behind"
            )
            + ")"
        )
    d, d1 = res["drain"], res["drain_s"]
    q, nq = d["quiet"]
    v, n = d["either"]
    if v is None or q is None:
        out.append("- drain/s while a prune or a compaction ran: n/a (none ran)")
    else:
        fall = 100 * (1 - v / q) if q else 0.0
        out.append(
            f"- drain/s while a prune or a compaction ran (the 0.1 s slots they overlapped, "
            f"{n:,.1f} s in all): {v:.0f}, in the other {nq:,.0f} s: {q:.0f}: fall {fall:.1f}% "
            f"({'met' if fall <= 10 else 'missed'}, at most 10%)"
        )
        parts = []
        for key, what in (
            ("prune", "a prune"),
            ("compact", "a compaction"),
            ("vacuum", "a VACUUM (--vacuum-every)"),
        ):
            r, secs = d[key]
            if r is not None:
                parts.append(f"{what} {r:.0f} ({secs:,.1f} s)")
        out.append("- drain/s while " + "; while ".join(parts))
        v1, n1 = d1["either"]
        q1, nq1 = d1["quiet"]
        out.append(
            f"- drain/s in the whole seconds a prune or a compaction touched (a stall and its "
            f"catch-up together): {fmt(v1, '.0f')} in {n1:,.0f} s, in the other {nq1:,.0f} s: "
            f"{fmt(q1, '.0f')}"
        )
    bi = res["by_interval"]
    out.append(
        f"- drain/s per {args.sample:g} s interval with a compaction: {fmt(bi['with'], '.0f')}, "
        f"without: {fmt(bi['without'], '.0f')}"
    )
    out.append(
        f"- offered {res['offered_rate']:.1f}/s (target {args.rate:g}/s; at most "
        f"{res['max_lag']:,} runs behind schedule), drained {res['drained_rate']:.1f}/s over "
        f"{clock(args.minutes * 60)}; {res['submitted']:,} submitted"
    )
    out.append(
        f"- at the end: {end['backlog_at_end']:,} runs not finished, drained in "
        f"{end['drained_in']:.1f} s ({end['left']:,} left); store {end['final_size'] / 1e6:.1f} MB, "
        f"runs kept {sum(end['stats'].values()):,}; processes exited with "
        + ", ".join(f"{k} {v}" for k, v in end["exit"].items())
    )
    prunes, comps = soak.prunes, soak.compactions
    if prunes:
        took = [p["end"] - p["start"] for p in prunes]
        out.append(
            f"- {len(prunes)} background prunes removed {sum(p['runs'] for p in prunes):,} runs, "
            f"{mean(took) or 0:.2f} s on average, longest {max(took):.2f} s"
        )
    if comps:
        took = [c["end"] - c["start"] for c in comps]
        errors = [c["error"] for c in comps if "error" in c]
        out.append(
            f"- {len(comps)} compactions: "
            + ", ".join(
                f"{clock(c['start'] - t0)} {t:.2f} s" for c, t in zip(comps, took, strict=True)
            )
            + (f"; errors: {'; '.join(errors)}" if errors else "")
        )
    if soak.vacuums:
        took = [v["end"] - v["start"] for v in soak.vacuums]
        out.append(
            f"- {len(took)} VACUUM (ANALYZE) of the database (--vacuum-every "
            f"{args.vacuum_every:g} s): {mean(took) or 0:.2f} s on average, longest {max(took):.2f} s"
        )
    tables = dict(end["tables"])
    free = tables.pop("(free pages)", None)
    largest = sorted(tables.items(), key=lambda kv: -kv[1])[:6]
    out.append(
        "- at the end, the largest "
        + ("tables (with indexes and TOAST)" if soak.kind == "pg" else "tables and indexes")
        + ": "
        + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in largest)
        + ("" if free is None else f"; free pages {free / 1e6:.1f} MB")
    )
    for w in soak.warnings:
        out.append(f"- warning: {w}")
    v = end["verify"]
    out.append(
        f"- verify: {'ok' if v['ok'] else 'FAILED'} ({end['verify_seconds']:.1f} s)"
        + ("" if v["ok"] else ": " + "; ".join(v["problems"][:5]))
    )
    out.append("")
    return out


def plot(
    soaks: list[Soak], results: list[dict[str, Any]], path: Path, t0: float, t_end: float
) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no plot"
    fig, axes = plt.subplots(
        4, len(soaks), figsize=(7 * len(soaks), 11), sharex=True, squeeze=False
    )
    for col, (soak, res) in enumerate(zip(soaks, results, strict=True)):
        rows = res["rows"]
        x = [r["t"] / 60 for r in rows]
        size, rss, drain, backlog = (axes[i][col] for i in range(4))
        size.set_title(soak.short, fontsize=10)
        size.plot(x, [r["size_mb"] for r in rows], marker=".", label="total")
        if soak.kind == "sqlite":
            size.plot(x, [r["wal_mb"] for r in rows], marker=".", label="of which WAL")
            size.legend(fontsize=8)
        size.set_ylabel("store size (MB)")
        for n in res["names"]:
            rss.plot(x, [r["rss"].get(n) for r in rows], marker=".", label=n)
        rss.set_ylabel("RSS (MB)")
        rss.legend(fontsize=8)
        secs = sorted(s for s in soak.done if t0 <= s < int(t_end))  # (whole seconds)
        prunes = [p for p in soak.prunes if p["start"] < t_end]
        drain.plot(
            [(s - t0) / 60 for s in secs],
            [soak.done[s] for s in secs],
            color="0.75",
            linewidth=0.5,
            label="per second",
        )
        drain.plot(x[1:], [r["drain"] for r in rows[1:]], marker=".", label="per sample")
        drain.plot(x[1:], [r["offered"] for r in rows[1:]], linestyle="--", label="offered")
        if prunes:
            top = max([soak.done.get(s, 0) for s in secs] + [1])
            drain.plot(
                [(p["start"] - t0) / 60 for p in prunes],
                [top * 1.05] * len(prunes),
                "|",
                color="tab:green",
                label="prune",
            )
        drain.set_ylabel("runs/s")
        drain.legend(fontsize=8)
        backlog.plot(x, [r["backlog"] for r in rows], marker=".", label="backlog")
        backlog.plot(x, [r["runs"] for r in rows], marker=".", label="runs kept")
        backlog.set_ylabel("runs")
        backlog.set_xlabel("minutes")
        backlog.legend(fontsize=8)
        for v in soak.vacuums:
            for ax in (size, rss, drain, backlog):
                ax.axvline((v["start"] - t0) / 60, color="0.5", linewidth=0.6, linestyle="--")
        for c in soak.compactions:
            for ax in (size, rss, drain, backlog):
                ax.axvspan((c["start"] - t0) / 60, (c["end"] - t0) / 60, color="tab:red", alpha=0.3)
                ax.axvline((c["start"] - t0) / 60, color="tab:red", linewidth=0.8, linestyle=":")
    vac = " grey dashes: VACUUM (--vacuum-every);" if any(s.vacuums for s in soaks) else ""
    fig.suptitle(f"mainspring soak (red: compactions;{vac} green ticks: prunes)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def host() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({model or platform.machine()}), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


# --------------------------------------------------------------------------- main


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", choices=["sqlite", "pg", "both"], default="both")
    p.add_argument("--minutes", type=float, default=60.0, help="length of the run (60)")
    p.add_argument("--rate", type=float, default=200.0, help="runs submitted per second (200)")
    p.add_argument("--retention", type=float, default=300.0, help="App(retention=) seconds (300)")
    p.add_argument("--compact-every", type=float, default=600.0, help="seconds (600)")
    p.add_argument("--sample", type=float, default=60.0, help="seconds between samples (60)")
    p.add_argument("--workers", type=int, default=1, help="worker processes per store (1)")
    p.add_argument("--concurrency", type=int, default=8, help="slots per worker process (8)")
    p.add_argument(
        "--out",
        default=str(REPO / "benchmarks" / "soak"),
        help="<out>.png for the plot, results-<name>.md beside it (benchmarks/soak)",
    )
    p.add_argument("--pg-url", default=PG_URL, help="server for a throwaway database")
    p.add_argument(
        "--vacuum-every",
        type=float,
        default=0.0,
        help="PostgreSQL: VACUUM the store every N seconds (for a server with autovacuum off)",
    )
    p.add_argument("--keep", action="store_true", help="keep the stores (SQLite file, PG database)")
    p.add_argument("--no-write", action="store_true", help="print only: no plot, no results file")
    # (the child processes)
    p.add_argument("--role", choices=["submit", "work", "compact"], help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    p.add_argument("--t_end", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role is None and not args.no_write:  # (not after an hour: now)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    return args


def main() -> int:
    args = parse()
    if args.role:
        {"submit": role_submit, "work": role_work, "compact": role_compact}[args.role](args)
        return 0
    kinds = ["sqlite", "pg"] if args.store == "both" else [args.store]
    work = REPO / "benchmarks" / ".work" / f"soak-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/soak.py " + shlex.join(sys.argv[1:])
    started = dt.datetime.now(dt.UTC)
    print(
        f"soak: {', '.join(kinds)}; {args.minutes:g} min at {args.rate:g} runs/s, retention "
        f"{args.retention:g} s, compaction every {args.compact_every:g} s, a sample every "
        f"{args.sample:g} s; {args.workers} worker process(es) x {args.concurrency} slots; "
        f"logs in {work}",
        flush=True,
    )
    soaks: list[Soak] = []
    ends: list[dict[str, Any]] = []
    stop = threading.Event()  # a first ^C or SIGTERM: stop early and report; a second: abort

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        for kind in kinds:
            soaks.append(Soak(kind, args, work))
        t0 = time.time() + START_DELAY
        t_end = t0 + args.minutes * 60
        for s in soaks:
            s.start(t0, t_end)
        interrupted = None
        try:
            stop.wait(max(0.0, t0 - time.time()))
            for s in soaks:
                s.sample(t0)
            k = 1
            while not stop.is_set():
                at = min(t0 + k * args.sample, t_end)
                if stop.wait(max(0.0, at - time.time())):
                    break
                for s in soaks:
                    sample = s.sample(at)
                    print(s.live_line(sample, t0), flush=True)
                    dead = [  # (the compactor exits by itself after its last compaction)
                        c.name
                        for c in s.children
                        if c.proc.poll() is not None and (c.name != "compact" or c.proc.returncode)
                    ]
                    if dead and at < t_end:
                        raise RuntimeError(f"[{s.kind}] process(es) exited early: {dead}")
                if at >= t_end:
                    break
                k += 1
        except KeyboardInterrupt:
            stop.set()
        if stop.is_set():
            interrupted = time.time()
            print("interrupted: stopping and reporting what was measured", flush=True)
            t_end = interrupted
            args.minutes = (t_end - t0) / 60
        for s in soaks:
            s.stop_submitting(interrupted is not None)
        for s in soaks:
            ends.append(s.finish())
        results = [analyse(s, t0, t_end) for s in soaks]
        lines = [
            "# Soak: retention and compaction under a steady load",
            "",
            f"Run {started:%Y-%m-%d %H:%M} UTC on {host()}. Command: `{command}`.",
            f"{clock(t_end - t0)} (min:s) at {args.rate:g} runs/s offered (`submit_many` every "
            f"{TICK * 1000:.0f} ms), `App(retention={args.retention:g} s)` (the workers prune "
            f"in the background), `app.compact()` every {args.compact_every:g} s, sampled every "
            f"{args.sample:g} s; {args.workers} worker process(es) x {args.concurrency} slots, "
            "no-op handler.",
        ]
        if len(soaks) > 1:
            lines.append(
                f"Both stores ran at the same time, sharing the machine's {os.cpu_count()} "
                "cores (with the PostgreSQL server)."
            )
        if interrupted is not None:
            lines.append(f"**Interrupted** after {clock(t_end - t0)}.")
        lines += [
            "",
            "Columns: RSS per process (VmRSS); worker CPU % of one core over the interval; "
            "offered and drain per second over the interval (runs submitted, attempts "
            "finished); backlog = ready + scheduled and runs kept (every state) from "
            "`app.stats()` at the sample; the slowest `submit_many` call of the interval; "
            "Pn (runs): n background prunes and the runs they removed; C: a compaction "
            "started and how long it took.",
            "",
        ]
        for s, res, end in zip(soaks, results, ends, strict=True):
            lines += render(s, res, end, args, t0)
        out = Path(args.out)
        png = out.with_name(out.name + ".png")
        md = out.with_name(f"results-{out.name}.md")
        if not args.no_write:
            problem = plot(soaks, results, png, t0, t_end)
            if problem:
                lines.append(f"(plot: {problem})")
            else:
                rel = os.path.relpath(png, md.parent)
                lines += [f"![soak curves]({rel})", ""]
        text = "\n".join(lines)
        print()
        print(text)
        (work / "soak-data.json").write_text(
            json.dumps(
                {
                    "t0": t0,
                    "t_end": t_end,
                    "stores": {
                        s.kind: {
                            "samples": s.samples,
                            "done_per_tenth_s": s.done_ds,
                            "offered": s.offered,
                            "prunes": s.prunes,
                            "compactions": s.compactions,
                            "vacuums": s.vacuums,
                            "end": e,
                        }
                        for s, e in zip(soaks, ends, strict=True)
                    },
                },
                default=str,
            )
        )
        if not args.no_write:
            md.write_text(text + "\n")
            print(f"wrote {md} and {png}; raw samples in {work / 'soak-data.json'}")
        ok = all(e["verify"]["ok"] for e in ends)
        return 0 if ok else 1
    finally:
        for s in soaks:
            s.close(args.keep)


if __name__ == "__main__":
    sys.exit(main())
