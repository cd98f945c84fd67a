#!/usr/bin/env python3
"""What one run costs, measured three ways, for mainspring and Huey on SQLite: the worker
that drains it, and the single submit that enqueued it.

    python benchmarks/cost.py                 # 3,000 no-op tasks per measure
    python benchmarks/cost.py --n 1000 --no-callgrind

Each measure preloads N no-op tasks into a fresh store (WAL + ``synchronous=FULL``), then
starts one worker process of 8 slots that drains them and exits (it stops once the tasks'
own stamps count N and the store agrees). Per run:

- CPU: the worker process's CPU time (user + system, ``time.process_time``) from its
  release to the end of the drain, divided by N;
- bytes written: the ``wchar`` of ``/proc/self/io`` over the same window (every ``write``
  and ``pwrite``: WAL frames, checkpoints), divided by N, and in 4 KiB pages;
- syncs: ``fdatasync`` + ``fsync`` calls of the worker process (``strace -f -c``, a second
  run), divided by N: at ``synchronous=FULL`` one per commit, so the commits per run;
- instructions: the worker process under ``valgrind --tool=callgrind`` (a third run),
  minus the same process draining nothing (its start-up and exit), divided by N.

The worker is the peer's own (peers/*_peer.py ``run_worker``, in the peer's environment:
benchmarks/.venvs/<peer>, made by run.py), the handler the same no-op (peers/timing.py).
Under valgrind threads run one at a time, so instruction counts are exact but not timings.

The submit (the producer's ``enqueue``, one call per task into a fresh store, after 200
to warm up): wall time and CPU per submit, and, from a second run under ``strace`` (less
the same process submitting none), the WAL pages it writes (4 KiB ``pwrite`` calls to the
``-wal`` file) and its syncs. Then the disk's floor for that many pages: commits per
second of a bare loop (``sqlite3``, WAL + FULL, no engine) whose every commit rewrites
that many pages, the rate no code writing those pages could beat on this disk.
Writes ``results-cost.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import run as R  # benchmarks/run.py: environments and the report's preamble helpers

RESULTS = R.BENCH / "results-cost.md"
PAGE = 4096

WARM_UP = 200  # submits before the measured ones
SUBMITTERS = [("mainspring", "mainspring"), ("huey", "huey")]  # (label, run.py peer key)
PEERS = [  # (label, run.py peer key, extra environment)
    ("mainspring (def)", "mainspring", {}),
    ("mainspring (def, prefetch=8)", "mainspring", {"BENCH_PREFETCH": "8"}),
    ("huey", "huey", {}),
]


# --------------------------------------------------------------------------- worker side


def _peer_class(peer: str) -> Any:
    """The driver class of ``peers/<peer>_peer.py`` (in the peer's environment)."""
    from peers import timing

    module = __import__(f"peers.{peer}_peer", fromlist=["x"])
    return next(
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, timing.Peer) and v is not timing.Peer
    )


def worker(args: argparse.Namespace) -> None:
    """Drain ``args.n`` preloaded tasks with the peer's own worker, then exit; print the
    CPU and bytes written over the drain as one JSON line."""
    from peers import timing

    peer_class = _peer_class(args.peer)
    stamps = Path(args.stamps)
    os.environ["BENCH_STAMPS"] = str(stamps)
    peer = peer_class()
    peer.backend = "sqlite"
    peer.open(args.db, "full", "worker")
    go = threading.Event()
    threading.Thread(
        target=peer.run_worker, args=(8, go.set), name="bench-worker", daemon=True
    ).start()
    go.wait()
    cpu0, io0 = time.process_time(), _wchar()
    while timing.stamp_count(stamps) < args.n:
        time.sleep(0.01)
    checker = peer_class()
    checker.backend = "sqlite"
    checker.open(args.db, "full", "producer")
    checker.enqueued = args.n  # (what Peer.completed counts against, where it does)
    while checker.completed(stamps) < args.n:
        time.sleep(0.01)
    cpu, wrote = time.process_time() - cpu0, _wchar() - io0
    print(json.dumps({"cpu": cpu, "wchar": wrote}), flush=True)
    os._exit(0)  # (the peer's worker threads never return)


def submitter(args: argparse.Namespace) -> None:
    """Enqueue ``args.n`` tasks one call each into a fresh store (after a warm-up of 200);
    print the wall time, CPU and bytes written over them as one JSON line."""
    from peers import timing

    peer_class = _peer_class(args.peer)
    peer = peer_class()
    peer.backend = "sqlite"
    peer.open(args.db, "full", "producer")
    for i in range(WARM_UP):
        peer.enqueue(timing.payload(i))
    t0, cpu0, io0 = time.perf_counter(), time.process_time(), _wchar()
    for i in range(args.n):
        peer.enqueue(timing.payload(WARM_UP + i))
    wall, cpu, wrote = time.perf_counter() - t0, time.process_time() - cpu0, _wchar() - io0
    print(json.dumps({"wall": wall, "cpu": cpu, "wchar": wrote}), flush=True)
    peer.close()


def floor_rate(pages: float, seconds: float = 3.0) -> float:
    """Commits per second of a bare loop whose commits rewrite ``pages`` 4 KiB pages on
    average (WAL + synchronous=FULL): each row is a 3,000-byte blob, one per page."""
    import sqlite3
    import tempfile

    with tempfile.TemporaryDirectory(dir=R.WORK) as tmp:
        con = sqlite3.connect(os.path.join(tmp, "floor.db"), isolation_level=None)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = FULL")
        con.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, b BLOB)")
        rows = 5000
        con.execute("BEGIN")
        con.executemany("INSERT INTO p VALUES (?, ?)", ((i, bytes(3000)) for i in range(rows)))
        con.execute("COMMIT")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        commits, written, at = 0, 0, 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            k = (
                int((commits + 1) * pages) - written
            )  # (a fractional average: some commits one more)
            con.execute("BEGIN")
            for _ in range(k):
                con.execute("UPDATE p SET b = ? WHERE id = ?", (os.urandom(8) * 375, at))
                at = (at + 1) % rows
            con.execute("COMMIT")
            commits, written = commits + 1, written + k
        rate = commits / (time.perf_counter() - t0)
        con.close()
    return rate


def _wchar() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("wchar:")).split()[1])


# --------------------------------------------------------------------------- driver side


def preload(python: Path, env: dict[str, str], peer: str, db: Path, n: int) -> None:
    code = (
        "import sys; from peers import timing\n"
        f"m = __import__('peers.{peer}_peer', fromlist=['x'])\n"
        "cls = next(v for v in vars(m).values() if isinstance(v, type) and "
        "issubclass(v, timing.Peer) and v is not timing.Peer)\n"
        "p = cls(); p.backend = 'sqlite'; p.open(sys.argv[1], 'full', 'producer')\n"
        "p.preload([timing.payload(i) for i in range(int(sys.argv[2]))]); p.close()\n"
    )
    subprocess.run([str(python), "-c", code, str(db), str(n)], env=env, check=True)


def _peer_env(key: str, extra: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """The peer's interpreter (run.py's environments) and the environment to run it in."""
    python, extra_path = R.interpreter(R.PEERS[key])
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(R.BENCH), *extra_path])
    return python, env


def measure_submit(label: str, key: str, args: argparse.Namespace) -> dict[str, Any]:
    python, env = _peer_env(key, {})
    work = R.WORK / "cost" / f"submit-{key}"
    shutil.rmtree(work, ignore_errors=True)

    def submit(n: int, wrap: list[str], tag: str) -> str:
        folder = work / f"{tag}-{n}"
        folder.mkdir(parents=True)
        cmd = [*wrap, str(python), str(Path(__file__).resolve()), "--role", "submit"]
        cmd += ["--peer", key, "--db", str(folder / "store.db"), "--n", str(n)]
        done = subprocess.run(
            cmd, env=env, cwd=folder, capture_output=True, text=True, timeout=3600
        )
        if done.returncode != 0:
            raise RuntimeError(f"{label} {tag}: exit {done.returncode}: {done.stderr[-500:]}")
        return done.stdout

    n = args.n
    plain = json.loads(submit(n, [], "plain").strip().splitlines()[-1])
    counts = []
    for k in (0, n):  # (less the same process submitting none: its warm-up, open and close)
        trace = work / f"strace-{k}.txt"
        submit(
            k,
            ["strace", "-f", "-y", "-e", "trace=pwrite64,fdatasync,fsync", "-o", str(trace)],
            "strace",
        )
        text = trace.read_text(errors="replace")
        pages = len(re.findall(r"pwrite64\(\d+<[^>]*-wal>, .*, 4096, \d+\)", text))
        syncs = len(re.findall(r"\bf(?:data)?sync\(", text))
        counts.append((pages, syncs))
    out: dict[str, Any] = {
        "label": label,
        "submit": True,
        "rate": n / plain["wall"],
        "wall_us": plain["wall"] / n * 1e6,
        "cpu_us": plain["cpu"] / n * 1e6,
        "pages": (counts[1][0] - counts[0][0]) / n,
        "syncs": (counts[1][1] - counts[0][1]) / n,
    }
    out["floor"] = floor_rate(out["pages"])
    return out


def measure(
    label: str, key: str, extra: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    python, env = _peer_env(key, extra)
    work = R.WORK / "cost" / re.sub(r"\W+", "-", label).strip("-")
    shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {"label": label}

    def drain(n: int, wrap: list[str], tag: str) -> tuple[str, str]:
        folder = work / f"{tag}-{n}"
        (folder / "stamps").mkdir(parents=True)
        db = folder / "store.db"
        preload(python, env, key, db, n)
        cmd = [*wrap, str(python), str(Path(__file__).resolve()), "--role", "worker"]
        cmd += ["--peer", key, "--db", str(db), "--n", str(n), "--stamps", str(folder / "stamps")]
        done = subprocess.run(
            cmd, env=env, cwd=folder, capture_output=True, text=True, timeout=3600
        )
        if done.returncode != 0:
            raise RuntimeError(f"{label} {tag}: exit {done.returncode}: {done.stderr[-500:]}")
        return done.stdout, done.stderr

    n = args.n
    plain = json.loads(drain(n, [], "plain")[0].strip().splitlines()[-1])
    out["cpu_us"] = plain["cpu"] / n * 1e6
    out["bytes"] = plain["wchar"] / n
    traced = drain(n, ["strace", "-f", "-c", "-e", "trace=fdatasync,fsync"], "strace")[1]
    syncs = sum(
        int(m.group(1))
        for m in re.finditer(
            r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?f(?:data)?sync$", traced, re.M
        )
    )
    out["syncs"] = syncs / n
    if args.callgrind:
        counts = []
        for k in (0, n):
            prefix = work / f"callgrind-{k}.out"
            drain(k, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}"], f"cg{k}")
            text = prefix.read_text(errors="replace")
            total = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
            counts.append(int(total.group(1)) if total else 0)
        out["instructions"] = (counts[1] - counts[0]) / n
    return out


def render(rows: list[dict[str, Any]], args: argparse.Namespace, started: str, load: str) -> str:
    cmd = " ".join(["python benchmarks/cost.py", *sys.argv[1:]])
    lines = [
        "# What one run costs: the worker and the submit (SQLite, WAL + synchronous=FULL)",
        "",
        f"Run {started} UTC on {R._host()}. Command: `{cmd}`.",
        f"Load average (1 min) at start {load}, at end {R._load()}.",
        f"{args.n:,} preloaded no-op tasks, one worker process of 8 slots; per run drained.",
        "",
        "| worker | instructions | CPU µs | bytes written | 4 KiB pages | syncs (commits) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r.get("submit"):
            continue
        if "error" in r:
            lines.append(f"| {r['label']} | error: {r['error'][:80]} | | | | |")
            continue
        ins = f"{r['instructions'] / 1e6:.2f} M" if "instructions" in r else "n/a"
        lines.append(
            f"| {r['label']} | {ins} | {r['cpu_us']:.0f} | {r['bytes']:,.0f} | "
            f"{r['bytes'] / PAGE:.1f} | {r['syncs']:.3f} |"
        )
    submits = [r for r in rows if r.get("submit")]
    if submits:
        lines += [
            "",
            f"## The single submit ({args.n:,} calls, one task each, after {WARM_UP} to warm up)",
            "",
            "| submitter | submits/s | µs per submit | CPU µs | WAL pages | syncs | disk floor for those "
            "pages (commits/s) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    for r in submits:
        if "error" in r:
            lines.append(f"| {r['label']} | error: {r['error'][:80]} | | | | | |")
            continue
        lines.append(
            f"| {r['label']} | {r['rate']:,.0f} | {r['wall_us']:.0f} | {r['cpu_us']:.0f} | "
            f"{r['pages']:.1f} | {r['syncs']:.2f} | {r['floor']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--no-callgrind", dest="callgrind", action="store_false")
    p.add_argument("--only", action="append", help="a row's label prefix (repeatable)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--role", choices=["worker", "submit"], help=argparse.SUPPRESS)
    p.add_argument("--peer", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--stamps", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "worker":
        worker(args)
        return 0
    if args.role == "submit":
        submitter(args)
        return 0
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    load = R._load()
    rows: list[dict[str, Any]] = []
    for label, key, extra in PEERS:
        if args.only and not any(label.startswith(o) for o in args.only):
            continue
        R.log(f"== {label}")
        try:
            rows.append(measure(label, key, extra, args))
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            rows.append({"label": label, "error": str(exc)})
        R.log(f"   {rows[-1]}")
    for label, key in SUBMITTERS:
        if args.only and not any(label.startswith(o) for o in args.only):
            continue
        R.log(f"== {label}: the single submit")
        try:
            rows.append(measure_submit(label, key, args))
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            rows.append({"label": label, "submit": True, "error": str(exc)})
        R.log(f"   {rows[-1]}")
    report = render(rows, args, started, load)
    print(report)
    if not args.no_write:
        RESULTS.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
