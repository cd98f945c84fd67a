"""``app.why`` of a suspended workflow names what it waits for: its wake time, the signal
and its timeout, the children, or the replay that diverged; a handler's own
``ms.Suspend`` keeps the plain sentence."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import mainspring as ms
from mainspring.testing import ManualClock

from .conftest import START


def only_reason(app: ms.App, h: ms.RunHandle) -> ms.Reason:
    explanation = app.why(h.run_id)
    assert explanation.state == "suspended"
    (reason,) = explanation.reasons
    assert reason.code == "suspended"
    return reason


def test_a_sleeping_workflow_says_until_when(
    make_app: Callable[..., ms.App], clock: ManualClock
) -> None:
    app = make_app()

    @app.workflow(name="wf.nap")
    def nap() -> str:
        ms.sleep(timedelta(minutes=1))
        return "awake"

    h = nap.submit()
    with app.worker() as w:
        w.run_until_idle()
        reason = only_reason(app, h)
        assert reason.data == {"reason": "sleep", "until": START + timedelta(minutes=1)}
        assert "sleeping until 2027-01-01 00:01:00 UTC" in reason.text
        clock.advance(60)
        assert h.result(timeout=20) == "awake"
    assert [r.code for r in app.why(h.run_id).reasons] == ["terminal"]


def test_a_workflow_waiting_for_a_signal_names_it_and_its_timeout(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app()

    @app.workflow(name="wf.approve")
    def approve() -> Any:
        return ms.wait_for("approval", timeout=timedelta(hours=1))

    h = approve.with_options(execution_id="order 7").submit()
    with app.worker() as w:
        w.run_until_idle()
        reason = only_reason(app, h)
        assert reason.data == {
            "reason": "signal",
            "waiting_for": "approval",
            "until": START + timedelta(hours=1),
        }
        assert "waiting for signal 'approval' (timeout at 2027-01-01 01:00:00 UTC)" in reason.text
        # the command to send it, quoted for a shell (the execution id has a space)
        assert "`mainspring signal 'order 7' approval`" in reason.text
        app.signal("order 7", "approval", {"by": "ops"})
        assert h.result(timeout=20) == {"by": "ops"}


def test_a_signal_wait_without_a_timeout_has_no_until(make_app: Callable[..., ms.App]) -> None:
    app = make_app()

    @app.workflow(name="wf.forever")
    def forever() -> Any:
        return ms.wait_for("go")

    h = forever.submit()
    with app.worker() as w:
        w.run_until_idle()
        reason = only_reason(app, h)
        assert reason.data == {"reason": "signal", "waiting_for": "go", "until": None}
        assert "timeout" not in reason.text
        # without an execution id the workflow is named by its run id
        assert f"`mainspring signal {h.run_id} go`" in reason.text
        app.signal(h.run_id, "go")
        w.run_until_idle()
    assert h.status() == "completed"


def test_a_workflow_waiting_for_children_names_them_and_counts_those_ended(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app()

    @app.task(name="wf.part", queue="later")  # a queue no worker of the test serves
    def part(n: int) -> int:
        return n

    @app.workflow(name="wf.parts")
    def parts() -> list[Any]:
        return ms.gather(part.submit(1), part.submit(2))

    h = parts.submit()
    with app.worker(queues=["default"]) as w:
        w.run_until_done()  # (the children stay ready: the store is never idle)
        children = [s.output for s in h.steps()]
        assert len(children) == 2
        reason = only_reason(app, h)
        assert reason.data == {"reason": "child", "waiting_for": children}
        assert "waiting for 2 child runs to end (0 ended so far)" in reason.text
        app.run(children[0]).cancel()
        assert "(1 ended so far)" in only_reason(app, h).text


def test_a_diverged_replay_says_nondeterminism_and_what_diverged(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app()
    code = {"version": 1}

    @app.step(name="wf.old_step")
    def old_step() -> int:
        return 1

    @app.step(name="wf.new_step")
    def new_step() -> int:
        return 2

    @app.workflow(name="wf.changing")
    def changing() -> Any:
        old_step() if code["version"] == 1 else new_step()
        return ms.wait_for("go")

    h = changing.submit()
    with app.worker() as w:
        w.run_until_idle()
        assert only_reason(app, h).data["reason"] == "signal"
        code["version"] = 2  # a deploy that changed the workflow under the run
        assert h.resume()
        w.run_until_idle()
        reason = only_reason(app, h)
        assert reason.data == {"reason": "nondeterminism"}
        assert reason.text.startswith("the workflow is suspended (nondeterminism): ")
        assert "'wf.new_step'" in reason.text and "'wf.old_step'" in reason.text
        assert "Suspend:" not in reason.text


def test_a_wait_that_ended_in_the_attempt_is_not_named_after_a_plain_suspend(
    make_app: Callable[..., ms.App],
) -> None:
    app = make_app()

    @app.workflow(name="wf.check")
    def check() -> None:
        ms.wait_for("go")  # sent before: received at once, the wait ends in this attempt
        raise ms.Suspend("operator check")

    h = check.with_options(execution_id="check-1").submit()
    app.signal("check-1", "go")
    with app.worker() as w:
        w.run_until_idle()
    reason = only_reason(app, h)
    assert reason.data == {"reason": "suspended"}
    assert reason.text == (
        "the run is suspended (Suspend: operator check); resume it to run it again"
    )
