"""Durable workflows end to end, on both stores: steps, replay, sleeps, signals, children,
execution ids, patched, deadlines, nondeterminism, and the bad input that must change
nothing. Every App is verified when the test ends (conftest)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import mainspring as ms
from mainspring.testing import ManualClock

from .helpers import wait_for

Make = Callable[..., ms.App]


def test_steps_run_once_and_replay_returns_their_stored_results(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    calls: list[str] = []

    @app.step
    def fetch(x: int) -> dict[str, int]:
        calls.append("fetch")
        return {"v": x * 2}

    @app.step(name="double")
    def double(v: int) -> int:
        calls.append("double")
        return v * 2

    @app.workflow
    def flow(x: int) -> list[Any]:
        a = fetch(x)
        ms.sleep(60)  # the attempt ends here; the next one replays fetch
        b = double(a["v"])
        return [a, b]

    h = flow.submit(5)
    with app.worker() as w:
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED
        assert calls == ["fetch"]
        clock.advance(61)
        w.run_until_idle()
    assert h.result() == [{"v": 10}, 20]
    assert calls == ["fetch", "double"]  # fetch was replayed, not called again
    steps = h.steps()
    assert [(s.number, s.name, s.state, s.output, s.attempts) for s in steps] == [
        (1, fetch.name, "completed", {"v": 10}, 1),
        (2, "double", "completed", 20, 1),
    ]
    types = [e.type for e in h.history()]
    assert types.count("step.completed") == 2 and types.count("step.started") == 2
    assert types.index("sleep.started") < types.index("sleep.completed")
    assert all(e.execution_id == h.run_id for e in h.history())  # its run id as execution id
    assert [a.result for a in h.info().attempts] == [
        ms.AttemptResult.SUSPENDED,
        ms.AttemptResult.SUCCESS,
    ]


def test_a_step_retries_in_place_then_raises_into_the_workflow(make_app: Make) -> None:
    app = make_app()
    tries: list[int] = []

    @app.step(max_attempts=3, backoff=ms.Backoff.fixed(0.01))
    def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("down")
        return "up"

    @app.step(max_attempts=2, backoff=ms.Backoff.fixed(0.01))
    def broken() -> None:
        raise ValueError("bad data")

    @app.workflow
    def flow() -> list[str]:
        out = [flaky()]
        try:
            broken()
        except ValueError as exc:
            out.append(f"caught {exc}")
        return out

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
    assert h.result() == ["up", "caught bad data"]
    s1, s2 = h.steps()
    assert (s1.state, s1.attempts) == ("completed", 3)
    assert (s2.state, s2.attempts, s2.error) == ("failed", 2, "ValueError: bad data")
    failed = [e.data for e in h.history() if e.type == "step.failed"]
    assert [d["will_retry"] for d in failed] == [True, True, True, False]


def test_an_uncaught_step_failure_is_the_attempts_outcome_and_the_retry_runs_the_step_again(
    make_app: Make,
) -> None:
    app = make_app()
    calls: list[int] = []

    @app.step(max_attempts=1)
    def boom() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KeyError("gone")
        return "back"

    @app.workflow(max_attempts=3, backoff=ms.Backoff.fixed(0.01))
    def flow() -> str:
        return boom()

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
    assert h.result() == "back"
    assert calls == [1, 1, 1]  # each retry of the workflow tried the step anew
    assert [a.error for a in h.info().attempts] == ["KeyError: 'gone'"] * 2 + [None]
    (step,) = h.steps()
    assert (step.number, step.state, step.output, step.attempts) == (1, "completed", "back", 3)
    ends = [(e.type, e.data["number"]) for e in h.history() if e.type.startswith("step.")]
    assert ends == [("step.started", 1), ("step.failed", 1)] * 2 + [
        ("step.started", 1),
        ("step.completed", 1),
    ]


def test_a_failure_the_workflow_caught_and_went_on_from_replays_as_the_same_error(
    make_app: Make,
) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    calls: list[str] = []

    @app.step(max_attempts=1)
    def boom(who: str) -> None:
        calls.append(who)
        if calls.count(who) == 1:
            raise KeyError("gone")

    @app.workflow
    def flow(waits: bool) -> str:
        try:
            boom("sleeper" if waits else "stepper")
            path = "ok"
        except KeyError:
            path = "caught"
        if waits:
            ms.sleep(60)  # past the failure: a replay must take the same path
        else:
            ms.step("after", lambda: None)
        return path

    sleeper, stepper = flow.submit(True), flow.submit(False)
    with app.worker() as w:
        w.run_until_idle()
        assert sleeper.status() == ms.RunState.SUSPENDED
        clock.advance(61)
        w.run_until_idle()
    assert sleeper.result() == "caught"
    assert stepper.result() == "caught"
    assert sorted(calls) == ["sleeper", "stepper"]  # once each, never again on replay


def test_a_step_that_suspended_its_workflow_runs_again_once_resumed(make_app: Make) -> None:
    app = make_app()
    fixed: list[bool] = []

    class NotConfigured(Exception):
        failure_class = "adapter_unavailable"  # retry_after_reconfigure: suspend

    @app.step(max_attempts=1)
    def connect() -> str:
        if not fixed:
            raise NotConfigured("no adapter")
        return "connected"

    @app.workflow
    def flow() -> str:
        return connect()

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED
        assert [r.data for r in app.why(h.run_id).reasons] == [
            {"reason": "retry_after_reconfigure"}
        ]
        fixed.append(True)
        assert h.resume()
        w.run_until_idle()
    assert h.result() == "connected"


def test_async_workflow_and_async_steps(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    calls: list[str] = []

    @app.step
    async def fetch(x: int) -> int:
        calls.append("fetch")
        await asyncio.sleep(0)
        return x + 1

    @app.workflow
    async def flow(x: int) -> list[Any]:
        a = await fetch(x)
        await ms.sleep_async(10)
        b = await ms.step("adhoc", fetch, a)
        sig = await ms.wait_for_async("go", timeout=100)
        return [a, b, sig]

    h = flow.with_options(execution_id="async-1").submit(1)
    with app.worker() as w:
        w.run_until_idle()
        clock.advance(11)
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED
        app.signal("async-1", "go", "yes")
        w.run_until_idle()
    assert h.result() == [2, 3, "yes"]
    assert calls == ["fetch", "fetch"]
    assert [s.name for s in h.steps()] == [fetch.name, "adhoc"]


def test_signals_are_buffered_received_once_each_and_in_order(make_app: Make) -> None:
    app = make_app()

    @app.workflow
    def collect(n: int) -> list[Any]:
        return [ms.wait_for("item") for _ in range(n)]

    h = collect.with_options(execution_id="collector").submit(3)
    app.signal("collector", "item", 1)  # before it runs: kept
    app.signal(h.run_id, "item", 2)  # by run id too
    app.signal("collector", "other", "never received")
    with app.worker() as w:
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED
        app.signal("collector", "item", 3, idempotency_key="k")
        app.signal("collector", "item", 4, idempotency_key="k")  # the same signal: a no-op
        w.run_until_idle()
    assert h.result() == [1, 2, 3]
    sent = [e for e in h.history() if e.type == "signal.sent"]
    assert [e.data["payload"] for e in sent] == [1, 2, "never received", 3]
    assert [e.type for e in h.history()].count("signal.received") == 3


def test_wait_for_times_out_with_none(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)

    @app.workflow
    def flow() -> Any:
        return ["got", ms.wait_for("approval", timeout=timedelta(hours=1))]

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
        assert app.why(h.run_id).state == ms.RunState.SUSPENDED
        clock.advance(3599)
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED
        clock.advance(2)
        w.run_until_idle()
    assert h.result() == ["got", None]
    done = [e for e in h.history() if e.type == "wait.completed"]
    assert [e.data["timed_out"] for e in done] == [True]


def test_children_start_once_and_results_wait_durably(make_app: Make) -> None:
    app = make_app()
    ran: list[int] = []

    @app.task
    def child(i: int) -> int:
        ran.append(i)
        return i * 10

    @app.task(max_attempts=1)
    def failing() -> None:
        raise ms.Fail("no")

    @app.workflow
    def parent() -> list[Any]:
        hs = [child.submit(i) for i in range(3)]
        outs = ms.gather(*hs)
        single = child.submit(7).result()
        try:
            failing.submit().result()
        except ms.RunFailed:
            outs.append("child failed")
        return [*outs, single]

    h = parent.with_options(execution_id="P").submit()
    with app.worker(concurrency=4) as w:
        w.run_until_idle()
    assert h.result() == [0, 10, 20, "child failed", 70]
    assert sorted(ran) == [0, 1, 2, 7]  # each child once, across the parent's replays
    kids = [r for r in app.runs(limit=100) if r.run_id != h.run_id]
    assert {r.parent_run_id for r in kids} == {h.run_id}
    assert sorted(r.execution_id or "" for r in kids) == ["P/1", "P/2", "P/3", "P/4", "P/5"]
    assert [s.name.split(":")[0] for s in h.steps()] == ["submit"] * 5


def test_canceling_a_workflow_cancels_its_children(make_app: Make) -> None:
    app = make_app()

    @app.workflow
    def waiting_child() -> Any:
        return ms.wait_for("never")

    @app.task
    def quick() -> int:
        return 1

    @app.workflow
    def parent() -> Any:
        done = quick.submit()
        pending = waiting_child.submit()
        return [done.result(), pending.result()]

    h = parent.submit()
    with app.worker() as w:
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED
        assert h.cancel()
        w.run_until_idle()
    kids = {r.task_name.rsplit(".", 1)[1]: r.state for r in app.runs(limit=10) if r.parent_run_id}
    assert kids == {"quick": ms.RunState.COMPLETED, "waiting_child": ms.RunState.CANCELED}


def test_execution_ids_name_one_instance(make_app: Make) -> None:
    app = make_app()

    @app.workflow
    def flow(x: int) -> int:
        return x

    @app.workflow
    def other(x: int) -> int:
        return x

    h1 = flow.with_options(execution_id="order-1").submit(1)
    h2 = flow.with_options(execution_id="order-1").submit(1)
    assert h1 == h2 and len(app.runs()) == 1
    with pytest.raises(ms.IdempotencyConflict):
        flow.with_options(execution_id="order-1").submit(2)
    with pytest.raises(ms.IdempotencyConflict):
        other.with_options(execution_id="order-1").submit(1)
    assert app.get_execution("order-1").run_id == h1.run_id
    with pytest.raises(ms.UnknownExecution):
        app.get_execution("order-2")
    with app.worker() as w:
        w.run_until_idle()
    assert h1.result() == 1
    assert {e.execution_id for e in h1.history()} == {"order-1"}


def test_patched_keeps_old_runs_on_the_old_path(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    version = {"patched": False}

    @app.step
    def old_step() -> str:
        return "old"

    @app.step
    def new_step() -> str:
        return "new"

    @app.workflow(name="versioned")
    def flow() -> list[str]:
        ms.sleep(10)
        patched = version["patched"] and ms.patched("use-new")
        out = [new_step() if patched else old_step()]
        ms.sleep(10)
        return out

    old = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
        clock.advance(11)
        w.run_until_idle()  # the old run went past the patch point on old code
        version["patched"] = True
        new = flow.submit()
        w.run_until_idle()
        clock.advance(11)
        w.run_until_idle()
        clock.advance(11)
        w.run_until_idle()
    assert old.result() == ["old"]
    assert new.result() == ["new"]
    assert [s.name for s in new.steps()] == ["patch:use-new", new_step.name]
    assert [s.name for s in old.steps()] == [old_step.name]


def test_a_diverging_replay_suspends_the_run_with_reason_nondeterminism(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    code = {"first": "a"}

    @app.step
    def a() -> str:
        return "a"

    @app.step
    def b() -> str:
        return "b"

    @app.workflow
    def flow() -> str:
        first = a() if code["first"] == "a" else b()
        ms.sleep(5)
        return first

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
        code["first"] = "b"  # a deploy that changed the code under the sleeping run
        clock.advance(6)
        w.run_until_idle()
        info = h.info()
        assert info.state == ms.RunState.SUSPENDED
        assert app.why(h.run_id).reasons[0].data.get("reason") == "nondeterminism"
        assert "NonDeterminism" in (info.error or "") or "nondeterminism" in (info.error or "")
        code["first"] = "a"  # the right code is deployed again
        assert h.resume()
        w.run_until_idle()
    assert h.result() == "a"


def test_a_run_waiting_past_the_patch_point_keeps_the_old_path(make_app: Make) -> None:
    """Runs in flight are mostly waiting: one asleep after the point where a patch now
    stands went past it on the old code, although it recorded no step there."""
    clock = ManualClock()
    app = make_app(clock=clock)
    deployed = {"patch": False}

    @app.step
    def a() -> str:
        return "a"

    @app.step
    def verify() -> str:
        return "verified"

    @app.workflow(name="signup")
    def flow() -> list[str]:
        out = [a()]
        if deployed["patch"] and ms.patched("verify-email"):
            out.append(verify())
        ms.sleep(10)
        return out

    old = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
        assert old.status() == ms.RunState.SUSPENDED  # asleep, past the patch point
        deployed["patch"] = True
        new = flow.submit()
        w.run_until_idle()
        clock.advance(11)
        w.run_until_idle()
    assert old.result() == ["a"]
    assert [s.name for s in old.steps()] == [a.name]
    assert new.result() == ["a", "verified"]
    assert [s.name for s in new.steps()] == [a.name, "patch:verify-email", verify.name]


def test_a_step_added_before_the_wait_a_run_is_in_diverges(make_app: Make) -> None:
    """Without ms.patched, a step put before the wait a run is in is one the run never made
    there: its replay diverges, rather than run the step late."""
    clock = ManualClock()
    app = make_app(clock=clock)
    deployed = {"b": False}
    ran: list[str] = []

    @app.step
    def a() -> str:
        return "a"

    @app.step
    def b() -> str:
        ran.append("b")
        return "b"

    @app.workflow
    def flow() -> list[str]:
        out = [a()]
        if deployed["b"]:
            out.append(b())
        ms.sleep(5)
        return out

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
        deployed["b"] = True
        clock.advance(6)
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED
        assert app.why(h.run_id).reasons[0].data.get("reason") == "nondeterminism"
        assert ran == []
        deployed["b"] = False  # the code it ran with is deployed again
        assert h.resume()
        w.run_until_idle()
    assert h.result() == ["a"]


def test_a_deadline_cancels_a_workflow_and_its_children(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)

    @app.workflow
    def child() -> None:
        ms.wait_for("never")

    @app.workflow
    def parent() -> Any:
        return child.submit().result()

    h = parent.with_options(deadline=timedelta(minutes=5)).submit()
    with app.worker() as w:
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED
        clock.advance(301)
        w.run_until_idle()
    info = h.info()
    assert info.state == ms.RunState.CANCELED
    kids = [r for r in app.runs(limit=10) if r.parent_run_id == h.run_id]
    assert [k.state for k in kids] == [ms.RunState.CANCELED]
    reasons = [e.data.get("reason") for e in h.history() if e.type == "run.state_changed"]
    assert reasons[-1] == "deadline"


def test_a_deadline_also_applies_to_plain_tasks(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)

    @app.task
    def later() -> None:
        pass

    h = later.with_options(delay=600, deadline=60).submit()
    with app.worker() as w:
        clock.advance(61)
        w.run_until_idle()
    assert h.status() == ms.RunState.CANCELED


def test_sleep_until_and_a_sleep_in_the_past_passes_through(make_app: Make) -> None:
    clock = ManualClock(start=datetime(2030, 1, 1, tzinfo=UTC))
    app = make_app(clock=clock)

    @app.workflow
    def flow() -> str:
        ms.sleep_until(datetime(2030, 1, 2, tzinfo=UTC))
        ms.sleep_until(datetime(2029, 1, 1, tzinfo=UTC))  # already past: no suspension
        ms.sleep(0)
        return "woke"

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED
        clock.advance(timedelta(days=1))
        w.run_until_idle()
    assert h.result() == "woke"
    assert len(h.info().attempts) == 2


def test_a_step_outside_a_workflow_is_a_plain_call(app: ms.App) -> None:
    @app.step
    def add(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3
    assert ms.step("plain", add, 2, 3) == 5


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: ms.sleep(1), ms.NoContext),
        (lambda: ms.wait_for("x"), ms.NoContext),
        (lambda: ms.patched("p"), ms.NoContext),
        (lambda: ms.sleep(-1), ms.InvalidArgument),
        (lambda: ms.sleep_until(datetime(2030, 1, 1)), ms.InvalidArgument),
        (lambda: ms.wait_for("", timeout=1), ms.InvalidArgument),
    ],
)
def test_bad_calls_outside_or_inside_a_workflow_raise_the_named_error(
    call: Callable[[], Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call()


def test_bad_input_inside_a_workflow_writes_nothing(make_app: Make) -> None:
    app = make_app()
    seen: list[str] = []

    @app.step
    def unserializable() -> object:
        return object()

    @app.workflow
    def flow() -> list[str]:
        for bad in (
            lambda: ms.sleep(-5),
            lambda: ms.sleep_until(datetime(2030, 1, 1)),
            unserializable,
        ):
            try:
                bad()
            except ms.MainspringError as exc:
                seen.append(type(exc).__name__)
        return seen

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
    assert h.result() == ["InvalidSchedule", "InvalidArgument", "SerializationError"]
    # the bad sleeps wrote nothing; the step ran, and its result could not be stored: it
    # failed for good, recorded so that a replay does not run its code again
    [step] = h.steps()
    assert step.state == "failed" and "SerializationError" in (step.error or "")
    assert not [e for e in h.history() if e.type.startswith(("sleep.", "wait."))]


def test_a_signal_to_an_unknown_id_raises_and_writes_nothing(app: ms.App) -> None:
    @app.task
    def plain() -> None: ...

    task_run = plain.submit().run_id
    before = app.log()
    with pytest.raises(ms.UnknownExecution):
        app.signal("nobody", "go")
    with pytest.raises(ms.UnknownExecution, match="not of a workflow"):
        app.signal(execution_id_or_run_id=task_run, name="go")
    with pytest.raises(ms.SerializationError):
        app.signal("nobody", "go", object())
    with pytest.raises(ms.InvalidArgument):
        app.signal("", "go")
    assert app.log() == before


def test_a_signal_to_a_finished_workflow_is_recorded_and_never_received(app: ms.App) -> None:
    @app.workflow
    def quick() -> int:
        return 1

    h = quick.with_options(execution_id="done").submit()
    with app.worker() as w:
        w.run_until_idle()
    app.signal("done", "late", {"x": 1})
    assert [e.type for e in h.history()][-1] == "signal.sent"
    assert h.result() == 1


def test_the_context_names_the_running_step(make_app: Make) -> None:
    app = make_app()

    @app.step
    def which() -> Any:
        return ms.context().step

    @app.workflow
    def flow() -> list[Any]:
        return [ms.context().step, which(), which(), ms.context().step]

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
    assert h.result() == [None, 1, 2, None]


def test_after_a_caught_divergence_nothing_more_is_recorded(make_app: Make) -> None:
    clock = ManualClock()
    app = make_app(clock=clock)
    code = {"v": 1}
    ran: list[str] = []

    @app.step
    def first() -> None:
        ran.append("first")

    @app.step
    def other() -> None:
        ran.append("other")

    @app.step
    def after() -> None:
        ran.append("after")

    @app.workflow
    def flow() -> str:
        try:
            first() if code["v"] == 1 else other()
        except ms.NonDeterminism:
            pass
        ms.sleep(1) if code["v"] == 1 else after()
        return "done"

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
        code["v"] = 2
        clock.advance(2)
        w.run_until_idle()
    assert h.status() == ms.RunState.SUSPENDED
    assert ran == ["first"]  # neither the diverging step nor the one after it ran
    assert [s.name for s in h.steps()] == [first.name]


def test_a_signal_does_not_wake_a_workflow_suspended_for_another_reason(app: ms.App) -> None:
    @app.workflow
    def flow() -> None:
        ms.wait_for("go")  # a signal is waiting already: passes at once
        raise ms.Suspend("operator check")

    h = flow.with_options(execution_id="E3").submit()
    app.signal("E3", "go", 1)
    with app.worker() as w:
        w.run_until_idle()
        assert h.status() == ms.RunState.SUSPENDED
        app.signal("E3", "go", 2)
        w.run_until_idle()
    assert h.status() == ms.RunState.SUSPENDED
    assert h.info().attempts[-1].error == "Suspend: operator check"


def test_a_step_whose_result_cannot_be_stored_fails_and_is_not_run_again(app: ms.App) -> None:
    """The step's result is not JSON: the step fails for good with SerializationError, and
    is recorded so; the replay raises it again rather than running its code once more."""
    calls: list[int] = []

    class Opaque:
        pass

    @app.step()
    def make() -> object:
        calls.append(1)
        return Opaque()

    @app.workflow(name="wf.opaque")
    def flow() -> str:
        try:
            make()
        except ms.SerializationError:
            pass
        ms.wait_for("go")  # the next attempt replays the failed step
        return "done"

    h = flow.submit()
    with app.worker() as w:
        wait_for(lambda: h.status() == ms.RunState.SUSPENDED, 10, "the workflow to wait")
        app.signal(h.run_id, "go")
        w.run_until_idle()
    assert h.result(timeout=5) == "done"
    assert calls == [1]
    [step] = h.steps()
    assert step.state == "failed" and step.error is not None
    assert "SerializationError" in step.error


class APIError(Exception):
    """An exception whose __init__ takes other arguments than it passes on (common)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status


def test_a_caught_step_error_is_raised_again_on_replay_though_its_init_differs(
    make_app: Make,
) -> None:
    """A step failed for good with such an exception and the workflow caught it: after a
    durable sleep its replay raises the same exception, with its attributes, and takes the
    same path. (It could not be made again from its args: a MainspringError came instead,
    the workflow's ``except`` missed it and the run failed.)"""
    clock = ManualClock()
    app = make_app(clock=clock)
    calls: list[str] = []

    @app.step(max_attempts=1)
    def call_api() -> None:
        calls.append("call")
        raise APIError(503, "down")

    @app.workflow
    def flow() -> str:
        try:
            call_api()
            path = "ok"
        except APIError as exc:
            path = f"caught {exc.status}: {exc}"
        ms.sleep(10)
        return path

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
        clock.advance(11)
        w.run_until_idle()
    assert h.result() == "caught 503: HTTP 503: down" and calls == ["call"]


def test_no_step_starts_once_the_attempt_is_over(make_app: Make) -> None:
    """The run is canceled while its workflow code runs between steps: the next step's
    code does not start (it did, inside a canceled run: an outside effect the run was
    canceled to prevent, or, after a lost lease, a step that another worker completed
    run again)."""
    import threading
    import time

    app = make_app()
    effects: list[str] = []
    between, ended = threading.Event(), threading.Event()

    @app.step
    def s1() -> int:
        effects.append("s1")
        return 1

    @app.step
    def s2() -> int:
        effects.append("s2")
        return 2

    @app.workflow
    def flow() -> str:
        try:
            s1()
            between.set()
            deadline = time.monotonic() + 10
            while not ms.context().cancelled and time.monotonic() < deadline:
                time.sleep(0.01)
            s2()
            return "done"
        finally:
            ended.set()

    with app.worker() as w:
        h = flow.submit()
        assert between.wait(10)
        assert h.cancel()
        w.run_until_idle(timeout=15)
        assert ended.wait(10)  # (the abandoned attempt's code, left to go on by itself)
    assert h.status() == ms.RunState.CANCELED and effects == ["s1"]
    assert [s.name for s in h.steps()] == [s1.name]


def test_a_signal_sent_after_a_waits_timeout_goes_to_the_next_wait(make_app: Make) -> None:
    """No worker ran when the first wait's timeout passed; the signal sent after it is not
    that wait's (it was: the answer depended on whether a worker happened to be up)."""
    clock = ManualClock()
    app = make_app(clock=clock)

    @app.workflow
    def flow() -> list[Any]:
        return [ms.wait_for("go", timeout=1), ms.wait_for("go", timeout=5)]

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()  # suspended in the first wait
    clock.advance(2)
    app.signal(h.run_id, "go", "late")
    with app.worker() as w:
        w.run_until_idle()
    assert h.result(timeout=10) == [None, "late"]
