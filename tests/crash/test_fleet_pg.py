"""A fleet of worker processes on one PostgreSQL store, under fire (PostgreSQL only).

* chaos: four workers killed (SIGKILL) and restarted at random while a few hundred runs
  (plain, keyed with limits 1 and 2, retrying) drain;
* dropped connections: the server terminates every worker connection, several times;
* fencing: a worker frozen (SIGSTOP) past its lease reports late, and is refused;
* log follow: a reader following ``app.log(since=cursor)`` while several processes write
  sees every event exactly once, in order.

Handlers append lines to one file (``procs.Workers``): ``start``/``end`` of each execution
(run id, pid, attempt number, ``time.monotonic()``, which is one clock for all processes on
Linux) and, from a wrapper around ``Engine.cycle``, ``rejected`` for each report the engine
fenced out. The chaos is seeded (``MS_FLEET_SEED`` overrides the seed, which its failure
messages show) so that a failing schedule of kills can be replayed.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import textwrap
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import pg_schema_url
from e2e.helpers import check_history, overlap, wait_for

import mainspring as ms
from mainspring.core.errors import StoreError

from .procs import APP_PRELUDE, Workers

try:
    import psycopg
except ImportError:  # pragma: no cover - without the extra, pg_database skips (fails under CI)
    psycopg = None  # type: ignore[assignment]

pytestmark = pytest.mark.crash

LEASE = 1.0
CONCURRENCY = 4
SEED = int(os.environ.get("MS_FLEET_SEED", "20261123"))

FLEET_APP = APP_PRELUDE + textwrap.dedent(
    """
    import contextlib
    import threading

    from mainspring.engine import Engine


    # Instrumentation (test only): say which reports the engine fenced out, and let a
    # handler freeze the process only between two store transactions, so that a frozen
    # worker never holds row locks (see fenced()).
    TX_LOCK = threading.RLock()
    _cycle = Engine.cycle
    Store = type(app.store)
    _write, _read = Store.write, Store.read


    def cycle(self, *args, **kwargs):
        res = _cycle(self, *args, **kwargs)
        for rid in res.rejected:
            record("rejected", rid, os.getpid())
        return res


    @contextlib.contextmanager
    def write(self):
        with TX_LOCK, _write(self) as tx:
            yield tx


    @contextlib.contextmanager
    def read(self, *args, **kwargs):
        with TX_LOCK, _read(self, *args, **kwargs) as tx:
            yield tx


    Engine.cycle, Store.write, Store.read = cycle, write, read


    def execute(seconds):
        ctx = ms.context()
        record("start", ctx.run_id, os.getpid(), ctx.attempt, repr(time.monotonic()))
        time.sleep(seconds)
        record("end", ctx.run_id, os.getpid(), ctx.attempt, repr(time.monotonic()))
        return ctx.attempt


    @app.task(name="fleet.work", max_lost=100)
    def work(i, seconds):
        execute(seconds)
        return i


    @app.task(name="fleet.solo", concurrency_key="{k}", max_lost=100)
    def solo(i, k, seconds):
        execute(seconds)
        return i


    @app.task(name="fleet.pair", concurrency_key="pair", concurrency_limit=2, max_lost=100)
    def pair(i, seconds):
        execute(seconds)
        return i


    @app.task(name="fleet.flaky", max_attempts=3, max_lost=100)
    def flaky(i, fails, seconds):
        if execute(seconds) <= fails:
            raise ms.Retry(delay=0.05, reason="flaky")
        return i


    @app.task(name="fleet.fenced")
    def fenced():
        ctx = ms.context()
        record("start", ctx.run_id, os.getpid(), ctx.attempt, repr(time.monotonic()))
        if ctx.attempt == 1:
            # Freeze the whole process here, holding TX_LOCK: no transaction of this
            # process is open while it is frozen, so it holds no row lock. SIGSTOP takes
            # effect a moment after kill() returns (another thread may be the one picked
            # to take it), so keep TX_LOCK until well after that: the sleep ends at
            # SIGCONT. Then this thread returns without letting go of the GIL (no other
            # thread takes it back before this one blocks: switch interval 1000 s), so its
            # late report is queued before the loop thread can learn that the lease is
            # gone: the report reaches the engine, which must refuse it.
            sys.setswitchinterval(1000.0)
            time.sleep(0.02)  # threads already waiting for the GIL now use the new interval
            with TX_LOCK:
                record("stopping", ctx.run_id, os.getpid())
                os.kill(os.getpid(), signal.SIGSTOP)
                time.sleep(0.5)
        else:
            time.sleep(2.0)  # still running when the frozen worker wakes up
            record("end", ctx.run_id, os.getpid(), ctx.attempt, repr(time.monotonic()))
        return ctx.attempt


    if __name__ == "__main__":
        if sys.argv[1:2] == ["--submit"]:  # a submitter process: one transaction per run
            for i in range(int(sys.argv[2])):
                work.submit(i, 0.0)
            record("submitted", os.getpid())
        else:
            app.run_worker(concurrency=int(os.environ["MS_CONCURRENCY"]), grace_seconds=1.0)
    """
)


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def pg_url(pg_database: str) -> str:
    return pg_schema_url(pg_database, prefix="fleet")


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str) -> Iterator[Workers]:
    w = Workers(tmp_path, pg_url, FLEET_APP, lease=LEASE, name="fleetapp")
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def app(pg_url: str) -> Iterator[ms.App]:
    """The test's own view of the store: the same tasks (names, options, signatures)."""
    app = ms.App(pg_url, lease_seconds=LEASE)

    nowhere = "handlers run in the worker processes only"

    @app.task(name="fleet.work", max_lost=100)
    def work(i: int, seconds: float) -> int:
        raise AssertionError(nowhere)

    @app.task(name="fleet.solo", concurrency_key="{k}", max_lost=100)
    def solo(i: int, k: str, seconds: float) -> int:
        raise AssertionError(nowhere)

    @app.task(name="fleet.pair", concurrency_key="pair", concurrency_limit=2, max_lost=100)
    def pair(i: int, seconds: float) -> int:
        raise AssertionError(nowhere)

    @app.task(name="fleet.flaky", max_attempts=3, max_lost=100)
    def flaky(i: int, fails: int, seconds: float) -> int:
        raise AssertionError(nowhere)

    @app.task(name="fleet.fenced")
    def fenced() -> int:
        raise AssertionError(nowhere)

    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def admin(pg_database: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the test's own to the run's database (for pg_terminate_backend)."""
    con = psycopg.connect(pg_database, autocommit=True, connect_timeout=5)
    try:
        yield con
    finally:
        con.close()


# -- helpers -------------------------------------------------------------------------------
def retrying(fn: Any, what: str) -> Any:
    """Call a read of the test's own App again while it fails with StoreError.

    For the test that terminates connections: the test's own pooled connections die too,
    and a read that finds only dead ones may time out with StoreError."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return fn()
        except StoreError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: the store stayed unreachable") from None
            time.sleep(0.01)


def waiting(fleet: Workers, predicate: Any, timeout: float, what: str) -> Any:
    """``wait_for``, with the workers' logs and lines as they are when it gives up."""
    try:
        return wait_for(predicate, timeout, what)
    except AssertionError as exc:
        lines = "\n".join(" ".join(x) for x in fleet.executions()[-40:])
        raise AssertionError(f"{exc}\n{fleet.logs()}\n--- last lines ---\n{lines}") from None


class Execution:
    def __init__(self, run_id: str, pid: int, attempt: int, start: float) -> None:
        self.run_id, self.pid, self.attempt, self.start = run_id, pid, attempt, start
        self.end: float | None = None


def parse_executions(fleet: Workers) -> dict[str, list[Execution]]:
    """Executions by run id, from the start/end lines; each end matched to its start."""
    by_run: dict[str, list[Execution]] = defaultdict(list)
    open_: dict[tuple[str, int, int], Execution] = {}
    for line in fleet.executions():
        if line[0] == "start":
            ex = Execution(line[1], int(line[2]), int(line[3]), float(line[4]))
            key = (ex.run_id, ex.pid, ex.attempt)
            assert key not in open_, f"attempt executed twice in one process: {line}"
            open_[key] = ex
            by_run[ex.run_id].append(ex)
        elif line[0] == "end":
            ex = open_[(line[1], int(line[2]), int(line[3]))]
            assert ex.end is None, line
            ex.end = float(line[4])
    return by_run


def pid_of_worker(worker_id: str) -> int:
    """Worker ids are ``host:pid:suffix``."""
    m = re.fullmatch(r".*:(\d+):[^:]+", worker_id)
    assert m, worker_id
    return int(m.group(1))


def attempt_workers(app: ms.App, run_id: str) -> dict[str, int]:
    """attempt id -> pid of the worker process that started it (from the log)."""
    return {
        e.attempt_id: pid_of_worker(e.data["worker"])
        for e in app.log(run_id=run_id, limit=1_000_000)
        if e.type == "attempt.started" and e.attempt_id is not None
    }


def check_attempts(info: ms.RunInfo, fails: int) -> list[ms.AttemptResult | None]:
    """The attempts of a completed run whose handler asks for a retry on attempts
    ``1..fails``: exactly one success, last; every attempt that was not lost ended as its
    handler decided. Returns the results of the attempts that were not lost."""
    results = [a.result for a in info.attempts]
    assert results[-1] == ms.AttemptResult.SUCCESS, (info.run_id, results)
    assert results.count(ms.AttemptResult.SUCCESS) == 1, (info.run_id, results)
    for a in info.attempts:
        if a.result != ms.AttemptResult.LOST:
            decided = ms.AttemptResult.RETRYABLE if a.number <= fails else ms.AttemptResult.SUCCESS
            assert a.result == decided, (info.run_id, a.number, results)
    return [r for r in results if r != ms.AttemptResult.LOST]


def check_completed_once(app: ms.App, run_ids: list[str]) -> None:
    """The log says each run completed exactly once (and nothing else completed)."""
    done = Counter(
        e.run_id
        for e in app.log(limit=10_000_000)
        if e.type == "run.state_changed" and e.data["to"] == "completed"
    )
    for rid in run_ids:
        assert done[rid] == 1, (rid, done[rid])
    assert sum(done.values()) == len(run_ids)


def terminate_backends(admin: psycopg.Connection[Any]) -> int:
    """Terminate every other connection to the run's database; how many were."""
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def listeners(admin: psycopg.Connection[Any]) -> int:
    """How many connections to the run's database are waiting for wake-ups (LISTEN)."""
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND query LIKE 'LISTEN %'"
    ).fetchone()
    return int(row[0]) if row else 0


def proc_state(pid: int) -> str:
    """The kernel's one-letter state of a process (T: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


# -- a. kill -9 at random --------------------------------------------------------------------
@pytest.mark.slow
def test_fleet_survives_random_kill9_and_restarts(app: ms.App, fleet: Workers) -> None:
    rng = random.Random(SEED)
    seed = f"(MS_FLEET_SEED={SEED})"
    t = app.declared
    # 270 runs, in four batches: one before the chaos, the others while it goes on
    expected: dict[str, tuple[str, int, int]] = {}  # run id -> (task, i, retries allowed)
    plan: list[tuple[str, int, tuple[Any, ...]]] = []
    for i in range(150):
        plan.append(("fleet.work", i, (i, round(rng.uniform(0.1, 0.6), 3))))
    for i in range(45):
        plan.append(("fleet.solo", i, (i, "abc"[i % 3], 0.1)))
    for i in range(30):
        plan.append(("fleet.pair", i, (i, 0.2)))
    for i in range(45):
        plan.append(("fleet.flaky", i, (i, 1 + i % 2, 0.05)))
    rng.shuffle(plan)
    batches = [plan[k::4] for k in range(4)]

    def submit(batch: list[tuple[str, int, tuple[Any, ...]]]) -> None:
        for name in sorted({n for n, _, _ in batch}):
            calls: list[tuple[Any, dict[str, Any]]] = [(a, {}) for n, _, a in batch if n == name]
            handles = app.submit_many(t[name], calls)
            for h, (n, i, args) in zip(handles, [b for b in batch if b[0] == name], strict=True):
                expected[h.run_id] = (n, i, args[1] if n == "fleet.flaky" else 0)

    submit(batches[0])
    for _ in range(4):
        fleet.start(concurrency=CONCURRENCY)
    total = len(plan)

    def completed() -> int:
        return app.stats()["completed"]

    kills = 0
    try:
        waiting(fleet, lambda: completed() >= 10, 30, f"the first completions {seed}")
        for step in range(14):
            if step < 3:
                submit(batches[step + 1])
            elif completed() == total:
                break
            time.sleep(rng.uniform(0.25, 0.7))
            # a worker that has had time to start up and lease (a restart takes ~0.5 s)
            now = time.monotonic()
            alive = fleet.alive()
            up = [p for p in alive if now - fleet.started_at[p.pid] > 1.0] or alive
            victim = up[rng.randrange(len(up))]
            fleet.kill9(victim)
            kills += 1
            time.sleep(rng.uniform(0.0, 0.3))
            fleet.start(concurrency=CONCURRENCY)
        waiting(fleet, lambda: completed() == total, 40, f"all {total} runs to complete {seed}")
    finally:
        print(f"{kills} kills {seed}; at the end: {app.stats()}")  # shown when it fails

    killed = set(fleet.killed_at)
    assert kills >= 5, f"only {kills} kills happened before the runs drained {seed}"
    # every worker that was not killed is still up: nothing crashed a worker
    assert len(fleet.alive()) == 4, fleet.logs()
    stats = app.stats()
    assert stats["completed"] == total == sum(stats.values()), stats
    assert len(expected) == total

    executions = parse_executions(fleet)
    assert set(executions) <= set(expected), "an execution of a run nobody submitted"
    lost_by_pid: Counter[int] = Counter()
    lost_runs: set[str] = set()
    for rid, (_, i, fails) in expected.items():
        info = app.get_run(rid)
        assert info.state == ms.RunState.COMPLETED and info.output == i, (rid, info)
        results = [a.result for a in info.attempts]
        kept = check_attempts(info, fails)
        by_attempt = {a.number: a for a in info.attempts}
        ran = {ex.attempt: ex for ex in executions[rid]}
        # an attempt is executed at most once, by the worker that started it
        assert len(ran) == len(executions[rid]), (rid, [e.attempt for e in executions[rid]])
        started_by = attempt_workers(app, rid)
        for number, ex in ran.items():
            assert number in by_attempt, (rid, number, results)
            assert started_by[by_attempt[number].attempt_id] == ex.pid, (rid, number)
        # every attempt that was not lost really ran (to its end)
        for a in info.attempts:
            if a.result != ms.AttemptResult.LOST:
                assert a.number in ran and ran[a.number].end is not None, (rid, a)
        # duplicate executions only where an attempt was lost
        lost = [a for a in info.attempts if a.result == ms.AttemptResult.LOST]
        if len(ran) > len(kept):
            assert lost, (rid, results)
        for a in lost:
            lost_runs.add(rid)
            lost_by_pid[started_by[a.attempt_id]] += 1
    # attempts are lost only by killed workers, at most `concurrency` per kill
    assert set(lost_by_pid) <= killed, (lost_by_pid, killed, seed)
    assert all(n <= CONCURRENCY for n in lost_by_pid.values()), lost_by_pid
    assert lost_runs, f"no kill caught a run in flight: the test tested nothing {seed}"
    check_completed_once(app, list(expected))

    # concurrency keys: an execution holds its key from start to end, or until its
    # process was killed (then it never wrote its end)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for rid, exs in executions.items():
        name, i, _ = expected[rid]
        if name not in ("fleet.solo", "fleet.pair"):
            continue
        key = "abc"[i % 3] if name == "fleet.solo" else "pair"
        for ex in exs:
            if ex.end is None:
                assert ex.pid in killed, (rid, ex.pid, "never ended but was not killed")
            spans[key].append((ex.start, ex.end if ex.end is not None else fleet.killed_at[ex.pid]))
    for key in "abc":
        assert len(spans[key]) >= 15
        ordered = sorted(spans[key])
        for (_, end), (start, _) in itertools.pairwise(ordered):
            assert start >= end, f"key {key!r} (limit 1) ran two executions at once {seed}"
    assert len(spans["pair"]) >= 30
    assert overlap(spans["pair"]) <= 2, f"key 'pair' (limit 2) ran three at once {seed}"

    report = app.verify()
    assert report.ok, report.problems
    for rid in expected:
        check_history(app, rid)


# -- b. dropped connections ------------------------------------------------------------------
@pytest.mark.slow
def test_workers_reconnect_after_their_connections_are_terminated(
    app: ms.App, fleet: Workers, admin: psycopg.Connection[Any]
) -> None:
    rng = random.Random(SEED + 1)
    work, flaky = app.declared["fleet.work"], app.declared["fleet.flaky"]
    expected: dict[str, tuple[int, int]] = {}  # run id -> (i, retries allowed)
    for h, i in zip(
        app.submit_many(work, [((i, round(rng.uniform(0.1, 0.3), 3)), {}) for i in range(200)]),
        range(200),
        strict=True,
    ):
        expected[h.run_id] = (i, 0)
    for h, i in zip(
        app.submit_many(flaky, [((i, 1, 0.05), {}) for i in range(40)]), range(40), strict=True
    ):
        expected[h.run_id] = (i, 1)
    total = len(expected)
    procs = [fleet.start(concurrency=CONCURRENCY) for _ in range(4)]

    def completed() -> int:
        return int(retrying(app.stats, "stats")["completed"])

    waiting(fleet, lambda: completed() >= 20, 30, "the first completions")
    terminated = []
    for _ in range(4):
        before = completed()
        terminated.append(terminate_backends(admin))
        # the workers carry on: more runs complete after each storm
        waiting(
            fleet,
            lambda before=before: completed() > before + 5,
            30,
            f"progress after terminating connections ({terminated})",
        )
        time.sleep(rng.uniform(0.1, 0.4))
    waiting(fleet, lambda: completed() == total, 40, f"all {total} runs to complete")
    # each storm ended connections of the workers (LISTEN and pooled) and the test's own
    assert all(n >= 4 for n in terminated), terminated
    assert [p.poll() for p in procs] == [None] * 4, "a worker died\n" + fleet.logs()
    # and each worker's wake-up channel is back (a worker notices that its LISTEN
    # connection died at its next wait, which a stalled worker reaches late)
    waiting(fleet, lambda: listeners(admin) >= 4, 15, "the four workers to LISTEN again")

    executions = parse_executions(fleet)
    for rid, (i, fails) in expected.items():
        info = app.get_run(rid)
        assert info.state == ms.RunState.COMPLETED and info.output == i, info
        results = [a.result for a in info.attempts]
        kept = check_attempts(info, fails)
        numbers = [ex.attempt for ex in executions[rid]]
        assert numbers, f"run {rid} completed without running"
        assert len(set(numbers)) == len(numbers), (rid, numbers)  # no attempt ran twice
        assert set(numbers) <= {a.number for a in info.attempts}, (rid, numbers, results)
        success = info.attempts[-1].number
        # a completed run is never executed again; more executions than kept attempts
        # only where an attempt was lost
        assert max(numbers) == success, (rid, numbers, results)
        if len(numbers) > len(kept):
            assert ms.AttemptResult.LOST in results, (rid, numbers, results)
    check_completed_once(app, list(expected))
    report = app.verify()
    assert report.ok, report.problems
    for rid in expected:
        check_history(app, rid)


# -- c. fencing ------------------------------------------------------------------------------
def test_a_late_report_from_a_worker_that_lost_its_lease_is_refused(
    app: ms.App, fleet: Workers
) -> None:
    h = app.declared["fleet.fenced"].submit()
    a = fleet.start(concurrency=1)
    waiting(
        fleet,
        lambda: ["stopping", h.run_id, str(a.pid)] in fleet.executions(),
        30,
        "the first attempt to start and freeze its worker",
    )
    waiting(fleet, lambda: proc_state(a.pid) == "T", 10, "worker A to be stopped")
    try:
        # B expires A's lease (A cannot renew it) and starts attempt 2, which runs 2 s
        b = fleet.start(concurrency=1)
        waiting(
            fleet,
            lambda: any(x[:4] == ["start", h.run_id, str(b.pid), "2"] for x in fleet.executions()),
            30,
            "B to take the run over",
        )
        assert proc_state(a.pid) == "T"  # A slept through all of it
        before = h.history()
    finally:
        os.kill(a.pid, signal.SIGCONT)

    # A wakes up while attempt 2 runs; its handler returns 1 at once and A reports it for
    # attempt 1, which is no longer the run's attempt nor A's lease: the engine refuses it
    waiting(
        fleet,
        lambda: ["rejected", h.run_id, str(a.pid)] in fleet.executions(),
        15,
        "A's late report to be rejected",
    )
    try:
        assert h.result(timeout=30) == 2
    except TimeoutError:
        pytest.fail(f"attempt 2 did not complete: {h.info()}\n{fleet.logs()}")
    lines = fleet.executions()
    # the refusal came while attempt 2 was still running (not after the run had ended)
    assert lines.index(["rejected", h.run_id, str(a.pid)]) < next(
        k for k, x in enumerate(lines) if x[:4] == ["end", h.run_id, str(b.pid), "2"]
    ), lines
    assert [x for x in lines if x[0] == "rejected"] == [["rejected", h.run_id, str(a.pid)]]
    assert [(int(x[2]), x[3]) for x in lines if x[0] == "start"] == [(a.pid, "1"), (b.pid, "2")]
    assert a.poll() is None and b.poll() is None, fleet.logs()

    info = h.info()
    assert info.state == ms.RunState.COMPLETED and info.output == 2
    assert [x.result for x in info.attempts] == [ms.AttemptResult.LOST, ms.AttemptResult.SUCCESS]
    assert "expired" in (info.attempts[0].error or ""), info.attempts[0]
    first, second = (x.attempt_id for x in info.attempts)
    started_by = attempt_workers(app, h.run_id)
    assert (started_by[first], started_by[second]) == (a.pid, b.pid)
    history = h.history()
    expired = [e for e in history if e.type == "lease.expired"]
    assert len(expired) == 1 and pid_of_worker(expired[0].data["owner"]) == a.pid
    # the refused report wrote nothing: after SIGCONT only B's lease and attempt 2 moved
    assert history[: len(before)] == before
    later = history[len(before) :]
    assert [e.type for e in later if e.type != "lease.renewed"] == [
        "attempt.finished",
        "lease.released",
        "run.state_changed",
    ], later
    assert all(pid_of_worker(e.data["owner"]) == b.pid for e in later if "owner" in e.data)
    done = later[[e.type for e in later].index("attempt.finished")]
    assert (done.attempt_id, done.data["result"], done.data["output"]) == (second, "success", 2)
    finished = [e for e in history if e.type == "attempt.finished"]
    assert [(e.attempt_id, e.data["result"]) for e in finished] == [
        (first, "lost"),
        (second, "success"),
    ]
    report = app.verify()
    assert report.ok, report.problems
    check_history(app, h.run_id)


# -- d. following the log while several processes write ------------------------------------
def test_a_log_follower_sees_every_event_once_in_order(app: ms.App, fleet: Workers) -> None:
    n = 300
    workers = [fleet.start(concurrency=CONCURRENCY) for _ in range(3)]
    submitter = fleet.start(1, "--submit", str(n))
    collected: list[int] = []
    event_ids: list[str] = []
    cursor = 0
    reads_with_news = 0
    deadline = time.monotonic() + 60

    def drained() -> bool:
        return submitter.poll() is not None and app.stats()["completed"] == n

    while True:
        done = drained()  # decided before the read: a read after it sees everything
        evs = app.log(since=cursor, limit=200)
        if evs:
            reads_with_news += 1
            collected.extend(e.seq for e in evs)
            event_ids.extend(e.event_id for e in evs)
            cursor = evs[-1].seq
        elif done:
            break
        assert time.monotonic() < deadline, f"runs did not drain ({app.stats()})\n{fleet.logs()}"
    assert submitter.returncode == 0, fleet.logs()
    assert all(w.poll() is None for w in workers), fleet.logs()

    # (the live workers go on heartbeating: what they wrote after the follower's last read
    # is not its to have seen)
    full = [e for e in app.log(limit=10_000_000) if e.seq <= cursor]
    assert collected == [e.seq for e in full]  # none missing, none twice, same order
    assert event_ids == [e.event_id for e in full]
    assert collected == list(range(1, len(full) + 1))  # the sequence has no gaps
    # the follower really read while the writers wrote (not everything at the end)
    assert reads_with_news >= 20, reads_with_news
    writers = {e.data["worker"] for e in full if e.type == "attempt.started"}
    assert len(writers) >= 2, writers  # runs were leased by several processes
    assert app.verify().ok
