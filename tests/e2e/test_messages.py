"""Durable topics end to end, on both stores: publishing, per-topic sequences, event
identity, subscribers and patterns, ordered delivery, receipts, lineage (what a handler
launches is written only when its attempt commits) and the bad input that writes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import mainspring as ms

from .helpers import wait_for

Make = Callable[..., ms.App]


def test_publish_numbers_each_topic_and_delivers_to_matching_subscribers(app: ms.App) -> None:
    got: list[tuple[str, str, int | None, Any]] = []

    @app.subscriber("orders.*", name="billing")
    def billing(msg: ms.Message) -> str:
        got.append(("billing", msg.topic, msg.sequence, msg.payload))
        return f"billed {msg.payload['n']}"

    @app.subscriber("audit.#", name="audit")
    def audit(msg: ms.Message) -> None:
        got.append(("audit", msg.topic, msg.sequence, msg.payload))

    m1 = app.publish("orders.created", {"n": 1})
    m2 = app.publish("orders.created", {"n": 2})
    m3 = app.publish("orders.paid", {"n": 3})
    app.publish("audit", {"n": 4})
    app.publish("audit.orders.x", {"n": 5})
    app.publish("other", {"n": 6})  # no subscriber: kept, delivered to none
    assert (m1.sequence, m2.sequence, m3.sequence) == (1, 2, 1)
    assert m1.event_id.startswith("evt:") and m1.event_id.endswith(":orders.created")
    assert m1.correlation_id and m1.correlation_id != m2.correlation_id  # fresh per publish
    with app.worker() as w:
        w.run_until_idle()
    assert sorted(got) == [
        ("audit", "audit", 1, {"n": 4}),
        ("audit", "audit.orders.x", 1, {"n": 5}),
        ("billing", "orders.created", 1, {"n": 1}),
        ("billing", "orders.created", 2, {"n": 2}),
        ("billing", "orders.paid", 1, {"n": 3}),
    ]
    assert [m.payload for m in app.messages("orders.created")] == [{"n": 1}, {"n": 2}]
    assert [m.sequence for m in app.messages("orders.created", since=1)] == [2]
    receipts = app.receipts(subscriber="billing")
    assert sorted(r.sequence for r in receipts) == [1, 2, 3]
    assert {r.status for r in receipts} == {"delivered"}
    one = app.receipts(subscriber="billing", event_id=m1.event_id)
    assert [(r.output, r.topic, r.attempt) for r in one] == [("billed 1", "orders.created", 1)]
    delivery = app.get_run(one[0].run_id)
    assert delivery.correlation_id == m1.correlation_id


def test_a_callers_event_id_replays_or_conflicts(app: ms.App) -> None:
    a = app.publish("t.x", {"v": 1}, event_id="delivery-42")
    before = app.log()
    assert app.publish("t.x", {"v": 1}, event_id="delivery-42") == a
    assert app.log() == before  # nothing written
    with pytest.raises(ms.IdempotencyConflict):
        app.publish("t.x", {"v": 2}, event_id="delivery-42")
    assert app.log() == before


def test_redelivery_keeps_the_event_id_and_a_retried_sender_mints_fresh_ones(
    app: ms.App,
) -> None:
    seen: list[tuple[str, int]] = []

    @app.subscriber("jobs.done", name="flaky", max_attempts=3, backoff=ms.Backoff.fixed(0))
    def flaky(msg: ms.Message) -> None:
        seen.append((msg.event_id, ms.context().attempt))
        if ms.context().attempt < 2:
            raise ConnectionError("retry me")

    @app.task(max_attempts=2, backoff=ms.Backoff.fixed(0))
    def sender() -> str:
        m = app.publish("jobs.done", {"by": "sender"})
        if ms.context().attempt == 1:
            raise RuntimeError("the sender fails after publishing")
        return m.event_id

    h = sender.submit()
    with app.worker() as w:
        w.run_until_idle()
    event_id = h.result()
    assert event_id.startswith(f"evt:{h.info().attempts[1].attempt_id}:0:")
    # the first attempt's message was never written: one message, delivered twice
    assert [m.event_id for m in app.messages("jobs.done")] == [event_id]
    assert seen == [(event_id, 1), (event_id, 2)]
    assert app.messages("jobs.done")[0].causation_id == h.run_id


def test_what_a_handler_launches_is_written_only_when_it_succeeds(app: ms.App) -> None:
    outcomes: list[str] = []

    @app.task
    def child() -> str:
        return "child ran"

    @app.task(max_attempts=2, backoff=ms.Backoff.fixed(0))
    def parent() -> str:
        h = child.submit()
        app.publish("launched.msg", {"attempt": ms.context().attempt})
        for call in (h.status, h.result, h.cancel):
            with pytest.raises(ms.PreconditionFailed) as info:
                call()
            outcomes.append(info.value.precondition)
        if ms.context().attempt == 1:
            raise RuntimeError("nothing launched by this attempt is written")
        return h.run_id

    p = parent.with_options(correlation_id="corr-1").submit()
    with app.worker() as w:
        w.run_until_idle()
    child_id = p.result()
    assert outcomes == ["origin-committed"] * 6
    runs = [r for r in app.runs(limit=10) if r.run_id != p.run_id]
    assert [r.run_id for r in runs] == [child_id]  # only the successful attempt's child
    assert runs[0].caused_by == p.run_id and runs[0].correlation_id == "corr-1"
    assert app.run(child_id).result() == "child ran"
    assert [m.payload for m in app.messages("launched.msg")] == [{"attempt": 2}]
    assert app.messages("launched.msg")[0].correlation_id == "corr-1"


def test_a_launch_refused_at_the_commit_fails_its_attempt_alone(make_app: Make) -> None:
    """A handler publishes under an event id taken with another payload, and submits under
    an idempotency key used with other arguments: its attempt fails for good, with the
    refusal, and the runs beside it are recorded once. (The whole turn failed and was
    tried again forever: the results beside it were never stored, their runs ran again
    after their leases expired, and the run failed as lost.)"""
    app = make_app(lease_seconds=1.0)
    ran: list[int] = []

    @app.task(max_attempts=3)
    def clashing_publish() -> None:
        app.publish("e.x", {"other": 1}, event_id="taken")

    @app.task
    def child(x: int) -> int:
        return x

    @app.task(max_attempts=3)
    def clashing_submit() -> None:
        child.with_options(idempotency_key="K").submit(2)

    @app.task
    def bystander(i: int) -> int:
        ran.append(i)
        time.sleep(0.05)
        return i

    app.publish("e.x", {"a": 1}, event_id="taken")
    child.with_options(idempotency_key="K").submit(1)
    bad = [clashing_publish.submit(), clashing_submit.submit()]
    good = [bystander.submit(i) for i in range(4)]
    with app.worker(concurrency=6) as w:
        w.run_until_idle(timeout=20)
    assert sorted(ran) == [0, 1, 2, 3] and [h.result() for h in good] == [0, 1, 2, 3]
    for h, refusal in zip(bad, ["IdempotencyConflict", "IdempotencyConflict"], strict=True):
        info = h.info()
        assert info.state == ms.RunState.FAILED and len(info.attempts) == 1
        assert info.error is not None and info.error.startswith(refusal)
        assert (info.failure_class, info.retry_class) == ("invalid_request", "do_not_retry")
    assert [m.payload for m in app.messages("e.x")] == [{"a": 1}]
    assert len(app.runs(task=child.name)) == 1


def test_ordered_subscriber_handles_one_message_at_a_time_in_sequence(make_app: Make) -> None:
    app = make_app()
    order: list[int] = []
    running: list[int] = []

    @app.subscriber("seq.t", name="in_order", ordered=True, max_attempts=2)
    def in_order(msg: ms.Message) -> None:
        running.append(1)
        assert len(running) == 1, "two deliveries at once"
        try:
            if msg.sequence == 3 and ms.context().attempt == 1:
                raise ConnectionError("the third fails once: the later ones wait for it")
            assert msg.sequence is not None
            order.append(msg.sequence)
        finally:
            running.pop()

    for i in range(10):
        app.publish("seq.t", {"i": i})
    with app.worker(concurrency=8) as w:
        w.run_until_idle()
    assert order == list(range(1, 11))


def test_an_ordered_delivery_skipped_by_a_claim_still_goes_first(
    make_app: Make, store_kind: str
) -> None:
    """On PostgreSQL a turn's claim skips rows another turn has locked; when that turn
    commits without leasing them, the first turn still takes the ordered key, and took the
    next message's delivery before the first one's (several workers delivered out of
    order). Here a connection holds the first delivery's row."""
    if store_kind != "postgres":
        pytest.skip("only PostgreSQL's claim skips locked rows")
    import psycopg

    app = make_app()

    @app.subscriber("seq.t", name="in_order", ordered=True)
    def in_order(msg: ms.Message) -> None:
        pass

    for i in range(3):
        app.publish("seq.t", {"i": i})
    first = min(app.runs(state="ready"), key=lambda r: r.scheduled_at)
    with psycopg.connect(app.store.conninfo) as other:  # type: ignore[attr-defined]
        other.execute("SELECT 1 FROM ms_runs WHERE run_id = %s FOR UPDATE", (first.run_id,))
        res = app.engine.cycle("w1", ["in_order"], None, [], 4, 30.0, housekeeping=False)
        assert res.leased == []  # not the second message's, with the first still ready
        other.rollback()
    res = app.engine.cycle("w1", ["in_order"], None, [], 4, 30.0, housekeeping=False)
    assert [lz.run_id for lz in res.leased] == [first.run_id]


@pytest.mark.parametrize(
    "clash",
    [{"key_policy": "release"}, {"concurrency_limit": 3}, {"concurrency_key": "k"}],
)
def test_an_ordered_subscriber_refuses_options_that_would_break_its_order(
    app: ms.App, clash: dict[str, object]
) -> None:
    """(``key_policy="release"`` let a later message go while one waited to retry; a
    limit of 3 ran three at once)"""
    with pytest.raises(ms.InvalidArgument, match="ordered=True"):

        @app.subscriber("o.t", name="o", ordered=True, **clash)  # type: ignore[arg-type]
        def o(msg: ms.Message) -> None: ...

    app.publish("o.t", {})
    assert app.runs() == []  # nothing was declared


_ENDED = (ms.RunState.COMPLETED, ms.RunState.FAILED)


@pytest.mark.parametrize("first_fails", [False, True])
def test_a_second_handling_that_ends_after_the_first_ends_as_the_first(
    app: ms.App, first_fails: bool
) -> None:
    """A rerun of a delivery handled while the first handling is still in flight, which
    ends first: the rerun ends as the first did (its output; or refused, receipt-exists),
    and what it launched is not written. (It ended with its own outcome, and its launches
    were written: a message handled twice downstream.)"""
    second_started = threading.Event()
    first_id: list[str] = []

    @app.subscriber("h.in", name="relay")
    def relay(msg: ms.Message) -> str:
        me = ms.context().run_id
        app.publish("h.out", {"by": me})
        if me == first_id[0]:
            assert second_started.wait(10)
            if first_fails:
                raise ms.Fail("the first handling fails")
            return f"first {me}"
        second_started.set()
        deadline = time.monotonic() + 10
        while app.run(first_id[0]).status() not in _ENDED and time.monotonic() < deadline:
            time.sleep(0.01)
        return f"second {me}"

    app.publish("h.in", {})
    first_id.append(app.runs(task="relay")[0].run_id)
    with app.worker(concurrency=2) as w:
        wait_for(lambda: app.run(first_id[0]).status() == ms.RunState.RUNNING)
        again = app.run(first_id[0]).rerun()
        w.run_until_idle(timeout=30)
    first = app.run(first_id[0]).info()
    second = again.info()
    [receipt] = app.receipts(subscriber="relay")
    assert receipt.run_id == first.run_id
    if first_fails:
        assert second.state == ms.RunState.FAILED and "receipt-exists" in (second.error or "")
        assert app.messages("h.out") == []
    else:
        assert second.state == ms.RunState.COMPLETED and second.output == first.output
        assert [m.payload for m in app.messages("h.out")] == [{"by": first.run_id}]


def test_a_rerun_delivery_ends_as_the_first_handling(app: ms.App) -> None:
    calls: list[str] = []

    @app.subscriber("r.t", name="once_only")
    def once_only(msg: ms.Message) -> str:
        calls.append(msg.event_id)
        return "handled"

    m = app.publish("r.t", {})
    with app.worker() as w:
        w.run_until_idle()
        first = app.receipts(event_id=m.event_id)[0]
        again = app.run(first.run_id).rerun()
        w.run_until_idle()
    assert again.result() == "handled" and calls == [m.event_id]
    assert len(app.receipts(event_id=m.event_id)) == 1  # create-only: still the first


def test_a_workflow_publishes_as_a_step_and_a_step_launches_with_its_record(
    app: ms.App,
) -> None:
    @app.task
    def side(x: int) -> int:
        return x

    @app.step
    def launcher() -> str:
        side.submit(5)
        return "launched"

    @app.workflow
    def flow() -> list[Any]:
        m = app.publish("wf.events", {"from": "workflow"})
        out = launcher()
        ms.sleep(0)
        return [m.sequence, out]

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
    assert h.result() == [1, "launched"]
    assert [s.name for s in h.steps()] == ["publish:wf.events", launcher.name]
    sides = [r for r in app.runs(limit=10) if r.task_name.endswith("side")]
    assert len(sides) == 1 and sides[0].caused_by == h.run_id


class Circular(dict[str, Any]):
    pass


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda app: app.publish("", {}), ms.InvalidArgument),
        (lambda app: app.publish("a..b", {}), ms.InvalidArgument),
        (lambda app: app.publish("orders.*", {}), ms.InvalidArgument),
        (lambda app: app.publish("t", object()), ms.SerializationError),
        (lambda app: app.publish("t", "x" * 100), ms.Backpressure),
        (lambda app: app.subscriber("a.#.b"), ms.InvalidArgument),
        (lambda app: app.subscriber(""), ms.InvalidArgument),
    ],
)
def test_bad_input_raises_the_named_error_and_writes_nothing(
    make_app: Make, call: Callable[[ms.App], Any], error: type[Exception]
) -> None:
    app = make_app(max_payload_bytes=64)
    app.publish("t", "x" * 62)  # exactly the limit (62 chars + 2 quotes) passes
    before = app.log()
    with pytest.raises(error):
        call(app)
    assert app.log() == before


def test_a_circular_payload_is_refused(app: ms.App) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ms.SerializationError):
        app.publish("t", loop)
    assert app.messages("t") == []


def test_a_subscriber_declared_twice_with_other_options_is_refused(app: ms.App) -> None:
    @app.subscriber("a.b", name="twice")
    def first(msg: ms.Message) -> None: ...

    with pytest.raises(ms.InvalidArgument):

        @app.subscriber("a.c", name="twice")
        def second(msg: ms.Message) -> None: ...


def test_a_task_name_declared_by_another_function_is_refused(app: ms.App) -> None:
    """(The second replaced the first: submitting the first ran the second's code.)"""

    @app.task(name="job")
    def send_invoice() -> str:
        return "invoice"

    with pytest.raises(ms.InvalidArgument, match="declared already"):

        @app.task(name="job")
        def delete_account() -> str:
            return "deleted"

    def send_invoice_again() -> str:  # the same function again, as a notebook cell rerun
        return "invoice"

    send_invoice_again.__qualname__ = send_invoice.fn.__qualname__
    app.task(name="job")(send_invoice_again)
    h = send_invoice.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    assert h.result() == "invoice"


def test_publish_many_numbers_the_messages_in_order_in_one_transaction(app: ms.App) -> None:
    before = app.log()
    ms_ = app.publish_many("batch.t", [{"i": i} for i in range(5)])
    assert [m.sequence for m in ms_] == [1, 2, 3, 4, 5]
    assert len({e.seq for e in app.log(since=len(before))}) == 5  # five events ...
    assert len({m.correlation_id for m in ms_}) == 5  # ... each its own correlation
    with pytest.raises(ms.Backpressure):
        app.publish_many("batch.t", [{"i": 1}, "x" * (2 << 20)])
    assert len(app.messages("batch.t")) == 5  # the refused batch wrote nothing


def test_receipts_come_first_recorded_first_and_limits_are_checked(app: ms.App) -> None:
    @app.subscriber("lim.t", name="lim")
    def lim(msg: ms.Message) -> int:
        return 1

    app.publish("lim.t", 1, event_id="zzz")
    with app.worker() as w:
        w.run_until_idle()
    app.publish("lim.t", 2, event_id="aaa")
    with app.worker() as w:
        w.run_until_idle()
    assert [r.event_id for r in app.receipts(limit=1)] == ["zzz"]
    assert [r.event_id for r in app.receipts(subscriber="lim")] == ["zzz", "aaa"]
    # receipts recorded in one commit share their time: they come in their count's order
    for n in range(12):  # (event ids in the opposite order: receipts are keyed by them)
        app.publish("lim.t", n, event_id=f"e{99 - n}")
    with app.worker(concurrency=12) as w:
        w.run_until_idle()
    assert [r.sequence for r in app.receipts(subscriber="lim")] == list(range(1, 15))
    for bad in (-1, "x", 1.5, True):
        with pytest.raises(ms.InvalidArgument):
            app.receipts(limit=bad)
        with pytest.raises(ms.InvalidArgument):
            app.messages("lim.t", limit=bad)
        with pytest.raises(ms.InvalidArgument):
            app.messages("lim.t", since=bad)
