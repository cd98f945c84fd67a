"""Durable workflows survive ``kill -9`` of their worker at every point of their run.

One workflow of three steps, a durable sleep and a wait for a signal runs in a worker
process (``procs.Workers``); the worker dies of SIGKILL at one point of it (parametrized:
before a step, inside a step, right after a step's commit, while the run sleeps, while it
waits for the signal, ...) and a new worker finishes the run. Handlers append one line per
execution to a file, so the test counts what really ran: each step that completed before
the kill ran once, only the step in flight at the kill ran twice, and each attempt ran the
workflow's body once. Every test runs once per store (``store_url``).

The kill points inside the worker are deterministic: the workflow (or a step) kills its own
process with SIGKILL at the point named by ``WF_KILL_AT``, once (a marker file created with
O_EXCL says it happened). The kills while the run is suspended (``sleep``, ``signal``) come
from the test, once the run's history shows it suspended there.
"""

from __future__ import annotations

import signal
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.helpers import check_history  # tests/ is on sys.path (pytest's rootdir-based import)

import mainspring as ms

from .procs import APP_PRELUDE, Workers

pytestmark = pytest.mark.crash

LEASE = 1.0
EXECUTION = "E-crash"
SIGNAL_PAYLOAD = {"v": 1}
R = ms.AttemptResult

APP_MODULE = APP_PRELUDE + textwrap.dedent(
    """

    KILL_AT = os.environ.get("WF_KILL_AT", "")


    def once(mark):
        \"\"\"True for the first caller only, across processes (O_EXCL marker file).\"\"\"
        try:
            fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        os.close(fd)
        return True


    def die_at(point):
        \"\"\"SIGKILL this worker process here, the first time the run gets here.\"\"\"
        if KILL_AT == point and once("killed-" + point):
            record("kill", point, os.getpid())
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # (never reached)


    @app.step(name="wf.s1", max_attempts=3, backoff=ms.Backoff.fixed(0.05))
    def s1(x):
        if once("s1-failed"):  # its first try fails: retried in place
            record("s1", os.getpid(), "fail")
            raise RuntimeError("the first try of s1 fails")
        record("s1", os.getpid(), "ok")
        return x + 1


    @app.step(name="wf.s2")
    def s2(a):
        record("s2", os.getpid())
        die_at("in_s2")
        return a * 10


    @app.step(name="wf.s3")
    def s3(b):
        record("s3", os.getpid())
        die_at("in_s3")
        return b + 5


    @app.workflow(name="wf.three", max_lost=3)
    def three(x, nap):
        record("body", os.getpid(), ms.context().attempt)
        die_at("before_s1")
        a = s1(x)
        die_at("after_s1")  # s1's result is committed; s2 has not started
        b = s2(a)
        ms.sleep(nap)
        sig = ms.wait_for("go", timeout=60)
        c = s3(b)
        die_at("after_s3")  # every step committed; the run's end is not
        return [a, b, sig, c]


    if __name__ == "__main__":
        app.run_worker(concurrency=int(os.environ["MS_CONCURRENCY"]), grace_seconds=1.0)
    """
)


@pytest.fixture
def workers(tmp_path: Path, store_url: str) -> Iterator[Workers]:
    w = Workers(tmp_path, store_url, APP_MODULE, lease=LEASE, name="wfcrash")
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def app(workers: Workers) -> Iterator[ms.App]:
    """The test's own view of the store: it declares the workflow to submit it."""
    app = ms.App(workers.store, lease_seconds=LEASE)

    @app.workflow(name="wf.three", max_lost=3)
    def three(x: int, nap: float) -> list[Any]:
        raise AssertionError("workflows run in the worker processes only")

    try:
        yield app
    finally:
        app.close()


def where(h: ms.RunHandle) -> tuple[str, str | None]:
    """The run's state and the reason it got there (its latest state change)."""
    changes = [e for e in h.history() if e.type == "run.state_changed"]
    return changes[-1].data["to"], changes[-1].data.get("reason")


def assert_not_held(app: ms.App, h: ms.RunHandle) -> None:
    """A suspended run holds no worker slot: no open attempt, no lease."""
    info = h.info()
    assert info.state == ms.RunState.SUSPENDED
    assert all(a.result is not None for a in info.attempts), info.attempts
    stats = app.stats()
    assert stats["leased"] == stats["running"] == 0, stats
    assert all(h.run_id not in w.running for w in app.workers())
    assert app.is_idle()


def drive(app: ms.App, workers: Workers, h: ms.RunHandle, kill_at: str) -> None:
    """Run the workflow to its end: a worker; a new one when it died (once); the signal
    once the run waits for it; and for ``sleep``/``signal``, kill the worker (from here)
    while the run is suspended there."""
    workers.start(2, WF_KILL_AT=kill_at)
    signalled = False
    deadline = time.monotonic() + 90
    while not h.status().terminal:
        if time.monotonic() > deadline:
            pytest.fail(f"the run did not end: {h.info()}\n{workers.logs()}")
        if not workers.alive():
            dead = workers.procs[-1]
            assert len(workers.procs) == 1, "a second worker died\n" + workers.logs()
            assert dead.returncode == -signal.SIGKILL, workers.logs()
            workers.start(2)
            continue
        state, reason = where(h)
        if state == "suspended" and reason == kill_at and len(workers.procs) == 1:
            assert_not_held(app, h)
            workers.kill9(workers.procs[0])
            # the kill came while the run was suspended there (it is still)
            assert where(h) == ("suspended", kill_at), h.history()[-3:]
            workers.start(2)
        elif state == "suspended" and reason == "signal" and not signalled:
            app.signal(EXECUTION, "go", SIGNAL_PAYLOAD)
            signalled = True
        time.sleep(0.01)


# kill point -> (the step cut off by the kill or None, where the lost attempt is)
POINTS = {
    "before_s1": (None, "first"),  # before any step
    "after_s1": (None, "first"),  # right after s1's commit, before s2
    "in_s2": ("s2", "first"),  # inside s2, after its effect
    "sleep": (None, None),  # the run is suspended in ms.sleep: no worker holds it
    "signal": (None, None),  # suspended in ms.wait_for: no worker holds it
    "in_s3": ("s3", "last"),  # inside s3, after the sleep and the wait ended
    "after_s3": (None, "last"),  # after every step's commit, before the run's end
}


@pytest.mark.parametrize("kill_at", list(POINTS))
def test_kill9_at_each_point_of_a_workflow(app: ms.App, workers: Workers, kill_at: str) -> None:
    in_flight, lost = POINTS[kill_at]
    nap = 2.0 if kill_at == "sleep" else 0.3  # time enough to kill the worker mid-sleep
    h = app.declared["wf.three"].with_options(execution_id=EXECUTION).submit(1, nap)
    assert app.get_execution(EXECUTION).run_id == h.run_id

    drive(app, workers, h, kill_at)

    failure = f"{h.info()}\n{workers.logs()}"
    assert h.status() == ms.RunState.COMPLETED, failure
    assert h.result(timeout=1) == [2, 20, SIGNAL_PAYLOAD, 25]
    assert len(workers.procs) == 2, failure  # one worker killed, one that finished the run

    # what really ran: s1 failed once and succeeded once (its in-place retry), in every
    # scenario; the other steps ran once, except the one the kill cut off: twice
    lines = workers.executions()
    ran = Counter(line[0] for line in lines)
    assert [line[2] for line in lines if line[0] == "s1"] == ["fail", "ok"], lines
    assert ran["s2"] == (2 if in_flight == "s2" else 1), lines
    assert ran["s3"] == (2 if in_flight == "s3" else 1), lines
    self_kill = kill_at not in ("sleep", "signal")
    assert [line[1] for line in lines if line[0] == "kill"] == ([kill_at] if self_kill else [])

    # the attempts: two suspensions (the sleep, the wait), the lost one if the kill cut an
    # attempt, the success; each attempt ran the workflow's body once
    attempts = [a.result for a in h.info().attempts]
    expected = {
        "first": [R.LOST, R.SUSPENDED, R.SUSPENDED, R.SUCCESS],
        "last": [R.SUSPENDED, R.SUSPENDED, R.LOST, R.SUCCESS],
        None: [R.SUSPENDED, R.SUSPENDED, R.SUCCESS],
    }[lost]
    assert attempts == expected, failure
    bodies = [line for line in lines if line[0] == "body"]
    assert [int(line[2]) for line in bodies] == list(range(1, len(attempts) + 1)), lines

    # each step recorded once, in order. ``attempts`` counts the tries the store saw: a
    # try cut off by the kill left no record (the step ran again as a first try)
    steps = h.steps()
    assert [(s.number, s.name, s.state, s.output, s.error, s.attempts) for s in steps] == [
        (1, "wf.s1", "completed", 2, None, 2),
        (2, "wf.s2", "completed", 20, None, 1),
        (3, "wf.s3", "completed", 25, None, 1),
    ]
    assert all(s.started_at <= s.finished_at for s in steps)

    # the log: each step ended once (s1's failed try once, retried), one sleep and one
    # wait, neither restarted by the kill, the signal received once
    history = h.history()
    types = Counter(e.type for e in history)
    assert [e.data["number"] for e in history if e.type == "step.completed"] == [1, 2, 3]
    failed = [e.data for e in history if e.type == "step.failed"]
    assert [(d["number"], d["name"], d["will_retry"]) for d in failed] == [(1, "wf.s1", True)]
    for t in ("sleep.started", "sleep.completed", "wait.started", "wait.completed"):
        assert types[t] == 1, (t, types)
    assert types["signal.sent"] == types["signal.received"] == 1, types
    assert types["lease.expired"] == (1 if self_kill else 0), types
    assert all(e.execution_id == EXECUTION for e in history)
    check_history(app, h.run_id)
    report = app.verify()
    assert report.ok, report.problems
