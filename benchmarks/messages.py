"""Durable messages: publish latency, batched publish rate and publish-to-delivery latency,
mainspring on SQLite (synchronous=FULL) and PostgreSQL, beside PgQueuer's enqueue on the
same PostgreSQL server for scale, in one invocation.

    python benchmarks/messages.py                 # both stores, and PgQueuer
    python benchmarks/messages.py --quick         # fewer rounds
    python benchmarks/messages.py --no-pgqueuer   # mainspring only

- publish: ``app.publish(topic, payload)`` one call (one transaction) at a time, with one
  subscriber declared (each publish also creates its delivery run); p50/p99 of the call.
- batched: ``app.publish_many(topic, payloads)``, 1,000 per call; messages per second.
- publish-to-delivery: one message at a time to an idle in-process worker whose subscriber
  stamps ``time.time()`` when it starts; p50/p99 of that minus the time before publish.
- PgQueuer: ``Queries.enqueue`` one job per call (p50/p99), and 1,000 per call (jobs/s),
  in its own virtual environment (benchmarks/.venvs/pgqueuer).

Targets: durable publish p50 under 2 ms and publish-to-delivery p50 under 5 ms on SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import PG_PEERS, ensure_venv  # noqa: E402

import mainspring as ms  # noqa: E402

PG_URL = os.environ.get("MAINSPRING_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PAYLOAD = {"order": 42, "sku": "task-00000000042"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(url: str, rounds: int, batches: int) -> dict[str, Any]:
    app = ms.App(url)
    delivered: dict[int, float] = {}
    ready = threading.Event()

    @app.subscriber("bench.delivery", name="bench.stamp")
    def stamp(msg: ms.Message) -> None:
        delivered[msg.payload["i"]] = time.time()
        ready.set()

    @app.subscriber("bench.publish", name="bench.sink")
    def sink(msg: ms.Message) -> None:
        """Declared so that each publish creates a delivery (never run here)."""

    app.open()
    out: dict[str, Any] = {}
    for _ in range(20):  # warm-up
        app.publish("bench.publish", PAYLOAD)
    lat = []
    for _ in range(rounds):
        t = time.perf_counter()
        app.publish("bench.publish", PAYLOAD)
        lat.append((time.perf_counter() - t) * 1000)
    out["publish_p50_ms"], out["publish_p99_ms"] = percentile(lat, 0.5), percentile(lat, 0.99)
    t = time.perf_counter()
    for _ in range(batches):
        app.publish_many("bench.batch", [PAYLOAD] * 1000)
    out["batch_per_s"] = batches * 1000 / (time.perf_counter() - t)
    with app.worker(concurrency=8, queues=None) as w:
        w.run_until_done(timeout=300)  # the sink's deliveries (no-ops) out of the way
        delay = []
        for i in range(rounds // 2):
            ready.clear()
            t0 = time.time()
            app.publish("bench.delivery", {"i": i})
            if not ready.wait(10):
                raise TimeoutError("a delivery did not start within 10 s")
            delay.append((delivered[i] - t0) * 1000)
            time.sleep(0.002)  # the worker idles between messages
    out["delivery_p50_ms"] = percentile(delay, 0.5)
    out["delivery_p99_ms"] = percentile(delay, 0.99)
    app.close()
    return out


PGQUEUER_SCRIPT = """
import asyncio, json, sys, time
import asyncpg
from pgqueuer import Queries
from pgqueuer.db import AsyncpgDriver

async def main(url, rounds, batches):
    conn = await asyncpg.connect(url)
    q = Queries(AsyncpgDriver(conn))
    await q.install()
    lat = []
    for _ in range(20):
        await q.enqueue("bench", b"task-00000000042")
    for _ in range(rounds):
        t = time.perf_counter()
        await q.enqueue("bench", b"task-00000000042")
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    t = time.perf_counter()
    for _ in range(batches):
        await q.enqueue(["bench"] * 1000, [b"task-00000000042"] * 1000, [0] * 1000)
    rate = batches * 1000 / (time.perf_counter() - t)
    await conn.close()
    print(json.dumps({"publish_p50_ms": lat[len(lat) // 2],
                      "publish_p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
                      "batch_per_s": rate}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def pg_database() -> tuple[str, Any]:
    import psycopg

    name = f"bench_messages_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg.connect(PG_URL, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    return f"{base}/{name}", lambda: admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 rounds, 3 batches")
    parser.add_argument("--no-pgqueuer", action="store_true")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args()
    rounds, batches = (200, 3) if args.quick else (1000, 10)
    rows: list[tuple[str, str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as d:
        print("mainspring on SQLite (WAL + FULL) ...", file=sys.stderr, flush=True)
        rows.append(
            ("mainspring", "SQLite WAL + FULL", measure(f"sqlite:///{d}/m.db", rounds, batches))
        )
    if not args.no_pg:
        url, drop = pg_database()
        try:
            print("mainspring on PostgreSQL ...", file=sys.stderr, flush=True)
            rows.append(("mainspring", "PostgreSQL", measure(url, rounds, batches)))
        finally:
            drop()
        if not args.no_pgqueuer:
            spec = PG_PEERS["pgqueuer"]
            python = ensure_venv(spec.venv, list(spec.requirements))
            url, drop = pg_database()
            try:
                print("PgQueuer enqueue on PostgreSQL ...", file=sys.stderr, flush=True)
                done = subprocess.run(
                    [str(python), "-c", PGQUEUER_SCRIPT, url, str(rounds), str(batches)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                rows.append(("pgqueuer (enqueue)", "PostgreSQL", json.loads(done.stdout)))
            finally:
                drop()

    def num(cell: dict[str, Any], key: str, fmt: str) -> str:
        return format(cell[key], fmt) if key in cell else "n/a"

    print(f"\n{rounds} publishes per latency cell, {batches} x 1,000 per batch cell\n")
    print("| peer | store | publish p50 ms | publish p99 ms | batched msgs/s | "
          "publish-to-delivery p50 ms | p99 ms |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for peer, store, cell in rows:
        print(
            f"| {peer} | {store} | {num(cell, 'publish_p50_ms', '.2f')} "
            f"| {num(cell, 'publish_p99_ms', '.2f')} | {num(cell, 'batch_per_s', ',.0f')} "
            f"| {num(cell, 'delivery_p50_ms', '.2f')} | {num(cell, 'delivery_p99_ms', '.2f')} |"
        )
    sqlite = rows[0][2]
    print(
        f"\nTargets (SQLite): publish p50 < 2 ms: {sqlite['publish_p50_ms']:.2f} "
        f"({'met' if sqlite['publish_p50_ms'] < 2 else 'missed'}); publish-to-delivery p50 "
        f"< 5 ms: {sqlite['delivery_p50_ms']:.2f} "
        f"({'met' if sqlite['delivery_p50_ms'] < 5 else 'missed'})"
    )
    print(f"(one run per cell; machine load {os.getloadavg()[0]:.1f} at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
