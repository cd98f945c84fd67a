"""Rate-limit accuracy: a task limited to 100 starts per second, drained by 8 worker
processes (of 1 slot each, by default), with more work queued than the limit lets
through, once every worker is up. Per second of the run: how many attempts started (the
log's ``attempt.started`` times), which should stay at or under the limit and, while
there is work, close to it.

    python benchmarks/ratelimit.py                 # SQLite (synchronous=FULL), 20 s
    python benchmarks/ratelimit.py --store URL     # e.g. a PostgreSQL URL
    python benchmarks/ratelimit.py --workers 2 --slots 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import mainspring as ms  # noqa: E402

LIMIT = 100
WORKER = textwrap.dedent(
    """
    import sys
    import mainspring as ms
    app = ms.App(sys.argv[1])

    @app.task(name="rl.job", rate_limit=ms.RateLimit(LIMIT, per=1.0))
    def job(i):
        return i

    app.run_worker(concurrency=int(sys.argv[2]))
    """
).replace("LIMIT", str(LIMIT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--seconds", type=int, default=20, help="seconds of work queued")
    parser.add_argument("--workers", type=int, default=8, help="worker processes (8)")
    parser.add_argument("--slots", type=int, default=1, help="slots per worker process (1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        url = args.store or f"sqlite:///{d}/rl.db"
        app = ms.App(url)

        @app.task(name="rl.job", rate_limit=ms.RateLimit(LIMIT, per=1.0))
        def job(i: int) -> int:
            return i

        n = LIMIT * args.seconds
        script = Path(d) / "rlworker.py"
        script.write_text(WORKER)
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), url, str(args.slots)], env=dict(os.environ)
            )
            for _ in range(args.workers)
        ]
        try:
            # the work is queued once every worker is up, so that the count measures the
            # limit rather than how long processes take to start
            boot = time.monotonic() + 60
            while len(app.workers()) < args.workers and time.monotonic() < boot:
                time.sleep(0.1)
            for i in range(0, n, 1000):
                job.submit_many([{"i": k} for k in range(i, min(n, i + 1000))])
            deadline = time.monotonic() + args.seconds * 3 + 30
            while app.stats()["completed"] < n and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
        starts = sorted(
            e.at.timestamp() for e in app.log(limit=100 * n) if e.type == "attempt.started"
        )
        app.close()
    first = starts[0]
    per_second: dict[int, int] = {}
    for t in starts:
        per_second[int(t - first)] = per_second.get(int(t - first), 0) + 1
    full = [per_second.get(s, 0) for s in range(int(starts[-1] - first))]  # (the last is partial)
    worst = max(
        sum(1 for s in starts[i:] if s < t + 1.0) for i, t in enumerate(starts)
    )  # the fullest one-second window, anywhere
    print(
        f"{len(starts)} starts of {n} runs, limit {LIMIT}/s, {args.workers} worker processes "
        f"x {args.slots} slot(s)"
    )
    print("starts per second:", " ".join(str(c) for c in full))
    print(
        f"whole seconds: min {min(full)}, max {max(full)}, mean {sum(full) / len(full):.1f}; "
        f"fullest sliding one-second window: {worst}"
    )
    print(
        f"target: within {LIMIT} ({'met' if worst <= LIMIT else 'missed'}) and above "
        f"{int(LIMIT * 0.95)} while there is work ({'met' if min(full) > LIMIT * 0.95 else 'missed'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
