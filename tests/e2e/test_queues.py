"""Queues: pausing one queue while workers run (its runs wait ready, the others go on),
``why`` saying so, ``app.queues()``, and resuming; on both stores."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import mainspring as ms
from mainspring.testing import ManualClock

from .helpers import wait_for

Make = Callable[..., ms.App]


def test_a_paused_queue_leases_nothing_while_other_queues_run(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    ran: list[str] = []

    @app.task(queue="mail")
    def mail(i: int) -> None:
        ran.append(f"mail {i}")

    @app.task(queue="billing")
    def bill(i: int) -> None:
        ran.append(f"bill {i}")

    assert app.pause(queue="mail") is True
    assert app.pause(queue="mail") is False  # already paused: nothing written
    with app.worker(concurrency=4) as w:
        for i in range(3):
            mail.submit(i)
            bill.submit(i)
        wait_for(lambda: len(ran) == 3, 10, "the billing runs")
        clock.advance(30)
        stuck = app.runs(state="ready")
        assert sorted(r.task_name.rsplit(".", 1)[1] for r in stuck) == ["mail"] * 3
        reasons = [r.code for r in app.why(stuck[0].run_id).reasons]
        assert "queue_paused" in reasons
        by_name = {q.name: q for q in app.queues()}
        assert by_name["mail"].paused and not by_name["billing"].paused
        assert by_name["mail"].counts == {"ready": 3}
        assert by_name["billing"].counts == {"completed": 3}
        assert by_name["mail"].oldest_ready_seconds == pytest.approx(30, abs=1)
        assert by_name["billing"].oldest_ready_seconds is None
        assert app.resume(queue="mail") is True
        assert app.resume(queue="mail") is False
        w.run_until_idle()
    assert sorted(ran) == [f"{k} {i}" for k in ("bill", "mail") for i in range(3)]
    types = [e.type for e in app.log(limit=10_000)]
    assert types.count("queue.paused") == 1 and types.count("queue.resumed") == 1


def test_an_empty_queue_name_is_refused(app: ms.App) -> None:
    before = app.log()
    for bad in ("", 3):
        with pytest.raises(ms.InvalidArgument):
            app.pause(queue=bad)  # type: ignore[arg-type]
    assert app.log() == before
