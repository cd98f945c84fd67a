#!/usr/bin/env python3
"""The in-process bus, side by side with blinker's bare signal send.

    .venv/bin/python benchmarks/bus.py            # 20,000 timed rounds each, 10 s sustained
    .venv/bin/python benchmarks/bus.py --quick    # 2,000 rounds, 2 s sustained
    .venv/bin/python benchmarks/bus.py --check    # exit 1 when a target is missed
    .venv/bin/python benchmarks/bus.py --no-blinker

mainspring runs in this interpreter (the project's ``.venv``); blinker runs in its own
virtual environment, ``benchmarks/.venvs/blinker``, created on first use with ``pip install
blinker`` (this script re-runs itself there with ``--peer blinker`` and reads its JSON).
Both sides time the same things with the same code: each round is one call, timed with
``perf_counter_ns`` around the call, after a warm-up the statistics leave out.

- **request**: ``bus.request`` of a handler returning a small dict, versus blinker's
  ``send`` to one receiver returning it (the closest thing blinker has to a command).
- **fan-out 50**: one event to 50 subscribers, each bumping a counter: ``bus.publish``
  versus ``signal.send``.
- **validation**: building an event envelope (the payload encoded and its size checked, a
  sequence taken, the Struct built: ``publish`` with no subscriber) and validating one
  given as JSON bytes (``validate_envelope``). blinker has neither.
- **sustained**: ``--threads`` publishers on one topic as fast as they can for
  ``--seconds``; one subscriber counts what it receives and counts inversions (a sequence
  not exactly one more than the last it saw). Lost = published - received.

Targets (from the bus work package): request p95 < 0.1 ms; fan-out to 50 p95 < 1 ms and
within 3x blinker's; 50,000 messages/s for 10 s with nothing lost or reordered. Standard
library only, besides the two buses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venvs" / "blinker"
BLINKER_REQ = "blinker>=1.9,<2"
PAYLOAD = {"order": 42, "sku": "sku-0001", "qty": 3}
FANOUT = 50


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(call: Callable[[], object], rounds: int, warmup: int) -> dict[str, float]:
    """p50/p95/p99/mean of ``call`` in microseconds, the warm-up rounds left out."""
    clock = time.perf_counter_ns
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(rounds):
        t0 = clock()
        call()
        samples.append(clock() - t0)
    samples.sort()

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(p * len(samples)))] / 1000

    return {
        "p50": pct(0.50),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "mean": statistics.fmean(samples) / 1000,
    }


def sustained(
    publish: Callable[[int], object], received: Callable[[], int], seconds: float, threads: int
) -> dict[str, float]:
    """``threads`` publishers calling ``publish`` for ``seconds``; messages/s and loss."""
    counts = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def run(i: int) -> None:
        start.wait()
        n = 0
        while not stop.is_set():
            for _ in range(100):  # check the clock less often than we publish
                publish(i)
            n += 100
        counts[i] = n

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    published = sum(counts)
    return {
        "published": published,
        "received": received(),
        "lost": published - received(),
        "seconds": elapsed,
        "rate": published / elapsed,
    }


# --------------------------------------------------------------------------- mainspring


def bench_mainspring(rounds: int, warmup: int, seconds: float, threads: int) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH.parent))
    import msgspec

    from mainspring.bus import Bus, Envelope, validate_envelope

    out: dict[str, Any] = {"version": _version("mainspring")}
    bus = Bus()

    @bus.command("bench.quote")
    def quote(payload: dict[str, Any]) -> dict[str, Any]:
        return {"price": 42}

    out["request"] = timed(lambda: bus.request("bench.quote", PAYLOAD), rounds, warmup)
    out["request_timeout"] = timed(
        lambda: bus.request("bench.quote", PAYLOAD, timeout=1.0), rounds, warmup
    )

    hits = [0]

    def make_sub() -> Callable[[Envelope], None]:
        def sub(env: Envelope) -> None:
            hits[0] += 1

        return sub

    for _ in range(FANOUT):
        bus.subscribe("bench.fanout", make_sub())
    out["fanout"] = timed(lambda: bus.publish("bench.fanout", PAYLOAD), rounds, warmup)
    assert hits[0] == FANOUT * (rounds + warmup), "fan-out lost deliveries"

    out["publish_none"] = timed(lambda: bus.publish("bench.nobody", PAYLOAD), rounds, warmup)
    wire = msgspec.json.encode(bus.publish("bench.nobody", PAYLOAD))
    out["validate"] = timed(lambda: validate_envelope(wire), rounds, warmup)

    # sustained: one topic, every publisher thread on it, one checking subscriber
    state = {"last": 0, "received": 0, "inversions": 0}

    def check(env: Envelope) -> None:
        seq = env.sequence
        assert seq is not None
        if seq != state["last"] + 1:
            state["inversions"] += 1
        state["last"] = seq
        state["received"] += 1

    bus.subscribe("bench.sustained", check)
    result = sustained(
        lambda i: bus.publish("bench.sustained", PAYLOAD),
        lambda: state["received"],
        seconds,
        threads,
    )
    result["inversions"] = state["inversions"]
    result["gapless"] = bus.last_sequence("bench.sustained") == result["published"]
    out["sustained"] = result
    return out


# --------------------------------------------------------------------------- blinker


def bench_blinker(rounds: int, warmup: int, seconds: float, threads: int) -> dict[str, Any]:
    import blinker

    out: dict[str, Any] = {"version": _version("blinker")}
    sender = object()
    one = blinker.Signal()

    def quote(sender: object, **kw: Any) -> dict[str, Any]:
        return {"price": 42}

    one.connect(quote, weak=False)
    out["request"] = timed(lambda: one.send(sender, payload=PAYLOAD), rounds, warmup)

    hits = [0]
    fan = blinker.Signal()

    def make_sub() -> Callable[..., None]:
        def sub(sender: object, **kw: Any) -> None:
            hits[0] += 1

        return sub

    for _ in range(FANOUT):
        fan.connect(make_sub(), weak=False)
    out["fanout"] = timed(lambda: fan.send(sender, payload=PAYLOAD), rounds, warmup)
    assert hits[0] == FANOUT * (rounds + warmup)

    count = [0]
    sig = blinker.Signal()

    def counter(sender: object, **kw: Any) -> None:
        count[0] += 1

    sig.connect(counter, weak=False)
    out["sustained"] = sustained(
        lambda i: sig.send(sender, payload=PAYLOAD), lambda: count[0], seconds, threads
    )
    return out


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def ensure_blinker() -> Path:
    """``benchmarks/.venvs/blinker`` with blinker installed; its python."""
    python = VENV / "bin" / "python"
    marker = VENV / ".bench-requirements"
    if python.exists() and marker.exists() and marker.read_text() == BLINKER_REQ + "\n":
        return python
    log(f"setting up {VENV.relative_to(BENCH.parent)}: pip install {BLINKER_REQ}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, BLINKER_REQ], check=True)
    marker.write_text(BLINKER_REQ + "\n")
    return python


def run_blinker(args: argparse.Namespace) -> dict[str, Any]:
    python = ensure_blinker()
    cmd = [str(python), __file__, "--peer", "blinker", "--json"]
    cmd += ["--rounds", str(args.rounds), "--warmup", str(args.warmup)]
    cmd += ["--seconds", str(args.seconds), "--threads", str(args.threads)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --------------------------------------------------------------------------- report


def us(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} µs"


def report(ms: dict[str, Any], bl: dict[str, Any] | None, args: argparse.Namespace) -> bool:
    def cell(side: dict[str, Any] | None, key: str, stat: str) -> float | None:
        if side is None or key not in side:
            return None
        value: float = side[key][stat]
        return value

    rows = [
        ("request (command → response)", "request"),
        ("request with timeout=1.0", "request_timeout"),
        (f"fan-out to {FANOUT} subscribers", "fanout"),
        ("event envelope built (publish, no subscriber)", "publish_none"),
        ("envelope validated from JSON bytes", "validate"),
    ]
    bl_version = bl["version"] if bl else "not run"
    lines = [
        f"mainspring {ms['version']} bus vs blinker {bl_version}; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs; {args.rounds:,} timed rounds "
        f"after {args.warmup:,} warm-up",
        "",
        "| measure | mainspring p50 | mainspring p95 | mainspring p99 | blinker p50 | blinker p95 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, key in rows:
        lines.append(
            f"| {label} | {us(cell(ms, key, 'p50'))} | {us(cell(ms, key, 'p95'))} | "
            f"{us(cell(ms, key, 'p99'))} | {us(cell(bl, key, 'p50'))} | "
            f"{us(cell(bl, key, 'p95'))} |"
        )
    s = ms["sustained"]
    lines += [
        "",
        f"Sustained, {args.threads} publisher threads on one topic for {args.seconds:g} s:",
        "",
        "| bus | messages/s | published | received | lost | inversions |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| mainspring | {s['rate']:,.0f} | {s['published']:,} | {s['received']:,} | "
        f"{s['lost']:,} | {s['inversions']:,} |",
    ]
    if bl is not None:
        b = bl["sustained"]
        lines.append(
            f"| blinker | {b['rate']:,.0f} | {b['published']:,} | {b['received']:,} | "
            f"{b['lost']:,} | n/a (no sequence) |"
        )

    fan95 = ms["fanout"]["p95"]
    checks = [
        ("request p95 < 100 µs", ms["request"]["p95"] < 100),
        ("fan-out to 50 p95 < 1 ms", fan95 < 1000),
        (
            "fan-out to 50 p95 within 3x blinker's",
            None if bl is None else fan95 <= 3 * bl["fanout"]["p95"],
        ),
        ("sustained >= 50,000 msg/s", s["rate"] >= 50_000),
        ("sustained: nothing lost", s["lost"] == 0 and s["gapless"]),
        ("sustained: nothing reordered", s["inversions"] == 0),
    ]
    lines += ["", "| target | |", "| --- | --- |"]
    ok = True
    for label, passed in checks:
        mark = "n/a" if passed is None else ("met" if passed else "MISSED")
        ok = ok and passed is not False
        lines.append(f"| {label} | {mark} |")
    if bl is not None:
        lines.append(
            f"\nfan-out ratio mainspring/blinker (p95): {fan95 / bl['fanout']['p95']:.2f}x"
        )
    print("\n".join(lines))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 rounds, 2 s sustained")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--no-blinker", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", action="store_true", help="print raw results as JSON")
    parser.add_argument("--peer", choices=("mainspring", "blinker"), default=None)
    args = parser.parse_args()
    args.rounds = args.rounds or (2_000 if args.quick else 20_000)
    args.warmup = args.warmup if args.warmup is not None else (200 if args.quick else 2_000)
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)

    bench = bench_blinker if args.peer == "blinker" else bench_mainspring
    if args.peer is not None:
        result = bench(args.rounds, args.warmup, args.seconds, args.threads)
        print(json.dumps(result))
        return 0

    bl = None if args.no_blinker else run_blinker(args)
    ms = bench_mainspring(args.rounds, args.warmup, args.seconds, args.threads)
    if args.json:
        print(json.dumps({"mainspring": ms, "blinker": bl}, indent=2))
        return 0
    ok = report(ms, bl, args)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
