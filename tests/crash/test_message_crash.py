"""Durable messages survive ``kill -9`` of the worker that sends, delivers or writes them.

Every test runs once per store (``store_url``) with real worker processes
(``procs.Workers``) killed by SIGKILL, and handlers that append one line per execution to a
file, so the test sees what really ran:

- lineage: what a sender's attempt launches (a message, a child run) is written only when
  that attempt commits; a sender killed before its commit launches nothing, one killed right
  after its commit launches once, and each subscriber gets the message once;
- ``@app.transaction``: a worker killed right after the transaction's commit; the next
  attempt gets the stored value and the row is written once;
- redelivery: a subscriber killed mid-delivery gets the same ``event_id`` again and its
  receipt is written once (an ordered subscriber keeps its order across the kill).
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
from e2e.helpers import check_history, wait_for  # tests/ is on sys.path (rootdir import)

import mainspring as ms

from .procs import APP_PRELUDE, Workers

pytestmark = pytest.mark.crash

LEASE = 1.0
R = ms.AttemptResult

APP_MODULE = APP_PRELUDE + textwrap.dedent(
    """

    PH = "?" if os.environ["MS_STORE"].startswith("sqlite") else "%s"


    @app.task(name="msg.child")
    def child(tag):
        ctx = ms.context()
        record("child", ctx.run_id, ctx.attempt, os.getpid())
        return tag


    @app.task(name="msg.sender")
    def sender(block):
        ctx = ms.context()
        m = app.publish("lin.t", {"attempt": ctx.attempt})
        h = child.submit(ctx.attempt)
        record("sender", ctx.run_id, ctx.attempt, m.event_id, h.run_id, os.getpid())
        if block and ctx.attempt == 1:
            time.sleep(60)  # killed long before this ends: the attempt never commits
        return [m.event_id, h.run_id]


    def on_lin(name, msg):
        ctx = ms.context()
        record(name, msg.event_id, ctx.run_id, ctx.attempt, os.getpid())
        return name + " got " + str(msg.sequence)


    @app.subscriber("lin.t", name="sub.a")
    def sub_a(msg):
        return on_lin("sub.a", msg)


    @app.subscriber("lin.*", name="sub.b")
    def sub_b(msg):
        return on_lin("sub.b", msg)


    @app.subscriber("redeliver.t", name="sub.slow")
    def slow(msg):
        ctx = ms.context()
        record("slow", msg.event_id, ctx.run_id, ctx.attempt, os.getpid())
        if ctx.attempt == 1:
            time.sleep(60)  # killed mid-delivery
        return msg.payload


    @app.subscriber("ord.t", name="sub.ordered", ordered=True, backoff=ms.Backoff.fixed(0.1))
    def in_order(msg):
        ctx = ms.context()
        record("ordered", msg.event_id, msg.sequence, ctx.attempt, os.getpid())
        if msg.sequence == 1 and ctx.attempt == 1:
            time.sleep(60)  # killed mid-delivery: the later messages wait for this one
        return msg.sequence


    @app.transaction(name="msg.charge")
    def charge(conn, amount):
        run_id = ms.context().run_id
        record("charge", run_id, amount, os.getpid())
        conn.execute(
            f"INSERT INTO ledger (run, amount) VALUES ({PH}, {PH})", (run_id, amount)
        )
        return "charged " + str(amount)


    @app.task(name="msg.pay")
    def pay(amount):
        ctx = ms.context()
        out = charge(amount)
        record("paid", ctx.run_id, ctx.attempt, out.replace(" ", "_"), os.getpid())
        if ctx.attempt == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # right after the transaction's commit
            time.sleep(60)  # (never reached)
        return out


    def on_attempt(done):
        \"\"\"SIGKILL this worker right after the store recorded a success of the task
        named by MS_KILL_AFTER (its attempt committed).\"\"\"
        kill_after = os.environ.get("MS_KILL_AFTER")
        if done.task_name == kill_after and done.result == ms.AttemptResult.SUCCESS:
            record("kill", done.task_name, done.run_id, os.getpid())
            os.kill(os.getpid(), signal.SIGKILL)


    if __name__ == "__main__":
        app.run_worker(
            concurrency=int(os.environ["MS_CONCURRENCY"]),
            grace_seconds=1.0,
            on_attempt=on_attempt,
        )
    """
)


def _unused(*args: Any) -> Any:
    raise AssertionError("handlers run in the worker processes only")


@pytest.fixture
def workers(tmp_path: Path, store_url: str) -> Iterator[Workers]:
    w = Workers(tmp_path, store_url, APP_MODULE, lease=LEASE, name="msgcrash")
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def app(workers: Workers) -> Iterator[ms.App]:
    """The test's own view of the store. It declares the same tasks and subscribers (so the
    subscribers are in the store before anything is published) and the ledger table."""
    app = ms.App(workers.store, lease_seconds=LEASE)
    app.task(name="msg.child")(_unused)
    app.task(name="msg.sender")(_unused)
    app.task(name="msg.pay")(_unused)
    app.subscriber("lin.t", name="sub.a")(_unused)
    app.subscriber("lin.*", name="sub.b")(_unused)
    app.subscriber("redeliver.t", name="sub.slow")(_unused)
    app.subscriber("ord.t", name="sub.ordered", ordered=True, backoff=ms.Backoff.fixed(0.1))(
        _unused
    )

    @app.transaction(name="ledger.create")
    def create(conn: Any) -> None:
        conn.execute("CREATE TABLE ledger (run text, amount integer)")

    app.open()
    create()  # outside a handler: a plain transaction
    try:
        yield app
    finally:
        app.close()


def ledger(app: ms.App) -> list[tuple[Any, ...]]:
    @app.transaction(name="ledger.read")
    def read(conn: Any) -> list[list[Any]]:
        return [list(r) for r in conn.execute("SELECT run, amount FROM ledger").fetchall()]

    return [tuple(r) for r in read()]


def lines(workers: Workers, kind: str) -> list[list[str]]:
    return [line[1:] for line in workers.executions() if line[0] == kind]


def results(app: ms.App, run_id: str) -> list[ms.AttemptResult | None]:
    return [a.result for a in app.get_run(run_id).attempts]


def deliveries(app: ms.App, subscriber: str) -> list[ms.RunInfo]:
    return [r for r in app.runs(limit=1_000) if r.task_name == subscriber]


def check_all(app: ms.App) -> None:
    report = app.verify()
    assert report.ok, report.problems
    for run in app.runs(limit=1_000):
        check_history(app, run.run_id)


def test_a_sender_killed_before_its_commit_launches_nothing(app: ms.App, workers: Workers) -> None:
    h = app.declared["msg.sender"].submit(True)
    w1 = workers.start(concurrency=2)
    wait_for(lambda: lines(workers, "sender"), 30, "the sender's first attempt\n" + workers.logs())
    assert h.status() == ms.RunState.RUNNING
    workers.kill9(w1)
    # the attempt never committed: nothing it launched is written
    assert app.messages("lin.t") == []
    assert [r.run_id for r in app.runs(limit=100)] == [h.run_id]
    assert app.receipts() == []

    workers.start(concurrency=2)
    try:
        event_id, child_id = h.result(timeout=30)
    except TimeoutError:
        pytest.fail(f"the sender did not recover: {h.info()}\n{workers.logs()}")
    wait_for(
        lambda: len(app.receipts()) == 2 and app.run(child_id).status().terminal,
        30,
        f"the deliveries and the child to end\n{workers.logs()}",
    )

    sent = lines(workers, "sender")  # run_id attempt event_id child_id pid
    assert [(s[0], s[1]) for s in sent] == [(h.run_id, "1"), (h.run_id, "2")], sent
    assert sent[0][4] != sent[1][4]  # two processes
    first_event, first_child = sent[0][2], sent[0][3]
    assert (sent[1][2], sent[1][3]) == (event_id, child_id)
    info = h.info()
    assert [a.result for a in info.attempts] == [R.LOST, R.SUCCESS]
    assert event_id == f"evt:{info.attempts[1].attempt_id}:0:lin.t"
    assert first_event == f"evt:{info.attempts[0].attempt_id}:0:lin.t"

    # the first attempt's message and child were never written, delivered or run
    msgs = app.messages("lin.t")
    assert [(m.event_id, m.sequence, m.payload) for m in msgs] == [(event_id, 1, {"attempt": 2})]
    assert msgs[0].causation_id == h.run_id
    assert msgs[0].correlation_id == info.correlation_id
    assert app.receipts(event_id=first_event) == []
    with pytest.raises(ms.UnknownRun):
        app.get_run(first_child)
    for sub in ("sub.a", "sub.b"):
        assert [line[0] for line in lines(workers, sub)] == [event_id], workers.executions()
        (receipt,) = app.receipts(subscriber=sub)
        assert (receipt.event_id, receipt.status, receipt.sequence) == (event_id, "delivered", 1)
        assert receipt.output == f"{sub} got 1"
    assert [line[0] for line in lines(workers, "child")] == [child_id]
    children = [r for r in app.runs(limit=100) if r.task_name == "msg.child"]
    assert [(r.run_id, r.caused_by, r.state) for r in children] == [
        (child_id, h.run_id, ms.RunState.COMPLETED)
    ]
    assert app.run(child_id).result(timeout=1) == 2
    published = [e for e in app.log(limit=100_000) if e.type == "message.published"]
    assert [e.data["event_id"] for e in published] == [event_id]
    check_all(app)


def test_a_sender_killed_right_after_its_commit_launches_once(
    app: ms.App, workers: Workers
) -> None:
    h = app.declared["msg.sender"].submit(False)
    w1 = workers.start(1, MS_KILL_AFTER="msg.sender")  # dies in on_attempt, after the commit
    try:
        w1.wait(timeout=30)
    except Exception:
        pytest.fail("the worker did not kill itself\n" + workers.logs())
    assert w1.returncode == -signal.SIGKILL, workers.logs()
    assert lines(workers, "kill") == [["msg.sender", h.run_id, str(w1.pid)]]
    assert h.status() == ms.RunState.COMPLETED  # committed before the kill
    event_id, child_id = h.result(timeout=1)

    workers.start(concurrency=2)
    wait_for(
        lambda: len(app.receipts()) == 2 and app.run(child_id).status().terminal,
        30,
        f"the deliveries and the child to end\n{workers.logs()}",
    )

    sent = lines(workers, "sender")
    assert [(s[0], s[1], s[2], s[3]) for s in sent] == [(h.run_id, "1", event_id, child_id)]
    assert [a.result for a in h.info().attempts] == [R.SUCCESS]  # it never ran again
    msgs = app.messages("lin.t")
    assert [(m.event_id, m.sequence) for m in msgs] == [(event_id, 1)]
    assert msgs[0].causation_id == h.run_id
    for sub in ("sub.a", "sub.b"):
        # one delivery run per subscriber, handled once (the first worker, one slot, died
        # in the turn that recorded the sender's success: before it started any delivery),
        # one receipt, delivered
        runs = deliveries(app, sub)
        assert [r.state for r in runs] == [ms.RunState.COMPLETED], runs
        assert [line[0] for line in lines(workers, sub)] == [event_id], workers.executions()
        assert lines(workers, sub)[0][3] != str(w1.pid)  # by the second worker
        assert results(app, runs[0].run_id) == [R.SUCCESS]
        (receipt,) = app.receipts(subscriber=sub)
        assert (receipt.event_id, receipt.status, receipt.run_id) == (
            event_id,
            "delivered",
            runs[0].run_id,
        )
        assert app.receipts(subscriber=sub, event_id=event_id) == [receipt]
    assert {line[0] for line in lines(workers, "child")} == {child_id}
    children = [r for r in app.runs(limit=100) if r.task_name == "msg.child"]
    assert [(r.run_id, r.caused_by) for r in children] == [(child_id, h.run_id)]
    assert app.run(child_id).result(timeout=1) == 1
    recorded = Counter(
        (e.data["subscriber"], e.data["event_id"])
        for e in app.log(limit=100_000)
        if e.type == "receipt.recorded"
    )
    assert recorded == {("sub.a", event_id): 1, ("sub.b", event_id): 1}
    check_all(app)


def test_a_transaction_killed_right_after_its_commit_writes_once(
    app: ms.App, workers: Workers
) -> None:
    h = app.declared["msg.pay"].submit(10)
    w1 = workers.start(concurrency=1)
    try:
        w1.wait(timeout=30)  # the handler kills its own worker after the commit
    except Exception:
        pytest.fail("the worker did not kill itself\n" + workers.logs())
    assert w1.returncode == -signal.SIGKILL, workers.logs()
    assert ledger(app) == [(h.run_id, 10)]  # committed before the kill

    workers.start(concurrency=1)
    try:
        assert h.result(timeout=30) == "charged 10"
    except TimeoutError:
        pytest.fail(f"the run did not recover: {h.info()}\n{workers.logs()}")

    # the function body ran once (attempt 1); attempt 2 got the stored value
    assert [line[:2] for line in lines(workers, "charge")] == [[h.run_id, "10"]]
    paid = lines(workers, "paid")
    assert [line[:3] for line in paid] == [
        [h.run_id, "1", "charged_10"],
        [h.run_id, "2", "charged_10"],
    ]
    assert paid[0][3] != paid[1][3]  # two processes
    assert ledger(app) == [(h.run_id, 10)]  # the row exists exactly once
    assert [a.result for a in h.info().attempts] == [R.LOST, R.SUCCESS]
    recorded = [e.data for e in h.history() if e.type == "transaction.recorded"]
    assert [(d["number"], d["output"]) for d in recorded] == [(1, "charged 10")]
    check_all(app)


def test_a_redelivery_after_kill9_keeps_the_event_id_and_writes_one_receipt(
    app: ms.App, workers: Workers
) -> None:
    m = app.publish("redeliver.t", {"order": 42})
    (delivery,) = deliveries(app, "sub.slow")
    w1 = workers.start(concurrency=2)
    wait_for(lambda: lines(workers, "slow"), 30, "the first delivery\n" + workers.logs())
    assert app.get_run(delivery.run_id).state == ms.RunState.RUNNING
    workers.kill9(w1)
    assert app.receipts() == []  # the killed handling ended nothing

    workers.start(concurrency=2)
    wait_for(
        lambda: app.receipts(subscriber="sub.slow"),
        30,
        f"the redelivery's receipt\n{workers.logs()}",
    )
    wait_for(lambda: app.get_run(delivery.run_id).state.terminal, 30, "the delivery run to end")

    got = lines(workers, "slow")  # event_id run_id attempt pid
    assert [(g[0], g[1], g[2]) for g in got] == [
        (m.event_id, delivery.run_id, "1"),
        (m.event_id, delivery.run_id, "2"),
    ], got
    assert got[0][3] != got[1][3]  # two processes
    assert results(app, delivery.run_id) == [R.LOST, R.SUCCESS]
    assert app.get_run(delivery.run_id).state == ms.RunState.COMPLETED
    (receipt,) = app.receipts(subscriber="sub.slow")
    assert (receipt.event_id, receipt.status, receipt.attempt, receipt.sequence) == (
        m.event_id,
        "delivered",
        2,
        1,
    )
    assert (receipt.run_id, receipt.topic, receipt.output) == (
        delivery.run_id,
        "redeliver.t",
        {"order": 42},
    )
    assert app.receipts(event_id=m.event_id) == [receipt]
    recorded = [e.data for e in app.log(limit=100_000) if e.type == "receipt.recorded"]
    assert [(d["subscriber"], d["event_id"]) for d in recorded] == [("sub.slow", m.event_id)]
    assert len(deliveries(app, "sub.slow")) == 1
    check_all(app)


def test_an_ordered_subscriber_killed_mid_delivery_keeps_its_order(
    app: ms.App, workers: Workers
) -> None:
    msgs = [app.publish("ord.t", {"i": i}) for i in range(4)]
    w1 = workers.start(concurrency=4)
    wait_for(lambda: lines(workers, "ordered"), 30, "the first delivery\n" + workers.logs())
    time.sleep(0.3)  # time for a wrongly released later message to start (it must not)
    assert [line[1] for line in lines(workers, "ordered")] == ["1"], workers.executions()
    workers.kill9(w1)

    workers.start(concurrency=4)
    wait_for(
        lambda: len(app.receipts(subscriber="sub.ordered")) == 4,
        30,
        f"the four receipts\n{workers.logs()}",
    )

    got = lines(workers, "ordered")  # event_id sequence attempt pid
    assert [(g[1], g[2]) for g in got] == [
        ("1", "1"),
        ("1", "2"),
        ("2", "1"),
        ("3", "1"),
        ("4", "1"),
    ]
    assert [g[0] for g in got] == [msgs[0].event_id] + [m.event_id for m in msgs]
    receipts = sorted(app.receipts(subscriber="sub.ordered"), key=lambda r: r.sequence)
    assert [(r.event_id, r.sequence, r.status) for r in receipts] == [
        (m.event_id, i, "delivered") for i, m in enumerate(msgs, 1)
    ]
    check_all(app)
