#!/usr/bin/env python3
"""Side-by-side benchmarks: the embedded group (SQLite) and the PostgreSQL group.

    python benchmarks/run.py                # SQLite group, full run (10,000 tasks), FULL and NORMAL
    python benchmarks/run.py --quick        # 2,000 tasks, 100 latency rounds
    python benchmarks/run.py --only huey    # one peer (repeat --only for several)
    python benchmarks/run.py --group pg     # PostgreSQL group (server: $MAINSPRING_BENCH_PG)
    python benchmarks/run.py --group all    # both groups, one after the other
    python benchmarks/run.py --group workflows      # durable workflows, mainspring vs DBOS, SQLite
    python benchmarks/run.py --group workflows-pg   # the same on PostgreSQL

SQLite group: mainspring, Huey, DBOS. PostgreSQL group: mainspring-pg, PgQueuer,
procrastinate, DBOS, on one PostgreSQL server on the same machine (``MAINSPRING_BENCH_PG``,
default ``postgresql://postgres@127.0.0.1:5432/postgres``), a fresh database per peer and
workload, created and dropped with ``psql``.

Each peer runs in its own virtual environment under ``benchmarks/.venvs/<peer>``, created on
first use from PyPI; mainspring runs with the repository's ``.venv`` when it exists (``make``
creates it), otherwise in ``benchmarks/.venvs/mainspring`` with the repository on
``PYTHONPATH``. Every run starts from fresh SQLite files under ``benchmarks/.work/``. The
tables are printed and written to ``benchmarks/results.md`` (SQLite) and
``benchmarks/results-pg.md`` (PostgreSQL). Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from peers import timing  # benchmarks/ is on sys.path: this script's own folder

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = BENCH / ".venvs"
WORK = BENCH / ".work"
RESULTS = BENCH / "results.md"
RESULTS_PG = BENCH / "results-pg.md"
RESULTS_WF = {
    "sqlite": BENCH / "results-workflows.md",
    "postgres": BENCH / "results-workflows-pg.md",
}


@dataclass(frozen=True)
class PeerSpec:
    module: str
    requirements: tuple[str, ...]  # empty: mainspring, installed from the repository
    venv: str  # benchmarks/.venvs/<venv>
    label: str = ""  # the row's name, when it is not the peer's key


DBOS_REQ = ("dbos>=3,<4",)
PEERS = {  # the SQLite group
    "mainspring": PeerSpec("peers.mainspring_peer", (), "mainspring"),
    "huey": PeerSpec("peers.huey_peer", ("huey>=3.5,<3.6",), "huey"),
    "dbos": PeerSpec("peers.dbos_peer", DBOS_REQ, "dbos"),
}
PG_PEERS = {  # the PostgreSQL group
    "mainspring": PeerSpec("peers.mainspring_peer", (), "mainspring", "mainspring-pg"),
    "pgqueuer": PeerSpec("peers.pgqueuer_peer", ("pgqueuer[asyncpg]>=1.6,<2",), "pgqueuer"),
    # psycopg's C implementation, as DBOS and mainspring (its postgres extra) get it
    "procrastinate": PeerSpec(
        "peers.procrastinate_peer", ("procrastinate>=3,<4", "psycopg[binary]"), "procrastinate"
    ),
    "dbos": PeerSpec("peers.dbos_peer", DBOS_REQ, "dbos"),
}
WF_PEERS = {  # the workflow group (SQLite or PostgreSQL)
    "mainspring": PeerSpec("peers.mainspring_wf", (), "mainspring"),
    "dbos": PeerSpec("peers.dbos_wf", DBOS_REQ, "dbos"),
}
SYNC_LEVELS = ("full", "normal")
PHASES = ("w1_single", "w1_batch", "w2_1", "w2_2", "w4")
DRAIN_PROCS_PG = (1, 2, 4)
PG_PHASES = ("w1_single", "w1_batch", *(f"w2_{k}" for k in DRAIN_PROCS_PG), "w4", "idle")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- environments


def ensure_venv(name: str, requirements: list[str]) -> Path:
    """``benchmarks/.venvs/<name>`` with ``requirements`` installed (reinstalled if changed)."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements"
    wanted = "\n".join(requirements) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    log(f"setting up {venv.relative_to(REPO)}: pip install {' '.join(requirements)}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements], check=True)
    marker.write_text(wanted)
    return python


def interpreter(spec: PeerSpec) -> tuple[Path, list[str]]:
    """(python, extra PYTHONPATH entries) for one peer."""
    if spec.requirements:
        return ensure_venv(spec.venv, list(spec.requirements)), []
    repo_python = REPO / ".venv" / "bin" / "python"
    if repo_python.exists():
        return repo_python, []
    # No project venv yet: install the engine's runtime dependencies (and those of its
    # PostgreSQL store) into a venv of our own and import the package from the working
    # tree (nothing is written into the repository).
    with (REPO / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh)["project"]
    deps = project["dependencies"] + project.get("optional-dependencies", {}).get("postgres", [])
    return ensure_venv(spec.venv, deps), [str(REPO)]


# --------------------------------------------------------------------------- running


def run_config(
    spec: PeerSpec,
    workdir: Path,
    base: dict[str, Any],
    extra: list[str],
    args: argparse.Namespace,
    phase_timeout: float,
    timeout: float,
    after: Callable[[int], None] | None = None,
    env_extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one driver (all workloads of one peer in one configuration).

    ``base`` starts the result; ``extra`` are the driver's group-specific arguments;
    ``phase_timeout`` bounds each workload, ``timeout`` the whole driver;
    ``after(driver_pid)`` runs once the driver and its workers are gone; ``env_extra``
    goes into the environment of the driver and its workers.
    """
    workdir.mkdir(parents=True)
    out = workdir / "result.json"
    logfile = workdir / "driver.log"
    try:
        python, extra_path = interpreter(spec)
    except (subprocess.CalledProcessError, OSError, KeyError) as exc:
        return {**base, "error": f"environment setup failed: {exc}"}
    cmd = [
        str(python), "-m", spec.module, "bench",
        "--workdir", str(workdir), "--out", str(out),
        "--n", str(args.n), "--rounds", str(args.rounds), "--concurrency", str(args.concurrency),
        "--phase-timeout", str(phase_timeout), "--repeat", str(args.repeat), *extra,
    ]  # fmt: skip
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), *extra_path])
    env.pop("PYTHONHOME", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    began = time.monotonic()
    with logfile.open("w") as sink:
        # A session of its own, so a timeout can end the driver and its workers together.
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                sink.write(line)
                if line.startswith("["):
                    log("  " + line.rstrip())

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=5)
    if after is not None:
        after(proc.pid)
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    result = {**base, **result, "wall_seconds": time.monotonic() - began}
    if timed_out:
        result.setdefault("error", f"driver killed after {timeout:.0f}s")
    elif proc.returncode != 0 or not out.exists():
        tail = [ln for ln in logfile.read_text(errors="replace").splitlines() if ln.strip()]
        result.setdefault("error", f"driver exited {proc.returncode}: {tail[-1] if tail else ''}")
    return result


# --------------------------------------------------------------------------- reporting


def _fmt_rate(cell: dict[str, Any] | None, notes: list[str], label: str) -> str:
    if cell is None:
        return "—"
    if "na" in cell:
        return "n/a"
    if "error" in cell:
        notes.append(f"{label}: {cell['error']}")
        partial = cell.get("partial_rate") or cell.get("rate")
        return f"error [{len(notes)}]" + (f" (≈{partial:,.0f}/s partial)" if partial else "")
    rates = cell.get("rates") or []
    if len(rates) > 1:  # --repeat: the median, and the range of the drains
        return f"{cell['rate']:,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
    return f"{cell['rate']:,.0f}"


def _runs_per_cell(args: argparse.Namespace) -> str:
    if args.repeat > 1:
        return (
            f"each drain cell is the median of {args.repeat} drains on fresh stores (their "
            "range in brackets), every other cell one measured run"
        )
    return "one measured run per cell"


def _fmt_latency(cell: dict[str, Any] | None, key: str) -> str:
    if cell is None:
        return "—"
    if key not in cell:
        return "error"
    return f"{cell[key]:.1f}"


def _num(cell: dict[str, Any], key: str, digits: int = 1) -> str:
    value = cell.get(key)
    return "—" if value is None else f"{value:,.{digits}f}"


def _row_error(r: dict[str, Any], phases: tuple[str, ...]) -> str | None:
    """One error for the whole row: no workload ran, or every one failed the same way."""
    cells = [r[k] for k in phases if k in r]
    if not cells:
        return str(r.get("error", "no result"))
    errors = {c.get("error") for c in cells}
    if len(cells) > 1 and len(errors) == 1 and None not in errors:
        return str(errors.pop())
    return None


def durability_text(result: dict[str, Any]) -> str:
    asked = result["sync"].upper()
    found = result.get("durability") or result.get("producer_durability")
    if not found:
        return f"{asked} (asked; not read back)"
    text = f"{found['journal_mode']} + {found['synchronous']}"
    if found["synchronous"] != asked:
        text += f" (asked {asked}!)"
    if found.get("source") != "PRAGMA read back":
        text += " ‡"
    return text


def pg_durability_text(result: dict[str, Any]) -> str:
    found = result.get("durability") or result.get("producer_durability")
    if not found:
        return "server defaults (not read back)"
    text = f"sync_commit={found['synchronous_commit']}, fsync={found['fsync']}"
    if found.get("unlogged_tables", "0") != "0":
        text += f", {found['unlogged_tables']} unlogged tables"
    if found.get("source") != timing.PG_SHOWN:
        text += " ‡"
    return text


def _preamble(title: str, args: argparse.Namespace, started: str, load_start: str) -> list[str]:
    return [
        title,
        "",
        f"Run {started} on {_host()}. Command: `{' '.join(args.argv)}`.",
        f"Load average (1 min) at start {load_start}, at end {_load()}: other work on "
        "the machine skews every number, so compare runs made on a quiet machine.",
    ]


def _closing(notes: list[str], details: list[str], results: list[dict[str, Any]]) -> list[str]:
    """Errors, the details table (header lines included in ``details``), peer notes."""
    lines: list[str] = []
    if notes:
        lines += ["", "Errors:", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    peer_notes = []
    seen = set()
    for r in results:
        if r.get("notes") and r["peer"] not in seen:
            seen.add(r["peer"])
            peer_notes.append(f"- **{r.get('label', r['peer'])}**: {r['notes']}")
    lines += ["", "Details:", "", *details, "", "How each peer was configured:", ""]
    return [*lines, *peer_notes, ""]


def render(
    results: list[dict[str, Any]], args: argparse.Namespace, started: str, load_start: str
) -> str:
    """The SQLite group's report."""
    notes: list[str] = []
    rows = []
    for r in results:
        label = f"{r['peer']} {r.get('version', '')}".strip()
        where = f"{r['peer']}/{r['sync']}"
        whole = _row_error(r, PHASES)
        if whole is not None:
            notes.append(f"{where}: {whole}")
            rows.append(
                f"| {label} | {r['sync'].upper()} (asked) | error [{len(notes)}] "
                "| — | — | — | — | — |"
            )
            continue
        w4 = r.get("w4")
        if w4 and "error" in w4:
            notes.append(f"{where} w4: {w4['error']}")
        cells = [
            label,
            durability_text(r),
            _fmt_rate(r.get("w1_single"), notes, f"{where} w1 single"),
            _fmt_rate(r.get("w1_batch"), notes, f"{where} w1 batch"),
            _fmt_rate(r.get("w2_1"), notes, f"{where} w2 1 proc"),
            _fmt_rate(r.get("w2_2"), notes, f"{where} w2 2 procs"),
            _fmt_latency(w4, "p50_ms"),
            _fmt_latency(w4, "p99_ms"),
        ]
        if "error" in r:
            notes.append(f"{where}: {r['error']}")
        rows.append("| " + " | ".join(cells) + " |")

    details = [
        "| peer | sync | enqueue call p50 / p99 ms | batch call p50 ms "
        "| worker CPU s per 1k tasks, 1 / 2 procs | W4 mean / max ms | wall s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if not any(k in r for k in PHASES):
            continue
        single, batch = r.get("w1_single") or {}, r.get("w1_batch") or {}
        d1, d2, w4 = r.get("w2_1") or {}, r.get("w2_2") or {}, r.get("w4") or {}
        details.append(
            f"| {r['peer']} | {r['sync'].upper()} | {_num(single, 'p50_ms', 2)} / "
            f"{_num(single, 'p99_ms', 2)} | {_num(batch, 'p50_ms')} "
            f"| {_num(d1, 'cpu_s_per_1k', 2)} / {_num(d2, 'cpu_s_per_1k', 2)} "
            f"| {_num(w4, 'mean_ms')} / {_num(w4, 'max_ms')} | {r.get('wall_seconds', 0):.0f} |"
        )

    lines = [
        *_preamble(
            "# Embedded-group benchmark: mainspring vs Huey vs DBOS (SQLite)",
            args,
            started,
            load_start,
        ),
        f"{args.n:,} no-op tasks (one 16-byte string argument); {args.concurrency} threads per "
        f"worker process; {args.rounds} latency round trips; {_runs_per_cell(args)}.",
        "",
        "| peer | durability | enqueue/s single | enqueue/s batch | drain/s 1 proc "
        "| drain/s 2 procs | p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "- enqueue: W1, one producer, one call (one transaction) per task; batch = 1,000 per "
        "call where the peer has a batch API, else n/a.",
        "- drain: W2, tasks preloaded, workers booted and then released together; from the "
        "first handler start to the last handler end, as written by the tasks.",
        "- p50/p99: W4, sequential submit -> result round trips from a separate producer "
        "process to one idle worker process.",
        "- durability: journal mode + `synchronous`, read back with PRAGMA through the "
        "connection the peer itself uses (‡: synchronous could not be read back from "
        "outside the engine; the value shown is what the store URL asks for).",
    ]
    return "\n".join(lines + _closing(notes, details, results))


def render_pg(
    results: list[dict[str, Any]],
    args: argparse.Namespace,
    started: str,
    load_start: str,
    server: dict[str, str],
) -> str:
    """The PostgreSQL group's report."""
    notes: list[str] = []
    rows = []
    no_stmts: set[str] = set()
    for r in results:
        label = f"{r['label']} {r.get('version', '')}".strip()
        where = r["label"]
        whole = _row_error(r, PG_PHASES)
        if whole is not None:
            notes.append(f"{where}: {whole}")
            rows.append(f"| {label} | — | error [{len(notes)}] " + "| — " * 8 + "|")
            continue
        w4, idle = r.get("w4"), r.get("idle")
        if w4 and "error" in w4:
            notes.append(f"{where} w4: {w4['error']}")
        idle_tx = idle_stmt = "—"
        if idle and "error" in idle:
            notes.append(f"{where} idle: {idle['error']}")
            idle_tx = f"error [{len(notes)}]"
        elif idle:
            idle_tx = f"{idle['tx_per_s']:,.1f}"
            if "stmt_per_s" in idle:
                idle_stmt = f"{idle['stmt_per_s']:,.1f}"
            else:
                idle_stmt = "n/a"
                no_stmts.add(idle.get("statements_na", "not measured"))
        cells = [
            label,
            pg_durability_text(r),
            _fmt_rate(r.get("w1_single"), notes, f"{where} w1 single"),
            _fmt_rate(r.get("w1_batch"), notes, f"{where} w1 batch"),
            *(
                _fmt_rate(r.get(f"w2_{k}"), notes, f"{where} w2 {k} proc{'s' * (k > 1)}")
                for k in DRAIN_PROCS_PG
            ),
            _fmt_latency(w4, "p50_ms"),
            _fmt_latency(w4, "p99_ms"),
            idle_tx,
            idle_stmt,
        ]
        if "error" in r:
            notes.append(f"{where}: {r['error']}")
        rows.append("| " + " | ".join(cells) + " |")

    procs = " / ".join(str(k) for k in DRAIN_PROCS_PG)
    details = [
        "| peer | enqueue call p50 / p99 ms | batch call p50 ms "
        f"| worker CPU s per 1k tasks, {procs} procs | server tx per task, {procs} procs "
        "| W4 mean / max ms | idle: connections, worker CPU % | wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if _row_error(r, PG_PHASES) is not None:
            continue
        single, batch = r.get("w1_single") or {}, r.get("w1_batch") or {}
        w4, idle = r.get("w4") or {}, r.get("idle") or {}
        drains = [r.get(f"w2_{k}") or {} for k in DRAIN_PROCS_PG]
        cpu = " / ".join(_num(d, "cpu_s_per_1k", 2) for d in drains)
        tx = " / ".join(_num(d, "tx_per_task", 2) for d in drains)
        details.append(
            f"| {r['label']} | {_num(single, 'p50_ms', 2)} / {_num(single, 'p99_ms', 2)} "
            f"| {_num(batch, 'p50_ms')} | {cpu} | {tx} "
            f"| {_num(w4, 'mean_ms')} / {_num(w4, 'max_ms')} "
            f"| {_num(idle, 'connections', 0)}, {_num(idle, 'worker_cpu_pct')} "
            f"| {r.get('wall_seconds', 0):.0f} |"
        )

    stmt_note = (
        "; stmt/s: n/a here (" + "; ".join(sorted(no_stmts)) + ")"
        if no_stmts
        else "; stmt/s: `pg_stat_statements` calls in the peer's database over the same window"
    )
    lines = [
        *_preamble(
            "# PostgreSQL-group benchmark: mainspring vs PgQueuer vs procrastinate vs DBOS",
            args,
            started,
            load_start,
        ),
        f"Server: PostgreSQL {server.get('server_version', '?')} on this machine "
        f"(`{server.get('url', args.pg_url)}`), its settings untouched: "
        f"synchronous_commit={server.get('synchronous_commit', '?')}, "
        f"fsync={server.get('fsync', '?')}; a fresh database per peer and workload.",
        f"{args.n:,} no-op tasks (one 16-byte string argument); {args.concurrency}-way "
        "concurrency per worker process (threads or asyncio tasks, see below); "
        f"{args.rounds} latency round trips; idle load: {args.idle_workers} idle worker "
        f"processes for {args.idle_seconds:.0f} s; {_runs_per_cell(args)}.",
        "",
        "| peer | durability | enqueue/s single | enqueue/s batch "
        + "".join(f"| drain/s {k} proc{'s' * (k > 1)} " for k in DRAIN_PROCS_PG)
        + "| p50 ms | p99 ms | idle tx/s | idle stmt/s |",
        "| --- | --- |" + " ---: |" * (6 + len(DRAIN_PROCS_PG)),
        *rows,
        "",
        "- enqueue: W1, one producer, one call (one transaction) per task; batch = 1,000 per "
        "call through the peer's batch API.",
        "- drain: W2, tasks preloaded, workers booted and then released together; from the "
        "first handler start to the last handler end, as written by the tasks.",
        "- p50/p99: W4, sequential submit -> completion round trips from a separate producer "
        "process to one idle worker process.",
        f"- idle tx/s: `xact_commit + xact_rollback` of the peer's database in "
        f"`pg_stat_database`, {args.idle_workers} idle worker processes, over "
        f"{args.idle_seconds:.0f} s after a {args.idle_settle:.0f} s settle; read through a "
        f"connection to another database, so the reads count nothing{stmt_note}.",
        "- durability: `synchronous_commit` and `fsync` read back with SHOW through the "
        "peer's own connection, plus unlogged tables in its database if any (‡: read with "
        "psql on the same database; the engine's connection was not reachable).",
    ]
    return "\n".join(lines + _closing(notes, details, results))


WF_PHASES = ("wf1", "wf2", "wf3")


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def render_wf(
    results: list[dict[str, Any]],
    args: argparse.Namespace,
    started: str,
    load_start: str,
    backend: str,
    server: dict[str, str],
) -> str:
    """The workflow group's report (one store backend)."""
    notes: list[str] = []
    rows = []
    pg = backend == "postgres"
    for r in results:
        label = f"{r['peer']} {r.get('version', '')}".strip()
        where = f"{r['peer']}/{'pg' if pg else 'sqlite'}"
        whole = _row_error(r, WF_PHASES)
        if whole is not None:
            notes.append(f"{where}: {whole}")
            rows.append(f"| {label} | — | error [{len(notes)}] " + "| — " * 6 + "|")
            continue
        wf1, wf2, wf3 = r.get("wf1"), r.get("wf2"), r.get("wf3") or {}
        if wf1 and "error" in wf1:
            notes.append(f"{where} WF1: {wf1['error']}")
        rss = late50 = late99 = "—"
        if "error" in wf3:
            notes.append(f"{where} WF3: {wf3['error']}")
        if "rss_mb" in wf3:
            rss = f"{wf3['rss_mb']:.1f}"
        if "late_p50_ms" in wf3:
            late50, late99 = f"{wf3['late_p50_ms']:,.0f}", f"{wf3['late_p99_ms']:,.0f}"
        if "error" in wf3:
            rss = f"{rss} [{len(notes)}]"
        cells = [
            label,
            pg_durability_text(r) if pg else durability_text(r),
            _fmt_latency(wf1, "p50_ms"),
            _fmt_latency(wf1, "p99_ms"),
            _fmt_rate(wf2, notes, f"{where} WF2"),
            rss,
            late50,
            late99,
        ]
        if "error" in r:
            notes.append(f"{where}: {r['error']}")
        rows.append("| " + " | ".join(cells) + " |")

    by = {r["peer"]: r for r in results}
    ms_r, db_r = by.get("mainspring", {}), by.get("dbos", {})

    def val(r: dict[str, Any], key: str, field: str) -> float | None:
        cell = r.get(key) or {}
        return None if "error" in cell and key != "wf3" else cell.get(field)

    m50, d50 = val(ms_r, "wf1", "p50_ms"), val(db_r, "wf1", "p50_ms")
    mt, dt_ = val(ms_r, "wf2", "rate"), val(db_r, "wf2", "rate")
    mrss, m99 = val(ms_r, "wf3", "rss_mb"), val(ms_r, "wf3", "late_p99_ms")
    wf3_ok = "error" not in (ms_r.get("wf3") or {})
    targets = [
        "| target (the issue's) | mainspring | DBOS | mainspring / DBOS | verdict |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| WF1 p50 at most 1/3 of DBOS's | {_num({'v': m50}, 'v')} ms | {_num({'v': d50}, 'v')} ms "
        f"| {f'{m50 / d50:.2f}' if m50 and d50 else '—'} (≤ 0.33) "
        f"| {_verdict(None if not (m50 and d50) else m50 <= d50 / 3)} |",
        f"| WF2 throughput at least 10x DBOS's | {_num({'v': mt}, 'v', 0)}/s "
        f"| {_num({'v': dt_}, 'v', 0)}/s | {f'{mt / dt_:.1f}x' if mt and dt_ else '—'} (≥ 10x) "
        f"| {_verdict(None if not (mt and dt_) else mt >= 10 * dt_)} |",
        f"| WF3 worker holding {args.sleepers:,} sleepers under 100 MB "
        f"| {_num({'v': mrss}, 'v')} MB | | | {_verdict(None if mrss is None else mrss < 100 and wf3_ok)} |",
        f"| WF3 wake lateness p99 under 100 ms | {_num({'v': m99}, 'v', 0)} ms | | "
        f"| {_verdict(None if m99 is None else m99 < 100 and wf3_ok)} |",
    ]

    details = [
        "| peer | WF1 mean / max ms | WF2 worker CPU s per 1k workflows "
        "| WF3 submit s | WF3 all asleep after s | WF3 wake lead s | WF3 idle RSS / VmHWM MB "
        "| WF3 sleepers waking per s | WF3 lateness max ms | wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if _row_error(r, WF_PHASES) is not None:
            continue
        wf1, wf2, wf3 = r.get("wf1") or {}, r.get("wf2") or {}, r.get("wf3") or {}
        details.append(
            f"| {r['peer']} | {_num(wf1, 'mean_ms')} / {_num(wf1, 'max_ms')} "
            f"| {_num(wf2, 'cpu_s_per_1k', 2)} | {_num(wf3, 'submit_seconds', 2)} "
            f"| {_num(wf3, 'asleep_seconds')} | {_num(wf3, 'lead_seconds')} "
            f"| {_num(wf3, 'rss_idle_mb')} / {_num(wf3, 'hwm_mb')} "
            f"| {_num(wf3, 'wake_rate', 0)} | {_num(wf3, 'late_max_ms', 0)} "
            f"| {r.get('wall_seconds', 0):.0f} |"
        )

    store = (
        f"PostgreSQL {server.get('server_version', '?')} on this machine "
        f"(`{server.get('url', args.pg_url)}`), settings untouched "
        f"(synchronous_commit={server.get('synchronous_commit', '?')}, "
        f"fsync={server.get('fsync', '?')}); a fresh database per peer and workload"
        if pg
        else "one SQLite file per peer and workload, WAL + synchronous=FULL"
    )
    lines = [
        *_preamble(
            "# Workflow-group benchmark: mainspring vs DBOS "
            + ("(PostgreSQL)" if pg else "(SQLite, synchronous=FULL)"),
            args,
            started,
            load_start,
        ),
        f"Store: {store}. One worker process with {args.concurrency} slots; "
        f"{args.rounds} latency round trips; {args.n:,} workflows for throughput; "
        f"{args.sleepers:,} sleepers; one measured run per cell.",
        "",
        "| peer | durability | WF1 p50 ms | WF1 p99 ms | WF2 workflows/s (8 slots) "
        f"| WF3 worker RSS MB ({args.sleepers:,} asleep) | WF3 wake late p50 ms "
        "| WF3 wake late p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "- WF1: sequential submit -> result round trips of a 3-step workflow from a separate "
        "producer process to one idle worker process (10 warm-up rounds, 1 s idle first).",
        f"- WF2: {args.n:,} 3-step workflows preloaded, one worker process (8 slots; DBOS: its "
        "queue with worker_concurrency=8) released; from the first step's start to the last "
        "step's end, as the workflows stamp them; the store then counts all completed.",
        f"- WF3: {args.sleepers:,} workflows submitted (1,000 per transaction) to one running "
        "worker process, each sleeping durably until its own wake time: the first set from a "
        "pilot of 200 sleepers so that all are asleep a few seconds before it, the others "
        f"following at {args.wake_rate:g} per second (they wake over time, at a rate one "
        "worker can resume them: the lateness measures the timers, not a backlog). RSS: the "
        'worker\'s peak VmRSS (/proc/<pid>/status, every 0.1 s) from "all asleep" to the first '
        "wake time. Lateness: `time.time()` when each workflow resumes after its sleep, minus "
        "its wake time.",
        "",
        "Targets:",
        "",
        *targets,
    ]
    return "\n".join(lines + _closing(notes, details, results))


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _host() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count()
    return (
        f"{cores} cores ({model or platform.machine()}), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


# --------------------------------------------------------------------------- groups


def _selected(peers: dict[str, PeerSpec], only: list[str] | None) -> list[str]:
    return [k for k, spec in peers.items() if not only or k in only or spec.label in only]


def run_sqlite_group(args: argparse.Namespace, started: str) -> str | None:
    peers = _selected(PEERS, args.only)
    if not peers:
        log("SQLite group: no selected peer")
        return None
    load_start = _load()
    levels = list(SYNC_LEVELS) if args.sync == "both" else [args.sync]
    phase_timeout = 45.0 if args.quick else 120.0
    timeout = (5 + 2 * (args.repeat - 1)) * phase_timeout + 120.0
    results = []
    for turn, sync in enumerate(levels):
        # Fairness rule 7: same box, same run, peer order rotated between levels.
        shift = turn % len(peers)
        for peer in peers[shift:] + peers[:shift]:
            log(f"== {peer}, synchronous={sync.upper()}")
            result = run_config(
                PEERS[peer],
                WORK / f"{peer}-{sync}",
                {"peer": peer, "sync": sync},
                ["--sync", sync],
                args,
                phase_timeout,
                timeout,
            )
            if "error" in result:
                log(f"   {result['error']}")
            results.append(result)
    order = {p: i for i, p in enumerate(PEERS)}
    results.sort(key=lambda r: (SYNC_LEVELS.index(r["sync"]), order[r["peer"]]))
    report = render(results, args, started, load_start)
    print(report)
    if not args.no_write:
        RESULTS.write_text(report)
        log(f"written to {RESULTS.relative_to(REPO)}")
    return report


def _server_info(url: str) -> dict[str, str]:
    """Version and durability settings of the server (raises if it cannot be reached)."""
    info = {
        key: timing.psql(url, f"SHOW {key}")
        for key in ("server_version", "synchronous_commit", "fsync")
    }
    parts = urlsplit(url)
    if parts.password:  # never print a password
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":…@", 1))
    info["url"] = urlunsplit(parts)
    return info


def run_pg_group(args: argparse.Namespace, started: str) -> str | None:
    peers = _selected(PG_PEERS, args.only)
    if not peers:
        log("PostgreSQL group: no selected peer")
        return None
    load_start = _load()
    try:
        server = _server_info(args.pg_url)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log(f"PostgreSQL group: server not usable at {args.pg_url}: {exc}")
        server = {}
    extra = [
        "--backend", "postgres", "--sync", "server", "--pg-url", args.pg_url,
        "--drain-procs", *(str(k) for k in DRAIN_PROCS_PG),
        "--idle-seconds", str(args.idle_seconds), "--idle-workers", str(args.idle_workers),
        "--idle-settle", str(args.idle_settle),
    ]  # fmt: skip
    # DBOS drains 10,000 tasks with one process in about 100 s here: more room than SQLite's.
    phase_timeout = 45.0 if args.quick else 180.0
    timeout = (
        (len(PG_PHASES) - 1 + len(DRAIN_PROCS_PG) * (args.repeat - 1)) * phase_timeout
        + args.idle_settle
        + args.idle_seconds
        + timing.READY_TIMEOUT
        + 120.0
    )

    def cleanup(pid: int) -> None:  # databases a killed driver could not drop
        try:
            for name in timing.drop_bench_databases(args.pg_url, pid):
                log(f"   dropped leftover database {name}")
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            log(f"   could not look for leftover databases: {exc}")

    results = []
    for peer in peers:
        spec = PG_PEERS[peer]
        label = spec.label or peer
        base = {"peer": peer, "label": label, "sync": "server"}
        log(f"== {label}, PostgreSQL")
        if not server:
            result = {**base, "error": f"PostgreSQL server not usable at {args.pg_url}"}
        else:
            result = run_config(
                spec, WORK / f"pg-{peer}", base, extra, args, phase_timeout, timeout, cleanup
            )
            result["label"] = label
        if "error" in result:
            log(f"   {result['error']}")
        results.append(result)
    report = render_pg(results, args, started, load_start, server)
    print(report)
    if not args.no_write:
        RESULTS_PG.write_text(report)
        log(f"written to {RESULTS_PG.relative_to(REPO)}")
    return report


def run_wf_group(args: argparse.Namespace, started: str, backend: str) -> str | None:
    """The workflow group on one store backend: mainspring and DBOS, one after the other."""
    peers = _selected(WF_PEERS, args.only)
    if not peers:
        log("workflow group: no selected peer")
        return None
    load_start = _load()
    pg = backend == "postgres"
    server: dict[str, str] = {}
    extra = [
        "--sleepers", str(args.sleepers), "--wake-rate", str(args.wake_rate), "--backend", backend,
    ]  # fmt: skip
    if pg:
        try:
            server = _server_info(args.pg_url)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            log(f"workflow group: PostgreSQL server not usable at {args.pg_url}: {exc}")
        extra += ["--sync", "server", "--pg-url", args.pg_url]
    else:
        extra += ["--sync", "full"]
    phase_timeout = 120.0
    timeout = 3 * phase_timeout + 150.0 + 3 * timing.READY_TIMEOUT + 120.0

    def cleanup(pid: int) -> None:
        if pg:
            try:
                for name in timing.drop_bench_databases(args.pg_url, pid):
                    log(f"   dropped leftover database {name}")
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                log(f"   could not look for leftover databases: {exc}")

    results = []
    for peer in peers:
        base = {"peer": peer, "sync": "server" if pg else "full"}
        log(f"== {peer}, workflows on {'PostgreSQL' if pg else 'SQLite'}")
        if pg and not server:
            result = {**base, "error": f"PostgreSQL server not usable at {args.pg_url}"}
        else:
            workdir = WORK / f"wf-{'pg' if pg else 'sqlite'}-{peer}"
            result = run_config(
                WF_PEERS[peer], workdir, base, extra, args, phase_timeout, timeout, cleanup
            )
        if "error" in result:
            log(f"   {result['error']}")
        results.append(result)
    report = render_wf(results, args, started, load_start, backend, server)
    print(report)
    if not args.no_write:
        RESULTS_WF[backend].write_text(report)
        log(f"written to {RESULTS_WF[backend].relative_to(REPO)}")
    return report


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--group",
        choices=["sqlite", "pg", "all", "workflows", "workflows-pg"],
        default="sqlite",
        help="sqlite (default): the embedded group; pg: the PostgreSQL group; all: both; "
        "workflows / workflows-pg: durable workflows, mainspring vs DBOS, on SQLite / "
        "PostgreSQL",
    )
    parser.add_argument(
        "--quick", action="store_true", help="2,000 tasks, 100 round trips, 15 s idle load"
    )
    names = sorted({*PEERS, *PG_PEERS, *(s.label for s in PG_PEERS.values() if s.label)})
    # (the workflow group's peers, mainspring and dbos, are among these names)
    parser.add_argument(
        "--only", action="append", choices=names, help="run this peer only (repeatable)"
    )
    parser.add_argument("--sync", choices=[*SYNC_LEVELS, "both"], default="both")
    parser.add_argument(
        "--n", type=int, help="tasks for W1 and W2 (default 10,000); workflows for WF2 (1,000)"
    )
    parser.add_argument(
        "--rounds", type=int, help="W4 round trips (default 400); WF1 round trips (200)"
    )
    parser.add_argument(
        "--sleepers", type=int, default=10_000, help="workflow group: WF3 sleepers (10,000)"
    )
    parser.add_argument(
        "--wake-rate",
        type=float,
        default=250.0,
        help="workflow group: WF3 sleepers waking per second (250)",
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="drain each cell this many times on fresh stores; report the median and range",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("MAINSPRING_BENCH_PG") or timing.PG_DEFAULT_URL,
        help="PostgreSQL server for the pg group (default: $MAINSPRING_BENCH_PG or "
        f"{timing.PG_DEFAULT_URL}); each peer and workload gets a fresh database on it",
    )
    parser.add_argument(
        "--idle-seconds", type=float, help="pg group idle-load window (default 60, quick 15)"
    )
    parser.add_argument("--idle-workers", type=int, default=4)
    parser.add_argument(
        "--idle-settle", type=float, default=12.0, help="pg group: seconds before the window"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the results")
    args = parser.parse_args()
    args.argv = ["python", "benchmarks/run.py", *sys.argv[1:]]
    wf_args = argparse.Namespace(**vars(args))
    wf_args.n = args.n or 1_000
    wf_args.rounds = args.rounds or 200
    args.n = args.n or (2_000 if args.quick else 10_000)
    args.rounds = args.rounds or (100 if args.quick else 400)
    args.idle_seconds = args.idle_seconds or (15.0 if args.quick else 60.0)

    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    if args.group in ("sqlite", "all"):
        run_sqlite_group(args, started)
    if args.group in ("pg", "all"):
        run_pg_group(args, started)
    if args.group == "workflows":
        run_wf_group(wf_args, started, "sqlite")
    if args.group == "workflows-pg":
        run_wf_group(wf_args, started, "postgres")
    return 0


if __name__ == "__main__":
    sys.exit(main())
