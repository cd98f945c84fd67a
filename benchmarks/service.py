"""Benchmark of the HTTP service (docs/service.md, "Speed"): ``mainspring serve`` in a
process of its own over a store of many runs, driven by client processes on loopback.

    .venv/bin/python benchmarks/service.py                  # SQLite, 100,000 runs
    .venv/bin/python benchmarks/service.py --quick          # a 10-second smoke run
    .venv/bin/python benchmarks/service.py --store postgresql://127.0.0.1/bench?schema=svc

Three measures, each bounded in time, all traffic to 127.0.0.1:
- ``GET /api/v1/runs?limit=50`` (all runs, and one state), p50/p99 and requests/s, from
  ``--clients`` keep-alive connections in separate processes;
- submits over HTTP (``POST /api/v1/tasks/{name}/runs``), requests/s and p99, likewise;
- the log stream's lag: ``--sse-clients`` clients follow ``/api/v1/log/stream`` while this
  process submits runs through the Python API at a steady rate; the lag is from a
  submit's return (its commit) to its ``run.created`` event reaching each client, p50/p99.
Targets: list p99 < 20 ms, 1,000 submits/s over HTTP on SQLite, stream lag p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import mainspring as ms  # noqa: E402

TASK = "bench.noop"
SERVE = (sys.executable, "-m", "mainspring.cli.main", "serve")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_app(url: str) -> ms.App:
    app = ms.App(url)

    @app.task(name=TASK)
    def noop(i: int) -> int:
        return i

    return app


def fill(url: str, runs: int) -> None:
    """Put ``runs`` runs in the store (in transactions of 5,000), spread over states."""
    app = make_app(url)
    have = sum(app.stats().values())
    batch = 5000
    t0 = time.monotonic()
    while have < runs:
        n = min(batch, runs - have)
        handles = app.submit_many(TASK, [((i,), {}) for i in range(n)])
        if have % 20000 == 0:  # some of them canceled: the listing sees several states
            app.run(handles[0].run_id).cancel()
        have += n
        print(f"\r  store: {have:,} runs ({time.monotonic() - t0:.0f} s)", end="", flush=True)
    print()
    app.close()


def client(port: int, what: str, seconds: float, q: Any) -> None:
    """One keep-alive connection doing ``what`` for ``seconds``; its latencies."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"args": [1]})
    path = {"list": "/api/v1/runs?limit=50", "list-ready": "/api/v1/runs?limit=50&state=ready"}
    lat: list[float] = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        t = time.perf_counter()
        if what == "submit":
            con.request(
                "POST", f"/api/v1/tasks/{TASK}/runs", body, {"Content-Type": "application/json"}
            )
        else:
            con.request("GET", path[what])
        r = con.getresponse()
        r.read()
        lat.append(time.perf_counter() - t)
        if r.status not in (200, 201):
            raise SystemExit(f"{what}: HTTP {r.status}")
    q.put(lat)


def load(port: int, what: str, clients: int, seconds: float) -> dict[str, float]:
    q: Any = mp.Queue()
    procs = [mp.Process(target=client, args=(port, what, seconds, q)) for _ in range(clients)]
    for p in procs:
        p.start()
    lat: list[float] = []
    for _ in procs:
        lat += q.get(timeout=seconds + 60)
    for p in procs:
        p.join(10)
    return {"rps": len(lat) / seconds, "p50": pct(lat, 0.5) * 1e3, "p99": pct(lat, 0.99) * 1e3}


def sse_clients(port: int, n: int, seconds: float, ready: Any, q: Any) -> None:
    """``n`` stream clients (threads of one process); (run_id, arrival time) of every
    ``run.created`` event each one saw."""
    seen: list[tuple[str, float]] = []
    lock = threading.Lock()
    started = threading.Barrier(n + 1)

    def follow() -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            b"GET /api/v1/log/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
        )
        sock.settimeout(0.5)
        started.wait()
        buf = b""
        stop = time.monotonic() + seconds
        mine: list[tuple[str, float]] = []
        while time.monotonic() < stop:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            now = time.time()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.startswith(b"data: {") and b'"run.created"' in line:
                    mine.append((json.loads(line[6:])["run_id"], now))
        sock.close()
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=follow) for _ in range(n)]
    for t in threads:
        t.start()
    started.wait()
    ready.set()
    for t in threads:
        t.join()
    q.put(seen)


def sse_lag(url: str, port: int, n: int, seconds: float, rate: float) -> dict[str, float]:
    q: Any = mp.Queue()
    ready: Any = mp.Event()
    proc = mp.Process(target=sse_clients, args=(port, n, seconds + 2, ready, q))
    proc.start()
    ready.wait(30)
    time.sleep(0.5)
    app = make_app(url)
    committed: dict[str, float] = {}
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        h = app.submit(TASK, (1,))
        committed[h.run_id] = time.time()
        time.sleep(1 / rate)
    seen = q.get(timeout=seconds + 60)
    proc.join(10)
    app.close()
    lags = [t - committed[r] for r, t in seen if r in committed]
    expected = len(committed) * n
    return {
        "events": len(lags),
        "expected": expected,
        "p50": pct(lags, 0.5) * 1e3,
        "p99": pct(lags, 0.99) * 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="store URL (default: a new SQLite file in a temp dir)")
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=5.0, help="per measure")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--processes", type=int, default=1, help="server processes (serve --processes)")
    ap.add_argument("--sse-clients", type=int, default=10)
    ap.add_argument("--rate", type=float, default=50.0, help="submits/s during the lag measure")
    ap.add_argument("--quick", action="store_true", help="10,000 runs, 2 s per measure")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.seconds = 10_000, 2.0
    tmp = tempfile.mkdtemp(prefix="mainspring-svc-bench-")
    url = args.store or f"sqlite:///{tmp}/bench.db"
    print(
        f"store {url}, {args.runs:,} runs, {args.clients} clients, {args.seconds:g} s per measure, "
        f"{args.processes} server process(es)"
    )
    fill(url, args.runs)
    port = free_port()
    env = dict(os.environ, MAINSPRING_STORE=url, PYTHONPATH=ROOT)
    server = subprocess.Popen(
        [*SERVE, "--port", str(port), "--processes", str(args.processes)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                con = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                con.request("GET", "/readyz")
                if con.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the service did not start")
            time.sleep(0.2)
        rows = []
        for what in ("list", "list-ready", "submit"):
            r = load(port, what, args.clients, args.seconds)
            rows.append((what, r))
            print(
                f"  {what:10} {r['rps']:7.0f} req/s   p50 {r['p50']:6.2f} ms   p99 {r['p99']:6.2f} ms"
            )
        lag = sse_lag(url, port, args.sse_clients, args.seconds, args.rate)
        print(
            f"  stream lag ({args.sse_clients} clients, {args.rate:g} submits/s): "
            f"p50 {lag['p50']:.1f} ms, p99 {lag['p99']:.1f} ms "
            f"({lag['events']:.0f} of {lag['expected']:.0f} events received)"
        )
        print()
        print("| measure | result | target |")
        print("| --- | --- | --- |")
        lst = dict(rows)
        print(
            f"| `GET /runs?limit=50`, {args.runs:,} runs | p50 {lst['list']['p50']:.1f} ms, p99 {lst['list']['p99']:.1f} ms | p99 < 20 ms |"
        )
        print(
            f"| same, `state=ready` | p50 {lst['list-ready']['p50']:.1f} ms, p99 {lst['list-ready']['p99']:.1f} ms | |"
        )
        print(
            f"| submit over HTTP, {args.clients} clients, {args.processes} server process(es) | {lst['submit']['rps']:.0f}/s, p99 {lst['submit']['p99']:.1f} ms | 1,000/s |"
        )
        print(
            f"| stream lag, {args.sse_clients} clients | p50 {lag['p50']:.1f} ms, p99 {lag['p99']:.1f} ms | p99 < 50 ms |"
        )
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
