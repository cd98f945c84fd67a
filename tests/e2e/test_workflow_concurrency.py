"""Durable workflows under concurrency, on both stores: signals sent at once by several
processes (each received exactly once, each sender's in its send order), idempotent
signals (sent twice, by one or by racing processes: received once), and 1,000 sleeping
workflows that one worker wakes on time without holding a slot while they sleep. Every App
is verified when the test ends (conftest)."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mainspring as ms
from mainspring.testing import ManualClock

from .helpers import wait_for

Make = Callable[..., ms.App]

#: A sender process: opens the store, says it is ready, waits for the start gate (so every
#: sender starts sending at once), then sends its signals one after another.
SENDER = textwrap.dedent(
    """
    import os
    import sys
    import time

    import mainspring as ms

    store, target, name, sender, count, key = sys.argv[1:7]
    app = ms.App(store)
    open(f"ready-{sender}", "w").close()
    while not os.path.exists("gate"):
        time.sleep(0.001)
    for seq in range(int(count)):
        payload = {"sender": int(sender), "seq": seq}
        app.signal(target, name, payload, idempotency_key=key or None)
    app.close()
    """
)


def send_at_once(
    tmp_path: Path, store_url: str, target: str, name: str, senders: int, count: int, key: str = ""
) -> None:
    """``senders`` processes each send ``count`` signals ``name`` to ``target``, all at once
    (a start gate); returns when every one of them has exited cleanly."""
    (tmp_path / "sender.py").write_text(SENDER)
    for f in tmp_path.glob("ready-*"):
        f.unlink()
    (tmp_path / "gate").unlink(missing_ok=True)
    procs = []
    for i in range(senders):
        with open(tmp_path / f"sender{i}.log", "wb") as log:
            args = [store_url, target, name, str(i), str(count), key]
            procs.append(
                subprocess.Popen(
                    [sys.executable, "sender.py", *args],
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        wait_for(
            lambda: (
                len(list(tmp_path.glob("ready-*"))) == senders
                or any(p.poll() is not None for p in procs)
            ),
            60,
            "the senders to be ready",
        )
        (tmp_path / "gate").touch()
        for i, p in enumerate(procs):
            code = p.wait(timeout=120)
            assert code == 0, (tmp_path / f"sender{i}.log").read_text()[-4000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


def test_signals_from_concurrent_senders_are_received_once_each_in_send_order(
    make_app: Make, store_url: str, tmp_path: Path
) -> None:
    senders, count = 4, 25
    total = senders * count
    app = make_app()

    @app.workflow(name="wf.collect")
    def collect(n: int) -> list[Any]:
        return [ms.wait_for("s") for _ in range(n)]

    h = collect.with_options(execution_id="collector").submit(total)
    with app.worker(concurrency=4) as w:
        # the run waits for its first signal (suspended) when the senders start, and
        # goes on receiving while they send: some signals find it waiting, some are kept
        wait_for(lambda: h.status() == ms.RunState.SUSPENDED, 30, "the first wait")
        send_at_once(tmp_path, store_url, "collector", "s", senders, count)
        got = h.result(timeout=120)
        w.run_until_idle()

    sent = [(i, seq) for i in range(senders) for seq in range(count)]
    received = [(p["sender"], p["seq"]) for p in got]
    assert len(received) == total
    assert Counter(received) == Counter(sent)  # every signal exactly once
    for i in range(senders):  # each sender's signals in its send order
        assert [seq for s, seq in received if s == i] == list(range(count)), i

    # the log: each signal recorded once and received once, in the order sent
    history = h.history()
    sent_events = [e.data for e in history if e.type == "signal.sent"]
    received_ids = [e.data["signal_id"] for e in history if e.type == "signal.received"]
    assert len(sent_events) == total
    assert len({d["signal_id"] for d in sent_events}) == total
    assert received_ids == [d["signal_id"] for d in sent_events]
    assert [(d["payload"]["sender"], d["payload"]["seq"]) for d in sent_events] == received
    assert app.get_execution("collector").run_id == h.run_id
    assert app.stats()["completed"] == 1 and sum(app.stats().values()) == 1


def test_a_signal_sent_twice_with_one_idempotency_key_is_received_once(
    make_app: Make, store_url: str, tmp_path: Path
) -> None:
    app = make_app()

    @app.workflow(name="wf.two")
    def two() -> list[Any]:
        return [ms.wait_for("s"), ms.wait_for("s")]

    h = two.with_options(execution_id="idem").submit()
    app.signal("idem", "s", "first", idempotency_key="k1")
    app.signal("idem", "s", "first again", idempotency_key="k1")  # a no-op
    with app.worker(concurrency=2) as w:
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED  # received "first", waits for the second
        app.signal("idem", "s", "first once more", idempotency_key="k1")  # still a no-op
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED
        app.signal("idem", "s", "second", idempotency_key="k2")
        assert h.result(timeout=30) == ["first", "second"]
        w.run_until_idle()
    sent = [e.data for e in h.history() if e.type == "signal.sent"]
    assert [(d["payload"], d["idempotency_key"]) for d in sent] == [
        ("first", "k1"),
        ("second", "k2"),
    ]
    assert [e.type for e in h.history()].count("signal.received") == 2

    # one key sent at once by racing processes: one signal is recorded, received once
    h2 = two.with_options(execution_id="idem-race").submit()
    with app.worker(concurrency=2) as w:
        wait_for(lambda: h2.status() == ms.RunState.SUSPENDED, 30, "the first wait")
        send_at_once(tmp_path, store_url, "idem-race", "s", senders=4, count=3, key="once")
        w.run_until_idle()
        assert h2.status() == ms.RunState.SUSPENDED  # the second wait got nothing
        app.signal("idem-race", "s", "last")
        first, last = h2.result(timeout=30)
        w.run_until_idle()
    assert first in [{"sender": i, "seq": 0} for i in range(4)]
    assert last == "last"
    sent = [e.data for e in h2.history() if e.type == "signal.sent"]
    assert [d["idempotency_key"] for d in sent] == ["once", None]
    assert sent[0]["payload"] == first


def caught_up(w: Any, clock: ManualClock) -> None:
    """Wait until the worker had a turn (promotion, leasing) at the clock's time."""
    wait_for(
        lambda: w.clock_seen is not None and w.clock_seen >= clock.now(),
        30,
        f"the worker to see the clock at {clock.now()}",
    )


def test_a_thousand_sleeping_workflows_are_woken_on_time_by_one_worker(make_app: Make) -> None:
    n, nap = 1000, 3600.0
    clock = ManualClock()
    # (verified below: the conftest's history check reads the log once per run, slow here)
    app = make_app(clock=clock, lease_seconds=60.0, check=False)

    @app.workflow(name="wf.nap")
    def napper(i: int) -> int:
        ms.sleep(nap)
        return i

    start = clock.now()
    handles = app.submit_many(napper, [((i,), {}) for i in range(n)])
    with app.worker(concurrency=8) as w:
        # every run went to sleep: suspended, holding no slot, and the store is idle
        w.run_until_idle(timeout=120)
        stats = app.stats()
        assert stats["suspended"] == n and sum(stats.values()) == n, stats
        assert not w.busy
        assert app.is_idle()
        assert all(not wi.running for wi in app.workers())

        # a second before the wake time: nothing has woken
        clock.advance(nap - 1)
        caught_up(w, clock)
        w.run_until_idle(timeout=120)
        stats = app.stats()
        assert stats["suspended"] == n, stats

        # past it: every one wakes and completes, on the one worker
        clock.advance(2)
        caught_up(w, clock)
        w.run_until_idle(timeout=120)
        wait_for(lambda: app.stats()["completed"] == n, 120, f"all to complete ({app.stats()})")
    assert [h.result(timeout=1) for h in handles] == list(range(n))

    wake = start + nap
    events = app.log(limit=1_000_000)
    by_run: dict[str, list[Any]] = {}
    for e in events:
        if e.run_id is not None:
            by_run.setdefault(e.run_id, []).append(e)
    assert set(by_run) == {h.run_id for h in handles}
    for h in handles:
        run_events = by_run[h.run_id]
        sleeps = [e for e in run_events if e.type == "sleep.started"]
        until = sleeps[0].data["until"].timestamp()  # (log data times are datetimes)
        assert len(sleeps) == 1 and until == pytest.approx(wake)
        # it woke (and ran again) only once the wake time had come
        (woken,) = [e for e in run_events if e.type == "sleep.completed"]
        assert woken.at.timestamp() >= until
        attempts = [a.result for a in h.info().attempts]
        assert attempts == [ms.AttemptResult.SUSPENDED, ms.AttemptResult.SUCCESS]
        # its history chains from run.created to completed
        assert run_events[0].type == "run.created"
        states = ["scheduled"]
        for e in run_events:
            if e.type == "run.state_changed":
                assert e.data["from"] == states[-1], (h.run_id, e.seq)
                states.append(e.data["to"])
        assert states[-1] == "completed"
        assert ("suspended", "ready") in itertools.pairwise(states)
    report = app.verify()
    assert report.ok, report.problems


def test_a_step_whose_launch_is_refused_fails_alone_in_a_shared_commit(make_app: Make) -> None:
    """Workflows whose steps end together share a commit. One step launches a submit under
    an idempotency key used with other arguments: that workflow's step fails, and the
    others' steps are recorded once. (Every workflow in the commit failed with the other's
    IdempotencyConflict, and their steps ran again.)"""
    app = make_app()
    ran: Counter[str] = Counter()
    lock = threading.Lock()
    together = threading.Barrier(5, timeout=10)

    @app.task
    def leaf(x: int) -> int:
        return x

    @app.step
    def clashing() -> str:
        leaf.with_options(idempotency_key="K").submit(999)
        with lock:
            ran["clashing"] += 1
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait()
        return "p"

    @app.step
    def good(i: int) -> int:
        with lock:
            ran[f"good{i}"] += 1
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait()
        return i

    @app.workflow(max_attempts=1)
    def wp() -> str:
        return clashing()

    @app.workflow
    def wg(i: int) -> int:
        return good(i)

    leaf.with_options(idempotency_key="K").submit(1)
    bad = wp.submit()
    fine = [wg.submit(i) for i in range(4)]
    with app.worker(concurrency=8) as w:
        w.run_until_idle(timeout=30)
    assert [h.result() for h in fine] == [0, 1, 2, 3]
    assert all(ran[f"good{i}"] == 1 for i in range(4))
    info = bad.info()
    assert info.state == ms.RunState.FAILED and "IdempotencyConflict" in (info.error or "")
    assert len(app.runs(task=leaf.name)) == 1
