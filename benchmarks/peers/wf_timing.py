"""The workflow group's workloads (WF1-WF3) and its ``bench`` role.

Standard library only, like ``timing`` (whose worker processes, stamp files, store set-up
and W2/W4 loops it reuses). A driver subclasses :class:`WorkflowPeer` first and the
task-group driver of the same engine second (``class X(WorkflowPeer, MainspringPeer)``),
so store opening, durability read-back and workers stay the same code.

* **WF1** latency: sequential submit -> result round trips of a 3-step workflow from the
  producer to one idle worker process (``timing.w4_latency``: 10 warm-up rounds, 1 s idle).
* **WF2** throughput: N 3-step workflows preloaded, one worker process with 8 slots
  released (``timing.w2_drain``): from the first step's start to the last step's end, as
  the workflows stamp them, confirmed by the store's own count of completed workflows.
* **WF3** sleepers: one worker process running; a pilot of 200 sleepers measures how
  fast the worker puts workflows to sleep, which sets the first wake time (so that all
  N are asleep a few seconds before it); then N workflows are submitted in batches of
  1,000, the i-th sleeping until ``first + i / wake_rate`` (``--wake-rate`` per second:
  sleepers wake over time, as they do in an application, at a rate the worker can
  resume them, so that the lateness measures the timers, not a backlog). The worker's
  RSS (``VmRSS`` of ``/proc/<pid>/status``, sampled every 0.1 s) is reported at its peak
  between "all asleep" and the first wake time; each workflow stamps ``time.time()``
  when it resumes, and its lateness is that minus its own wake time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import timing

PILOT = 200
MIN_LEAD = 5.0
PHASES = ("wf1", "wf2", "wf3")


class WorkflowPeer(timing.Peer):
    """What a workflow driver adds to its engine's task driver."""

    def submit_flows(self, xs: list[int]) -> None:
        """Submit ``wf.flow(x)`` for each x, batched (1,000 per transaction)."""
        raise NotImplementedError

    def submit_sleepers(self, wakes: list[float]) -> None:
        """Submit ``wf.sleeper(wake)`` for each wake time, batched (1,000 per transaction)."""
        raise NotImplementedError

    def flows_done(self) -> int:
        """Completed ``wf.flow`` workflows, as the store counts them."""
        raise NotImplementedError

    def asleep(self) -> int:
        """Workflows that have recorded their sleep (a monotonic count where possible)."""
        raise NotImplementedError

    def store_counts(self) -> dict[str, Any]:
        """Runs or workflows by state, for the log."""
        return {}

    # timing.w2_drain's hooks
    def preload(self, xs: list[str]) -> None:
        self.submit_flows([int(x.rsplit("-", 1)[-1]) for x in xs])

    def completed(self, stamps: Path) -> int:
        return self.flows_done()


def rss_kb(pid: int, field: str = "VmRSS") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """VmRSS of one process every ``interval`` seconds: [(time.time(), kB), ...]."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            kb = rss_kb(self.pid)
            if kb is not None:
                self.samples.append((time.time(), kb))
            self.halt.wait(self.interval)

    def peak(self, start: float, end: float) -> int | None:
        inside = [kb for t, kb in self.samples if start <= t <= end]
        return max(inside) if inside else None


def _lateness(stamps: Path, first: float) -> list[float]:
    """Each measured sleeper's resume time minus its own wake time (the pilot's wake
    before ``first``)."""
    late = []
    for path in stamps.glob("*.txt"):
        for line in path.read_text().splitlines():
            at, woke = (float(v) for v in line.split())
            if at >= first - 1e-3:
                late.append(woke - at)
    return late


def wf3_sleepers(
    peer: WorkflowPeer, module: str, args: argparse.Namespace, phase: Path, db: str
) -> dict[str, Any]:
    n = args.sleepers
    lifetime = args.max_lead + 2 * args.phase_timeout + timing.READY_TIMEOUT
    workers = timing.Workers(module, args, phase, db, lifetime=lifetime)
    result: dict[str, Any] = {"n": n}
    peak: int | None = None
    wake, all_asleep, woke = 0.0, False, False
    try:
        workers.start(1)
        pid = workers.procs[0].pid
        sampler = RssSampler(pid)
        sampler.start()
        time.sleep(1.0)
        result["rss_idle_mb"] = (rss_kb(pid) or 0) / 1024

        # Pilot: how fast does this worker put workflows to sleep? (sets the wake time)
        base = peer.asleep()
        t0 = time.perf_counter()
        peer.submit_sleepers([round(time.time() + 3.0, 3)] * PILOT)
        if not timing.wait_for(lambda: peer.asleep() - base >= PILOT or workers.dead(), 60.0, 0.02):
            raise TimeoutError(f"pilot: {PILOT} sleepers not asleep after 60 s")
        workers.check_alive()
        pilot_s = time.perf_counter() - t0
        timing.wait_for(lambda: timing.stamp_count(workers.stamps) >= PILOT, 60.0, 0.05)
        lead = min(args.max_lead, max(MIN_LEAD, 3.0 + 1.3 * pilot_s * n / PILOT))
        result.update(pilot_seconds=pilot_s, lead_seconds=lead)
        print(f"   pilot: {PILOT} asleep in {pilot_s:.2f}s; lead {lead:.1f}s", flush=True)

        # The N sleepers, waking from ``wake`` on at ``wake_rate`` per second.
        base = peer.asleep()
        wake = round(time.time() + lead, 3)
        t0 = time.perf_counter()
        peer.submit_sleepers([round(wake + i / args.wake_rate, 4) for i in range(n)])
        result["wake_rate"] = args.wake_rate
        result["submit_seconds"] = time.perf_counter() - t0
        all_asleep = timing.wait_for(
            lambda: peer.asleep() - base >= n or time.time() >= wake - 0.05 or workers.dead(),
            lead + 5,
            0.1,
        )
        asleep_at = time.time()
        result["asleep_by_wake"] = min(n, peer.asleep() - base)
        all_asleep = all_asleep and result["asleep_by_wake"] >= n
        result["asleep_seconds"] = asleep_at - (wake - lead)
        workers.check_alive()
        while time.time() < wake:
            time.sleep(min(0.05, max(0.0, wake - time.time())))
        peak = sampler.peak(asleep_at, wake)
        print(
            f"   {result['asleep_by_wake']}/{n} asleep {result['asleep_seconds']:.1f}s after "
            f"submission began; RSS peak {(peak or 0) / 1024:.1f} MB",
            flush=True,
        )
        woke = timing.wait_for(
            lambda: timing.stamp_count(workers.stamps) >= PILOT + n or workers.dead(),
            args.phase_timeout,
            0.1,
        )
        result["hwm_mb"] = (rss_kb(pid, "VmHWM") or 0) / 1024
        result["store"] = peer.store_counts()
        workers.check_alive()
        sampler.halt.set()
    finally:
        workers.stop()
    late = _lateness(workers.stamps, wake)
    if peak is not None:
        result["rss_mb"] = peak / 1024
    result["woken"] = len(late)
    if late:
        result.update({f"late_{k}": v for k, v in timing.latency_summary(late).items()})
        result["resume_span_s"] = max(late) + n / args.wake_rate
    errors = []
    if not all_asleep:
        errors.append(f"only {result['asleep_by_wake']}/{n} asleep at the wake time")
    if not woke or len(late) < n:
        errors.append(f"timeout: {len(late)}/{n} resumed {args.phase_timeout:.0f}s after wake")
    if errors:
        result["error"] = "; ".join(errors)
    return result


def bench_main(make_peer: Callable[[], Any], module: str, args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    result: dict[str, Any] = {
        "sync": args.sync,
        "backend": args.backend,
        "n": args.n,
        "sleepers": args.sleepers,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
    }

    def save() -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(out)

    try:
        probe = make_peer()
        result.update(peer=probe.name, version=probe.version(), notes=probe.notes)
        if args.backend not in probe.backends:
            raise timing.Unsupported(f"{probe.name} has no {args.backend} driver here")
    except Exception as exc:
        result["error"] = timing.describe_error(exc)
        traceback.print_exc()
        save()
        return
    save()

    runs: dict[str, Callable[[Any, Path, str], dict[str, Any]]] = {
        "wf1": lambda p, ph, db: timing.w4_latency(p, module, args, ph, db),
        "wf2": lambda p, ph, db: timing.w2_drain(p, module, args, ph, db, 1),
        "wf3": lambda p, ph, db: wf3_sleepers(p, module, args, ph, db),
    }
    for key in PHASES:
        if args.phases and key not in args.phases:
            continue
        phase = work / key
        phase.mkdir(parents=True, exist_ok=True)
        db = str(phase / "store.db")
        database = ""
        peer = make_peer()
        began = time.monotonic()
        print(f"[{result['peer']}/{args.sync}] {key} ...", file=sys.stderr, flush=True)
        cell: dict[str, Any]
        try:
            if args.backend == "postgres":
                database = timing.pg_bench_dbname(result["peer"], key, os.getpid())
                db = timing.create_database(args.pg_url, database)
            peer.open(db, args.sync, "producer")
            result.setdefault("producer_durability", peer.durability())
            cell = runs[key](peer, phase, db)
        except Exception as exc:
            traceback.print_exc()
            cell = {"error": timing.describe_error(exc)}
        finally:
            try:
                peer.close()
            except Exception:
                traceback.print_exc()
            if database:
                try:
                    timing.drop_database(args.pg_url, database)
                except Exception:
                    traceback.print_exc()
        cell["wall_seconds"] = time.monotonic() - began
        print(f"   {key}: {json.dumps(cell, default=str)[:400]}", flush=True)
        result[key] = cell
        if cell.get("durability") and "durability" not in result:
            result["durability"] = cell["durability"]
        save()


def main(make_peer: Callable[[], Any], module: str) -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("worker", "init"):
        timing.main(make_peer, module)  # the same worker and init roles as the task group
        return
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    sub = parser.add_subparsers(dest="role", required=True)
    bench = sub.add_parser("bench", help="run the workflow workloads (the producer side)")
    bench.add_argument("--sync", choices=["full", "normal", "server"], default="full")
    bench.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    bench.add_argument("--workdir", required=True)
    bench.add_argument("--out", required=True)
    bench.add_argument("--n", type=int, default=1_000, help="WF2 workflows")
    bench.add_argument("--rounds", type=int, default=200, help="WF1 round trips")
    bench.add_argument("--sleepers", type=int, default=10_000, help="WF3 workflows")
    bench.add_argument(
        "--wake-rate", type=float, default=250.0, help="WF3 sleepers waking per second"
    )
    bench.add_argument("--max-lead", type=float, default=150.0, help="WF3 wake time cap, s")
    bench.add_argument("--concurrency", type=int, default=8)
    bench.add_argument("--phase-timeout", type=float, default=120.0)
    bench.add_argument("--repeat", type=int, default=1, help="(unused: one run per cell)")
    bench.add_argument("--phases", nargs="*", default=[])
    bench.add_argument("--pg-url", default=timing.PG_DEFAULT_URL)
    args = parser.parse_args()

    def make() -> Any:
        peer = make_peer()
        peer.backend = args.backend
        return peer

    bench_main(make, module, args)
