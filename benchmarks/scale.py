#!/usr/bin/env python3
"""The drain at scale: many jobs in flight, and handlers that wait on I/O, side by side.

    python benchmarks/scale.py                    # SQLite: mainspring (threads, async) vs Huey
    python benchmarks/scale.py --backend postgres # mainspring-pg vs PgQueuer vs procrastinate
    python benchmarks/scale.py --quick            # fewer tasks per cell
    python benchmarks/scale.py --inflight 8 64 --handler-ms 0
    python benchmarks/scale.py --inflight 8 --handler-ms 0 --tasks 30000   # a longer drain
    python benchmarks/scale.py --backend postgres --only mainspring-procs --procs 2 --ahead 3

One worker process per peer and cell, preloaded with the tasks (as W2 of run.py: the
workers boot, are released together, and the drain runs from the first handler start to
the last handler end, as the tasks stamp them); and mainspring once more at its best
setting found on this machine: the in-flight count split over two processes, so that every
core is in use, with prefetch 16N and at least 256 runs per process (each turn records and
starts many runs: fewer turns, the way a big dequeue batch works; ``--procs``, ``--ahead``
try others). Two axes:

- in flight: how many handlers may run at once in the process (mainspring
  ``run_worker(concurrency=N)``, threads for ``def`` and one event loop for ``async def``,
  and with ``prefetch=N`` (``--ahead K``: K x N): N more runs leased and started ahead,
  so that a handler that ends is followed at once by the next; Huey ``workers=N`` threads; PgQueuer ``max_concurrent_tasks=N`` with its dequeue batch
  at its best, ``N // 2`` (measured: 32 to 200 drain alike at 64 in flight; at 200, 100
  to 200 drain 12% more than 50); procrastinate ``concurrency=N``);
- handler time: 0 (the no-op) or a wait standing in for I/O (``time.sleep`` in a thread,
  ``asyncio.sleep`` on a loop), the same for every peer (peers/timing.py ``handle``). The
  ideal rate of a waiting handler is in-flight / handler time.

SQLite at WAL + ``synchronous=FULL`` for every peer; PostgreSQL with the server's settings
(``MAINSPRING_BENCH_PG``). Writes ``results-scale.md`` / ``results-scale-pg.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Any

import run as R  # benchmarks/run.py: the drivers, environments and reporting helpers

RESULTS = {"sqlite": R.BENCH / "results-scale.md", "postgres": R.BENCH / "results-scale-pg.md"}


@dataclass(frozen=True)
class Variant:
    key: str  # --only
    name: str  # the peer, as its rows say; mainspring's rows add how it runs
    spec: R.PeerSpec
    handler: str = "def"  # mainspring: "async def" declares the task so
    prefetch: bool = False  # mainspring: ``run_worker(prefetch=N)``, one run ahead per slot
    procs: int = 1  # worker processes, the in-flight count split evenly among them
    ahead: int = 1  # prefetch: this many runs ahead per slot
    at_least: int = 0  # prefetch: and at least this many per process
    detail: str | None = None  # a peer's setting, where mainspring's come from the fields

    @property
    def label(self) -> str:
        if self.detail is not None:
            return f"{self.name} ({self.detail})" if self.detail else self.name
        parts = [self.handler]
        if self.prefetch:
            parts.append("prefetch=N" if self.ahead == 1 else f"prefetch={self.ahead}N")
            if self.at_least:
                parts[-1] += f" (at least {self.at_least})"
        if self.procs > 1:
            parts.append(f"{self.procs} processes of N/{self.procs}")
        return f"{self.name} ({', '.join(parts)})"

    def per_process(self, inflight: int) -> int:
        return max(1, inflight // self.procs)

    def prefetch_of(self, inflight: int) -> int:
        """Runs each process leases and starts ahead of its slots."""
        return max(self.per_process(inflight) * self.ahead, self.at_least)

    def environment(self, inflight: int, handler_ms: float) -> dict[str, str]:
        env = {"BENCH_HANDLER_MS": f"{handler_ms:g}"}
        if self.handler == "async def":
            env["BENCH_ASYNC"] = "1"
        if self.prefetch:
            env["BENCH_PREFETCH"] = str(self.prefetch_of(inflight))
        if self.key == "pgqueuer":  # its best dequeue batch for this many in flight
            env["BENCH_PGQ_BATCH"] = str(max(1, inflight // 2))
        return env


def _mainspring(spec: R.PeerSpec, name: str, procs: int, ahead: int) -> list[Variant]:
    return [
        Variant("mainspring", name, spec),
        Variant("mainspring-prefetch", name, spec, prefetch=True),
        Variant("mainspring-async", name, spec, "async def", prefetch=True),
        # every core in use, and turns made bigger by runs started further ahead: its best
        # setting on this machine (`--procs`, `--ahead` to try others). With few slots
        # per process, 16 per slot makes turns too small to spread a commit's sync over
        # many runs (SQLite at FULL syncs each commit): at least 256 then
        Variant(
            "mainspring-procs", name, spec, prefetch=True, procs=procs, ahead=ahead, at_least=256
        ),
    ]


VARIANTS = {
    "sqlite": [
        *_mainspring(R.PEERS["mainspring"], "mainspring", 2, 16),
        Variant("huey", "huey", R.PEERS["huey"], detail="N threads"),
    ],
    "postgres": [
        *_mainspring(R.PG_PEERS["mainspring"], "mainspring-pg", 2, 16),
        Variant("pgqueuer", "pgqueuer", R.PG_PEERS["pgqueuer"], detail="batch N/2"),
        Variant("procrastinate", "procrastinate", R.PG_PEERS["procrastinate"], detail=""),
    ],
}


def tasks_for(inflight: int, handler_ms: float, quick: bool, tasks: int | None = None) -> int:
    """Enough tasks for a drain of a few seconds at the ideal rate (``tasks``: as many
    no-op tasks instead)."""
    if handler_ms <= 0:
        return tasks or (3000 if quick else 10_000)
    ideal = inflight * 1000 / handler_ms
    return int(min(10_000, max(1000 if quick else 2000, ideal * (1.5 if quick else 4))))


def cell(
    v: Variant, backend: str, inflight: int, handler_ms: float, args: argparse.Namespace
) -> dict[str, Any]:
    n = tasks_for(inflight, handler_ms, args.quick, args.tasks)
    ns = argparse.Namespace(n=n, rounds=1, concurrency=v.per_process(inflight), repeat=1)
    extra = ["--phases", f"w2_{v.procs}", "--drain-procs", str(v.procs)]
    if backend == "postgres":
        extra += ["--backend", "postgres", "--sync", "server", "--pg-url", args.pg_url]
    else:
        extra += ["--sync", "full"]
    work = R.WORK / "scale" / f"{backend}-{v.key}-{inflight}-{handler_ms:g}"
    phase_timeout = 120.0

    def cleanup(pid: int) -> None:
        if backend == "postgres":
            R.timing.drop_bench_databases(args.pg_url, pid)

    result = R.run_config(
        v.spec,
        work,
        {"peer": v.key},
        extra,
        ns,
        phase_timeout,
        phase_timeout + 120,
        cleanup,
        v.environment(inflight, handler_ms),
    )
    found: dict[str, Any] = result.get(f"w2_{v.procs}") or {
        "error": result.get("error", "no result")
    }
    return {**found, "n": n}


def fmt(c: dict[str, Any], inflight: int, handler_ms: float, key: str = "rate") -> str:
    if key not in c:
        return f"error: {str(c.get('error', c.get('na', '?')))[:60]}"
    text = f"{c[key]:,.0f}"
    if handler_ms > 0:
        text += f" ({100 * c[key] / (inflight * 1000 / handler_ms):.0f}%)"
    return text


def render(
    backend: str,
    table: dict[tuple[str, float, int], dict[str, Any]],
    args: argparse.Namespace,
    started: str,
    load_start: str,
) -> str:
    title = "SQLite (WAL + synchronous=FULL)" if backend == "sqlite" else "PostgreSQL"
    cmd = " ".join(["python benchmarks/scale.py", *sys.argv[1:]])
    out = [
        f"# The drain at scale: {title}",
        "",
        f"Run {started} UTC on {R._host()}. Command: `{cmd}`.",
        f"Load average (1 min) at start {load_start}, at end {R._load()}.",
        "One worker process per cell (the `processes` row: N split over them), tasks "
        "preloaded; drained tasks/s from the first handler "
        "start to the last handler end. With a handler time, the share of the ideal rate "
        "(in flight / handler time) in brackets.",
        "",
    ]
    header = "| peer | handler | " + " | ".join(f"{k} in flight" for k in args.inflight) + " |"

    def rates(key: str) -> None:
        out.extend([header, "| --- | --- |" + " ---: |" * len(args.inflight)])
        for v in chosen(backend, args):
            for h in args.handler_ms:
                cells = [fmt(table[(v.key, h, k)], k, h, key) for k in args.inflight]
                out.append(f"| {v.label} | {h:g} ms | " + " | ".join(cells) + " |")

    rates("rate")
    out.extend([
        "",
        "The same drains timed from the workers' release to the last handler end, so that "
        "the work done before the first handler starts counts too (runs leased and started "
        "ahead, a first dequeue batch): the window to compare when a peer takes many runs "
        "at once.",
        "",
    ])  # fmt: skip
    rates("rate_from_go")

    def per_task_table(title: str, key: str, spec: str = ".3f") -> None:
        out.extend(["", title, "", header, "| --- | --- |" + " ---: |" * len(args.inflight)])
        for v in chosen(backend, args):
            for h in args.handler_ms:
                cpu = [table[(v.key, h, k)].get(key) for k in args.inflight]
                text = [format(c, spec) if c is not None else "n/a" for c in cpu]
                out.append(f"| {v.label} | {h:g} ms | " + " | ".join(text) + " |")

    per_task_table(
        "Worker CPU seconds per 1,000 tasks (from `/proc/<pid>/stat`, since release):",
        "cpu_s_per_1k",
    )
    if backend == "postgres":
        per_task_table(
            "Server CPU seconds per 1,000 tasks (the PostgreSQL processes on this machine, "
            "`/proc/<pid>/stat`, since release; the server and the workers share its cores):",
            "server_cpu_s_per_1k",
        )
    cores = os.cpu_count() or 1
    for c in table.values():
        if c.get("cpu_s_per_1k"):  # (SQLite's engine runs in the worker: no server)
            c["total_cpu_ms"] = c["cpu_s_per_1k"] + c.get("server_cpu_s_per_1k", 0.0)
            c["ceiling"] = cores * 1000 / c["total_cpu_ms"]
    per_task_table(
        "CPU per task in all (ms), the workers' and the server's: what the machine spends "
        "on one task",
        "total_cpu_ms",
    )
    per_task_table(
        f"The drain that this CPU per task allows on this machine's {cores} cores, every "
        "one of them busy with nothing else (tasks/s): a ceiling, reached only when the "
        "work keeps every core busy",
        "ceiling",
        ",.0f",
    )
    if backend == "postgres":
        per_task_table(
            "Server transactions per task (`pg_stat_database` commits and rollbacks of the "
            "peer's database, from the workers' start to their exit: boot and the "
            "harness's completion checks included):",
            "tx_per_task",
        )
        per_task_table(
            "Rows written per task (`pg_stat_database` inserted + updated + deleted, the "
            "same window):",
            "rows_per_task",
            ".1f",
        )
        per_task_table(
            "WAL bytes per task (`pg_current_wal_lsn`, the same window; the whole server's, "
            "so run nothing else beside it):",
            "wal_bytes_per_task",
            ",.0f",
        )
    out += ["", "Tasks per cell: " + ", ".join(
        f"{h:g} ms at {k}: {table[(chosen(backend, args)[0].key, h, k)]['n']:,}"
        for h in args.handler_ms
        for k in args.inflight
    ) + "."]  # fmt: skip
    return "\n".join(out) + "\n"


def chosen(backend: str, args: argparse.Namespace) -> list[Variant]:
    out = []
    for v in VARIANTS[backend]:
        if args.only and v.key not in args.only:
            continue
        if v.procs > 1 and args.procs:
            v = dataclasses.replace(v, procs=args.procs)
        if v.prefetch and args.ahead:
            v = dataclasses.replace(v, ahead=args.ahead)
        out.append(v)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--inflight", type=int, nargs="+", default=[8, 32, 64, 200])
    p.add_argument("--handler-ms", type=float, nargs="+", default=[0.0, 20.0])
    p.add_argument("--only", action="append", help="a peer variant (repeatable)")
    p.add_argument("--quick", action="store_true", help="fewer tasks per cell")
    p.add_argument(
        "--tasks",
        type=int,
        help="no-op tasks per cell (default 10,000): more make a longer drain, whose ratios "
        "vary less from run to run",
    )
    p.add_argument("--pg-url", default=R.timing.PG_DEFAULT_URL)
    p.add_argument("--procs", type=int, help="processes of the processes variant (2 / 4)")
    p.add_argument("--ahead", type=int, help="prefetch this many runs per slot (default: 1, N)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    if not chosen(args.backend, args):
        p.error(f"no variant selected; known: {[v.key for v in VARIANTS[args.backend]]}")
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    load_start = R._load()
    shutil.rmtree(R.WORK / "scale", ignore_errors=True)
    table: dict[tuple[str, float, int], dict[str, Any]] = {}
    for v in chosen(args.backend, args):
        for h in args.handler_ms:
            for k in args.inflight:
                R.log(f"== {v.label}, {h:g} ms, {k} in flight")
                c = table[(v.key, h, k)] = cell(v, args.backend, k, h, args)
                R.log(f"   {fmt(c, k, h)}")
    report = render(args.backend, table, args, started, load_start)
    print(report)
    if not args.no_write:
        RESULTS[args.backend].write_text(report)
        R.log(f"written to {RESULTS[args.backend].relative_to(R.REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
