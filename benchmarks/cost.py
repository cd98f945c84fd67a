#!/usr/bin/env python3
"""What one run costs a worker, measured three ways, for mainspring and Huey on SQLite.

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

PEERS = [  # (label, run.py peer key, extra environment)
    ("mainspring (def)", "mainspring", {}),
    ("mainspring (def, prefetch=8)", "mainspring", {"BENCH_PREFETCH": "8"}),
    ("huey", "huey", {}),
]


# --------------------------------------------------------------------------- worker side


def worker(args: argparse.Namespace) -> None:
    """Drain ``args.n`` preloaded tasks with the peer's own worker, then exit; print the
    CPU and bytes written over the drain as one JSON line."""
    from peers import timing

    module = __import__(f"peers.{args.peer}_peer", fromlist=["x"])
    peer_class = next(
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, timing.Peer) and v is not timing.Peer
    )
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


def measure(
    label: str, key: str, extra: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    spec = R.PEERS[key]
    python, extra_path = R.interpreter(spec)
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(R.BENCH), *extra_path])
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
        "# What one run costs a worker (SQLite, WAL + synchronous=FULL)",
        "",
        f"Run {started} UTC on {R._host()}. Command: `{cmd}`.",
        f"Load average (1 min) at start {load}, at end {R._load()}.",
        f"{args.n:,} preloaded no-op tasks, one worker process of 8 slots; per run drained.",
        "",
        "| worker | instructions | CPU µs | bytes written | 4 KiB pages | syncs (commits) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | error: {r['error'][:80]} | | | | |")
            continue
        ins = f"{r['instructions'] / 1e6:.2f} M" if "instructions" in r else "n/a"
        lines.append(
            f"| {r['label']} | {ins} | {r['cpu_us']:.0f} | {r['bytes']:,.0f} | "
            f"{r['bytes'] / PAGE:.1f} | {r['syncs']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--no-callgrind", dest="callgrind", action="store_false")
    p.add_argument("--only", action="append", help="a row's label prefix (repeatable)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--role", choices=["worker"], help=argparse.SUPPRESS)
    p.add_argument("--peer", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--stamps", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "worker":
        worker(args)
        return 0
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    load = R._load()
    rows = []
    for label, key, extra in PEERS:
        if args.only and not any(label.startswith(o) for o in args.only):
            continue
        R.log(f"== {label}")
        try:
            rows.append(measure(label, key, extra, args))
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            rows.append({"label": label, "error": str(exc)})
        R.log(f"   {rows[-1]}")
    report = render(rows, args, started, load)
    print(report)
    if not args.no_write:
        RESULTS.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
