#!/usr/bin/env python3
"""Side-by-side benchmark of the embedded (no server) group: mainspring, Huey, DBOS on SQLite.

    python benchmarks/run.py                # full run (10,000 tasks), every peer, FULL and NORMAL
    python benchmarks/run.py --quick        # 2,000 tasks, 100 latency rounds
    python benchmarks/run.py --only huey    # one peer (repeat --only for several)

Each peer runs in its own virtual environment under ``benchmarks/.venvs/<peer>``, created on
first use from PyPI; mainspring runs with the repository's ``.venv`` when it exists (``make``
creates it), otherwise in ``benchmarks/.venvs/mainspring`` with the repository on
``PYTHONPATH``. Every run starts from fresh SQLite files under ``benchmarks/.work/``. The table
is printed and written to ``benchmarks/results.md``. Standard library only.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = BENCH / ".venvs"
WORK = BENCH / ".work"
RESULTS = BENCH / "results.md"


@dataclass(frozen=True)
class PeerSpec:
    module: str
    requirements: tuple[str, ...]  # empty: mainspring, installed from the repository


PEERS = {
    "mainspring": PeerSpec("peers.mainspring_peer", ()),
    "huey": PeerSpec("peers.huey_peer", ("huey>=3.5,<3.6",)),
    "dbos": PeerSpec("peers.dbos_peer", ("dbos>=3,<4",)),
}
SYNC_LEVELS = ("full", "normal")
PHASES = ("w1_single", "w1_batch", "w2_1", "w2_2", "w4")


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


def interpreter(peer: str) -> tuple[Path, list[str]]:
    """(python, extra PYTHONPATH entries) for one peer."""
    spec = PEERS[peer]
    if spec.requirements:
        return ensure_venv(peer, list(spec.requirements)), []
    repo_python = REPO / ".venv" / "bin" / "python"
    if repo_python.exists():
        return repo_python, []
    # No project venv yet: install the engine's runtime dependencies into a venv of our own
    # and import the package from the working tree (nothing is written into the repository).
    with (REPO / "pyproject.toml").open("rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    return ensure_venv("mainspring", deps), [str(REPO)]


# --------------------------------------------------------------------------- running


def run_config(peer: str, sync: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one driver (all workloads of one peer at one durability level)."""
    workdir = WORK / f"{peer}-{sync}"
    workdir.mkdir(parents=True)
    out = workdir / "result.json"
    logfile = workdir / "driver.log"
    base: dict[str, Any] = {"peer": peer, "sync": sync}
    try:
        python, extra_path = interpreter(peer)
    except (subprocess.CalledProcessError, OSError, KeyError) as exc:
        return {**base, "error": f"environment setup failed: {exc}"}
    cmd = [
        str(python), "-m", PEERS[peer].module, "bench",
        "--workdir", str(workdir), "--out", str(out), "--sync", sync,
        "--n", str(args.n), "--rounds", str(args.rounds), "--concurrency", str(args.concurrency),
        "--phase-timeout", str(args.phase_timeout),
    ]  # fmt: skip
    env = dict(os.environ)
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
            proc.wait(timeout=args.config_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=5)
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    result = {**base, **result, "wall_seconds": time.monotonic() - began}
    if timed_out:
        result.setdefault("error", f"driver killed after {args.config_timeout:.0f}s")
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
    return f"{cell['rate']:,.0f}"


def _fmt_latency(cell: dict[str, Any] | None, key: str) -> str:
    if cell is None:
        return "—"
    if key not in cell:
        return "error"
    return f"{cell[key]:.1f}"


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


def render(results: list[dict[str, Any]], args: argparse.Namespace, started: str) -> str:
    notes: list[str] = []
    rows = []
    for r in results:
        label = f"{r['peer']} {r.get('version', '')}".strip()
        where = f"{r['peer']}/{r['sync']}"
        if "error" in r and not any(k in r for k in PHASES):
            notes.append(f"{where}: {r['error']}")
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

    details = []
    for r in results:
        if not any(k in r for k in PHASES):
            continue
        single, batch = r.get("w1_single") or {}, r.get("w1_batch") or {}
        d1, d2, w4 = r.get("w2_1") or {}, r.get("w2_2") or {}, r.get("w4") or {}

        def num(cell: dict[str, Any], key: str, digits: int = 1) -> str:
            value = cell.get(key)
            return "—" if value is None else f"{value:,.{digits}f}"

        details.append(
            f"| {r['peer']} | {r['sync'].upper()} | {num(single, 'p50_ms', 2)} / "
            f"{num(single, 'p99_ms', 2)} | {num(batch, 'p50_ms')} "
            f"| {num(d1, 'cpu_s_per_1k', 2)} / {num(d2, 'cpu_s_per_1k', 2)} "
            f"| {num(w4, 'mean_ms')} / {num(w4, 'max_ms')} | {r.get('wall_seconds', 0):.0f} |"
        )

    host = _host()
    peer_notes = []
    seen = set()
    for r in results:
        if r.get("notes") and r["peer"] not in seen:
            seen.add(r["peer"])
            peer_notes.append(f"- **{r['peer']}**: {r['notes']}")
    lines = [
        "# Embedded-group benchmark: mainspring vs Huey vs DBOS (SQLite)",
        "",
        f"Run {started} on {host}. Command: `{' '.join(args.argv)}`.",
        f"Load average (1 min) at start {args.load_start}, at end {_load()}: other work on "
        "the machine skews every number, so compare runs made on a quiet machine.",
        f"{args.n:,} no-op tasks (one 16-byte string argument); {args.concurrency} threads per "
        f"worker process; {args.rounds} latency round trips; one measured run per cell.",
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
    if notes:
        lines += ["", "Errors:", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    lines += [
        "",
        "Details:",
        "",
        "| peer | sync | enqueue call p50 / p99 ms | batch call p50 ms "
        "| worker CPU s per 1k tasks, 1 / 2 procs | W4 mean / max ms | wall s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        *details,
        "",
        "How each peer was configured:",
        "",
        *peer_notes,
        "",
    ]
    return "\n".join(lines)


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


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 tasks, 100 round trips")
    parser.add_argument(
        "--only", action="append", choices=sorted(PEERS), help="run this peer only (repeatable)"
    )
    parser.add_argument("--sync", choices=[*SYNC_LEVELS, "both"], default="both")
    parser.add_argument("--n", type=int, help="tasks for W1 and W2 (default 10,000)")
    parser.add_argument("--rounds", type=int, help="W4 round trips (default 400)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-write", action="store_true", help="do not write results.md")
    args = parser.parse_args()
    args.argv = ["python", "benchmarks/run.py", *sys.argv[1:]]
    args.n = args.n or (2_000 if args.quick else 10_000)
    args.rounds = args.rounds or (100 if args.quick else 400)
    args.phase_timeout = 45.0 if args.quick else 120.0
    args.config_timeout = 5 * args.phase_timeout + 120.0

    peers = [p for p in PEERS if not args.only or p in args.only]
    levels = list(SYNC_LEVELS) if args.sync == "both" else [args.sync]
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.load_start = _load()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)

    results = []
    for turn, sync in enumerate(levels):
        # Fairness rule 7: same box, same run, peer order rotated between levels.
        shift = turn % len(peers)
        for peer in peers[shift:] + peers[:shift]:
            log(f"== {peer}, synchronous={sync.upper()}")
            result = run_config(peer, sync, args)
            if "error" in result:
                log(f"   {result['error']}")
            results.append(result)
    order = {p: i for i, p in enumerate(PEERS)}
    results.sort(key=lambda r: (SYNC_LEVELS.index(r["sync"]), order[r["peer"]]))
    report = render(results, args, started)
    print(report)
    if not args.no_write:
        RESULTS.write_text(report)
        log(f"written to {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
