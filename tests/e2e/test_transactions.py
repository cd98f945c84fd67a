"""``@app.transaction()``: writes to the store's own database that commit exactly once per
run, across retries and duplicates, on both stores; and the App's log feed on its bus."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import mainspring as ms

from .helpers import wait_for

Make = Callable[..., ms.App]


def _table(conn: Any) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS ledger (run text, amount integer)")


def _rows(app: ms.App) -> list[tuple[Any, ...]]:
    @app.transaction(name="read_ledger")
    def read(conn: Any) -> list[list[Any]]:
        _table(conn)
        return [list(r) for r in conn.execute("SELECT run, amount FROM ledger").fetchall()]

    return [tuple(r) for r in read()]


def test_a_transactions_writes_commit_once_per_run_across_retries(app: ms.App) -> None:
    calls: list[int] = []

    @app.transaction()
    def charge(conn: Any, amount: int) -> str:
        calls.append(amount)
        _table(conn)
        run = ms.context().run_id
        conn.execute(
            "INSERT INTO ledger (run, amount) VALUES (%s, %s)".replace(
                "%s", "?" if app.store_url.startswith("sqlite") else "%s"
            ),
            (run, amount),
        )
        return f"charged {amount}"

    @app.task(max_attempts=3, backoff=ms.Backoff.fixed(0))
    def order(amount: int) -> list[str]:
        first = charge(amount)
        second = charge(amount + 1)
        if ms.context().attempt < 3:
            raise ConnectionError("the handler fails after its writes committed")
        return [first, second]

    h = order.submit(10)
    with app.worker() as w:
        w.run_until_idle()
    assert h.result() == ["charged 10", "charged 11"]
    assert calls == [10, 11]  # the retries found the receipts: the function did not run
    assert sorted(_rows(app)) == [(h.run_id, 10), (h.run_id, 11)]
    recorded = [e.data for e in h.history() if e.type == "transaction.recorded"]
    assert [(d["number"], d["output"]) for d in recorded] == [(1, "charged 10"), (2, "charged 11")]


def _ledger(app: ms.App) -> Callable[[str], str]:
    """A transaction that adds a row of ``what`` to the ledger, and the list of its calls."""
    mark = "%s" if app.store_url.startswith("postgres") else "?"

    @app.transaction(name="ledger_add")
    def add(conn: Any, what: str) -> str:
        _table(conn)
        conn.execute(f"INSERT INTO ledger (run, amount) VALUES ({mark}, 1)", (what,))
        return what

    return add


def test_a_workflow_steps_calls_are_numbered_apart_so_that_a_replay_keeps_each_once(
    app: ms.App,
) -> None:
    """A step that replays its stored result makes none of its transaction calls: the
    workflow's own calls after it must not take their numbers (they failed the run with
    receipt-exists, or returned another call's value and lost their write)."""
    add = _ledger(app)

    @app.step()
    def charge() -> str:
        return add("charge")

    @app.workflow(name="tx.shop")
    def shop() -> list[str]:
        first = charge()
        ms.wait_for("go")  # suspends: the next attempt replays the step
        return [first, add("ship"), add("charge")]

    h = shop.submit()
    with app.worker() as w:
        wait_for(lambda: h.status() == ms.RunState.SUSPENDED, 10, "the workflow to wait")
        app.signal(h.run_id, "go")
        w.run_until_idle()
    assert h.result(timeout=5) == ["charge", "ship", "charge"]
    assert sorted(r[0] for r in _rows(app)) == ["charge", "charge", "ship"]
    recorded = [e.data for e in h.history() if e.type == "transaction.recorded"]
    assert [(d.get("step"), d["number"], d["args"]["args"]) for d in recorded] == [
        (1, 1, ["charge"]),
        (None, 1, ["ship"]),
        (None, 2, ["charge"]),
    ]


def test_a_step_tried_again_in_place_commits_its_transaction_once(app: ms.App) -> None:
    add = _ledger(app)
    tries: list[int] = []

    @app.step(max_attempts=2, backoff=ms.Backoff.fixed(0))
    def pay() -> str:
        tries.append(1)
        add("pay")
        if len(tries) == 1:
            raise ConnectionError("the network failed after the write committed")
        return "paid"

    @app.workflow(name="tx.pay")
    def flow() -> str:
        return pay()

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
    assert h.result(timeout=5) == "paid"
    assert len(tries) == 2
    assert [r[0] for r in _rows(app)] == ["pay"]


def test_a_call_with_other_arguments_than_recorded_is_refused(app: ms.App) -> None:
    @app.transaction()
    def write(conn: Any, value: int) -> int:
        return value

    @app.task(max_attempts=3, backoff=ms.Backoff.fixed(0))
    def task() -> None:
        write(ms.context().attempt)  # other arguments on the retry: not the same call
        if ms.context().attempt == 1:
            raise ConnectionError("retry")

    h = task.submit()
    with app.worker() as w:
        w.run_until_idle()
    info = h.info()
    assert info.state == ms.RunState.FAILED  # permanent: failed at once, not retried again
    assert [a.result for a in info.attempts] == [
        ms.AttemptResult.RETRYABLE,
        ms.AttemptResult.TERMINAL,
    ]
    assert "receipt-exists" in (info.attempts[-1].error or "")


def test_a_failing_transaction_writes_nothing(app: ms.App) -> None:
    @app.transaction()
    def broken(conn: Any) -> None:
        _table(conn)
        conn.execute("INSERT INTO ledger (run, amount) VALUES ('x', 1)")
        raise ValueError("after a write")

    _rows(app)
    with pytest.raises(ValueError):
        broken()
    assert _rows(app) == []


def test_outside_a_handler_it_is_a_plain_transaction(app: ms.App) -> None:
    @app.transaction()
    def add(conn: Any, amount: int) -> int:
        _table(conn)
        conn.execute("INSERT INTO ledger (run, amount) VALUES ('plain', 5)")
        return amount

    assert add(5) == 5 and add(5) == 5  # no receipt: it runs each time
    assert _rows(app) == [("plain", 5), ("plain", 5)]


def test_every_committed_log_event_reaches_the_bus_in_commit_order(app: ms.App) -> None:
    seen: list[ms.Envelope] = []
    lock = threading.Lock()

    @app.bus.on("log.#")
    def on_log(env: ms.Envelope) -> None:
        with lock:
            seen.append(env)

    @app.task
    def job(i: int) -> int:
        return i

    app.submit_many(job, [((i,), {}) for i in range(20)])
    with app.worker(concurrency=4) as w:
        w.run_until_idle()
    total = len(app.log(limit=100_000))
    wait_for(lambda: len(seen) >= total, 10, "the log feed to catch up")
    seqs = [e.payload["seq"] for e in seen]
    assert seqs == sorted(seqs) == list(range(1, total + 1))
    assert {e.topic for e in seen} >= {"log.run.created", "log.run.state_changed"}
    assert all(e.kind == "event" and e.topic == "log." + e.payload["type"] for e in seen)
