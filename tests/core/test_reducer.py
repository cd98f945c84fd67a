"""The reducer: validates every event before it mutates, and replay is deterministic."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

import mainspring as ms
from mainspring.core import events as E
from mainspring.core.errors import ReplayError
from mainspring.core.model import Event, Policy, StepRecord, TaskOptions, step_key
from mainspring.core.reducer import State, apply, replay

S = ms.RunState
NOW = 1_800_000_000.0
enc = msgspec.json.Encoder()


def fingerprint(st: State) -> bytes:
    """Everything apply may change, as bytes."""
    return enc.encode(
        {
            "tasks": st.tasks,
            "runs": st.runs,
            "definitions": st.definitions,
            "paused": st.paused,
            "last_seq": st.last_seq,
            "dirty": [
                sorted(st.dirty_tasks),
                sorted(st.dirty_runs),
                sorted(st.dirty_definitions),
                st.dirty_engine,
            ],
        }
    )


class Log:
    """Builds a consistent event sequence, applying each event as it goes."""

    def __init__(self) -> None:
        self.state = State()
        self.events: list[Event] = []
        self.seq = 0
        self.t = NOW

    def add(self, ev: Event) -> Event:
        self.seq += 1
        self.t += 1
        ev.seq = self.seq
        apply(self.state, ev)
        self.events.append(ev)
        return ev

    def task(self, task_id: str = "task-1", **opts: Any) -> str:
        self.add(
            E.event(
                E.TASK_CREATED,
                self.t,
                task_id=task_id,
                correlation_id="corr",
                execution_id="exec",
                data={
                    "name": "send",
                    "args": [1],
                    "kwargs": {"b": 2},
                    "policy": msgspec.to_builtins(Policy()),
                    "options": msgspec.to_builtins(TaskOptions(**opts)),
                    "idempotency_key": None,
                    "concurrency_key": opts.get("concurrency_key"),
                },
            )
        )
        return task_id

    def run(self, task_id: str = "task-1", run_id: str = "run-1", key: str | None = None) -> str:
        self.add(
            E.event(
                E.RUN_CREATED,
                self.t,
                task_id=task_id,
                run_id=run_id,
                correlation_id="corr",
                execution_id="exec",
                data={"state": "scheduled", "scheduled_at": self.t, "concurrency_key": key},
            )
        )
        return run_id

    def change(self, run_id: str, to: S, reason: str = "test", **extra: Any) -> None:
        self.add(E.state_changed(self.state.runs[run_id], to.value, self.t, reason, **extra))

    def lease(self, run_id: str, owner: str = "w1") -> None:
        self.change(run_id, S.LEASED)
        run = self.state.runs[run_id]
        self.add(E.run_event(E.LEASE_ACQUIRED, run, self.t, owner=owner, expires_at=self.t + 30))

    def start(self, run_id: str, attempt_id: str) -> None:
        self.change(run_id, S.RUNNING)
        run = self.state.runs[run_id]
        self.add(
            E.run_event(E.ATTEMPT_STARTED, run, self.t, attempt_id, number=len(run.attempts) + 1)
        )

    def finish(self, run_id: str, attempt_id: str, result: str, **data: Any) -> None:
        run = self.state.runs[run_id]
        self.add(
            E.run_event(
                E.ATTEMPT_FINISHED,
                run,
                self.t,
                attempt_id,
                result=result,
                error=data.get("error"),
                output=data.get("output"),
            )
        )

    def release(self, run_id: str, owner: str = "w1", kind: str = E.LEASE_RELEASED) -> None:
        self.add(E.run_event(kind, self.state.runs[run_id], self.t, owner=owner))


def running_log(key: str | None = None) -> Log:
    log = Log()
    log.task(max_attempts=3, concurrency_key=key)
    log.run(key=key)
    log.change("run-1", S.READY, "due")
    log.lease("run-1")
    log.start("run-1", "att-1")
    return log


def assert_rejected(st: State, ev: Event, exc: type[Exception] = ReplayError) -> None:
    before = fingerprint(st)
    with pytest.raises(exc):
        apply(st, ev)
    assert fingerprint(st) == before, "a rejected event changed the state"


def run_ev(st: State, type: str, attempt_id: str | None = None, **data: Any) -> Event:
    ev = E.run_event(type, st.runs["run-1"], NOW + 1000, attempt_id, **data)
    ev.seq = 999
    return ev


# -- the happy path -------------------------------------------------------------------------
def test_a_full_lifecycle() -> None:
    log = running_log()
    log.finish("run-1", "att-1", "retryable", error="boom")
    log.release("run-1")
    log.change("run-1", S.RETRY_WAIT, "retryable", due_at=NOW + 100)
    log.change("run-1", S.READY, "retry")
    log.lease("run-1", owner="w2")
    log.start("run-1", "att-2")
    log.finish("run-1", "att-2", "success", output={"ok": True})
    log.release("run-1", owner="w2")
    log.change("run-1", S.COMPLETED, "success")
    run = log.state.runs["run-1"]
    assert run.state == S.COMPLETED
    assert [a.number for a in run.attempts] == [1, 2]
    assert [a.result for a in run.attempts] == ["retryable", "success"]
    assert run.output == {"ok": True}
    assert run.error == "boom"
    assert run.due_at == NOW + 100
    assert run.lease_owner is None
    assert run.execution_id == "exec"
    assert run.correlation_id == "corr"
    assert log.state.last_seq == log.seq
    assert log.state.tasks["task-1"].derived == 1


# -- run.state_changed -------------------------------------------------------------------------
def test_state_changed_with_wrong_from_is_rejected() -> None:
    log = Log()
    log.task()
    log.run()
    st = log.state
    ev = run_ev(st, E.RUN_STATE_CHANGED, **{"from": "ready", "to": "leased", "reason": "x"})
    assert_rejected(st, ev)
    assert st.runs["run-1"].state == S.SCHEDULED


@pytest.mark.parametrize(
    "to", ["leased", "running", "completed", "failed", "retry_wait", "suspended"]
)
def test_state_changed_outside_the_table_is_rejected(to: str) -> None:
    log = Log()
    log.task()
    log.run()
    ev = run_ev(log.state, E.RUN_STATE_CHANGED, **{"from": "scheduled", "to": to, "reason": "x"})
    assert_rejected(log.state, ev, ms.InvalidTransition)


def test_terminal_run_accepts_no_state_change() -> None:
    log = Log()
    log.task()
    log.run()
    log.change("run-1", S.CANCELED)
    for to in S:
        ev = run_ev(
            log.state, E.RUN_STATE_CHANGED, **{"from": "canceled", "to": to.value, "reason": "x"}
        )
        assert_rejected(log.state, ev, ms.InvalidTransition)


def test_leaving_running_with_an_open_attempt_is_rejected() -> None:
    log = running_log()
    log.release("run-1")
    ev = run_ev(
        log.state, E.RUN_STATE_CHANGED, **{"from": "running", "to": "completed", "reason": "x"}
    )
    assert_rejected(log.state, ev)


def test_leaving_running_while_holding_the_lease_is_rejected() -> None:
    log = running_log()
    log.finish("run-1", "att-1", "success")
    ev = run_ev(
        log.state, E.RUN_STATE_CHANGED, **{"from": "running", "to": "completed", "reason": "x"}
    )
    assert_rejected(log.state, ev)


def test_state_change_of_unknown_run_is_rejected() -> None:
    log = Log()
    log.task()
    ev = Event(
        type=E.RUN_STATE_CHANGED,
        at=NOW,
        event_id="e",
        run_id="nope",
        data={"from": "scheduled", "to": "ready", "reason": "x"},
    )
    assert_rejected(log.state, ev)


# -- attempts -----------------------------------------------------------------------------------
def test_attempt_finished_for_a_non_open_attempt_is_rejected() -> None:
    log = running_log()
    st = log.state
    assert_rejected(st, run_ev(st, E.ATTEMPT_FINISHED, "att-other", result="success"))
    log.finish("run-1", "att-1", "retryable")
    # already closed: finishing it again is rejected
    assert_rejected(st, run_ev(st, E.ATTEMPT_FINISHED, "att-1", result="success"))


def test_attempt_finished_when_not_running_is_rejected() -> None:
    log = Log()
    log.task()
    log.run()
    log.change("run-1", S.READY)
    assert_rejected(log.state, run_ev(log.state, E.ATTEMPT_FINISHED, "att-1", result="success"))


def test_attempt_finished_with_unknown_result_is_rejected() -> None:
    log = running_log()
    assert_rejected(
        log.state, run_ev(log.state, E.ATTEMPT_FINISHED, "att-1", result="maybe"), ReplayError
    )


def test_attempt_started_twice_is_rejected() -> None:
    log = running_log()
    ev = run_ev(log.state, E.ATTEMPT_STARTED, "att-2", number=2)
    assert_rejected(log.state, ev)


def test_attempt_started_with_wrong_number_is_rejected() -> None:
    log = Log()
    log.task()
    log.run()
    log.change("run-1", S.READY)
    log.lease("run-1")
    log.change("run-1", S.RUNNING)
    assert_rejected(log.state, run_ev(log.state, E.ATTEMPT_STARTED, "att-1", number=2))
    assert_rejected(log.state, run_ev(log.state, E.ATTEMPT_STARTED, None, number=1))


def test_attempt_started_outside_running_is_rejected() -> None:
    log = Log()
    log.task()
    log.run()
    log.change("run-1", S.READY)
    log.lease("run-1")
    assert_rejected(log.state, run_ev(log.state, E.ATTEMPT_STARTED, "att-1", number=1))


# -- leases -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [E.LEASE_RENEWED, E.LEASE_EXPIRED, E.LEASE_RELEASED])
def test_lease_events_with_wrong_owner_are_rejected(kind: str) -> None:
    log = running_log()
    data: dict[str, Any] = {"owner": "intruder"}
    if kind == E.LEASE_RENEWED:
        data["expires_at"] = NOW + 10_000
    assert_rejected(log.state, run_ev(log.state, kind, **data))
    assert log.state.runs["run-1"].lease_owner == "w1"


@pytest.mark.parametrize("kind", [E.LEASE_RENEWED, E.LEASE_EXPIRED, E.LEASE_RELEASED])
def test_lease_events_without_a_lease_are_rejected(kind: str) -> None:
    log = Log()
    log.task()
    log.run()
    data: dict[str, Any] = {"owner": "w1", "expires_at": NOW + 10_000}
    assert_rejected(log.state, run_ev(log.state, kind, **data))


def test_lease_acquired_twice_is_rejected() -> None:
    log = running_log()
    ev = run_ev(log.state, E.LEASE_ACQUIRED, owner="w2", expires_at=NOW + 10_000)
    assert_rejected(log.state, ev)


def test_lease_acquired_for_a_ready_run_is_rejected() -> None:
    log = Log()
    log.task()
    log.run()
    log.change("run-1", S.READY)
    ev = run_ev(log.state, E.LEASE_ACQUIRED, owner="w1", expires_at=NOW + 10_000)
    assert_rejected(log.state, ev)


def test_lease_renewal_cannot_move_backwards() -> None:
    log = running_log()
    exp = log.state.runs["run-1"].lease_expires_at
    assert exp is not None
    assert_rejected(log.state, run_ev(log.state, E.LEASE_RENEWED, owner="w1", expires_at=exp - 1))
    apply(log.state, run_ev(log.state, E.LEASE_RENEWED, owner="w1", expires_at=exp + 5))
    assert log.state.runs["run-1"].lease_expires_at == exp + 5


def test_lease_expired_clears_the_lease() -> None:
    log = running_log()
    log.release("run-1", kind=E.LEASE_EXPIRED)
    run = log.state.runs["run-1"]
    assert run.lease_owner is None
    assert run.lease_expires_at is None


# -- engine flag, tasks ------------------------------------------------------------------------
def test_double_pause_and_resume_when_running_are_rejected() -> None:
    st = State()
    assert_rejected(st, E.event(E.ENGINE_RESUMED, NOW))
    apply(st, E.event(E.ENGINE_PAUSED, NOW))
    assert st.paused is True
    assert_rejected(st, E.event(E.ENGINE_PAUSED, NOW))
    apply(st, E.event(E.ENGINE_RESUMED, NOW))
    assert st.paused is False


def test_duplicate_task_and_run_are_rejected() -> None:
    log = Log()
    log.task()
    log.run()
    dup_task = copy.deepcopy(log.events[0])
    dup_run = copy.deepcopy(log.events[1])
    assert_rejected(log.state, dup_task)
    assert_rejected(log.state, dup_run)


def test_run_of_unknown_task_is_rejected() -> None:
    ev = E.event(E.RUN_CREATED, NOW, task_id="ghost", run_id="r", data={"scheduled_at": NOW})
    assert_rejected(State(), ev)


def test_run_created_in_another_state_is_rejected() -> None:
    log = Log()
    log.task()
    ev = E.event(
        E.RUN_CREATED,
        NOW,
        task_id="task-1",
        run_id="r",
        data={"scheduled_at": NOW, "state": "ready"},
    )
    assert_rejected(log.state, ev)


def test_task_canceled_twice_is_rejected() -> None:
    log = Log()
    log.task()
    log.add(E.event(E.TASK_CANCELED, NOW, task_id="task-1"))
    assert log.state.tasks["task-1"].canceled
    assert_rejected(log.state, E.event(E.TASK_CANCELED, NOW, task_id="task-1"))


def test_unknown_event_type_is_rejected() -> None:
    assert_rejected(State(), E.event("run.teleported", NOW))


# -- concurrency keys ----------------------------------------------------------------------
def test_key_is_held_while_leased_and_released_at_the_end() -> None:
    log = running_log(key="k")
    run = log.state.runs["run-1"]
    assert run.holds_key
    log.finish("run-1", "att-1", "retryable")
    log.release("run-1")
    log.change("run-1", S.RETRY_WAIT, due_at=NOW)
    assert run.holds_key  # key_policy hold (the default)
    log.change("run-1", S.CANCELED)
    assert not run.holds_key


def test_release_key_policy_drops_the_key_while_waiting() -> None:
    log = Log()
    log.task(key_policy="release", concurrency_key="k")
    log.run(key="k")
    log.change("run-1", S.READY)
    log.lease("run-1")
    log.start("run-1", "att-1")
    log.finish("run-1", "att-1", "suspended")
    log.release("run-1")
    log.change("run-1", S.SUSPENDED)
    assert not log.state.runs["run-1"].holds_key


# -- replay -------------------------------------------------------------------------------------
def long_log() -> Log:
    log = running_log(key="k")
    log.finish("run-1", "att-1", "timeout", error="slow")
    log.release("run-1")
    log.change("run-1", S.RETRY_WAIT, due_at=NOW + 5)
    log.change("run-1", S.READY, "retry")
    log.lease("run-1", "w2")
    log.start("run-1", "att-2")
    log.release("run-1", "w2", kind=E.LEASE_EXPIRED)
    log.finish("run-1", "att-2", "lost")
    log.change("run-1", S.RETRY_WAIT, "lost", due_at=NOW + 6)
    log.task("task-2")
    log.run("task-2", "run-2")
    log.change("run-2", S.CANCELED)
    log.add(E.event(E.ENGINE_PAUSED, NOW))
    log.add(E.event(E.TASK_DEFINED, NOW, data={"name": "send", "options": {"max_attempts": 3}}))
    return log


def test_replay_reproduces_the_live_state() -> None:
    log = long_log()
    live = log.state
    live.clear_dirty()
    again = replay(copy.deepcopy(log.events))
    assert fingerprint(again) == fingerprint(live)
    assert again.last_seq == log.seq
    assert again.paused is True
    assert again.definitions == {"send": {"max_attempts": 3}}


def test_replay_through_an_encoded_log() -> None:
    """What a store persists (JSON) replays to the same state as the live objects."""
    log = long_log()
    wire = msgspec.json.encode(log.events)
    decoded = msgspec.json.decode(wire, type=list[Event])
    a, b = replay(log.events), replay(decoded)
    assert fingerprint(a) == fingerprint(b)


def test_replay_of_a_prefix_then_the_rest() -> None:
    log = long_log()
    half = len(log.events) // 2
    st = replay(log.events[:half])
    st = replay(log.events[half:], st)
    assert fingerprint(st) == fingerprint(replay(log.events))


def test_replay_stops_at_a_bad_event() -> None:
    log = long_log()
    events = list(log.events)
    events.insert(3, copy.deepcopy(events[2]))  # a duplicate state change
    with pytest.raises((ReplayError, ms.InvalidTransition)):
        replay(events)


def test_apply_records_what_it_touched() -> None:
    log = running_log()
    st = log.state
    st.clear_dirty()
    log.finish("run-1", "att-1", "success")
    assert st.dirty_runs == {"run-1"}
    assert st.dirty_tasks == set()
    assert not st.dirty_engine


def _step(number: int, name: str, state: str) -> StepRecord:
    return StepRecord(
        step_id=step_key("run-1", number),
        run_id="run-1",
        number=number,
        name=name,
        state=state,
        error=None if state == "completed" else "KeyError: 'x'",
        waits_before=None if state == "completed" else 0,
    )


def test_a_step_failed_for_good_may_be_recorded_again_but_a_completed_one_may_not() -> None:
    log = running_log()
    run = log.state.runs["run-1"]
    log.add(E.step_ended(run, log.t, _step(1, "fetch", "failed")))
    (failed,) = log.state.kind("steps").values()
    assert (failed.state, failed.waits_before) == ("failed", 0)
    log.add(E.step_ended(run, log.t, _step(1, "fetch", "completed")))  # a later attempt's run
    (done,) = log.state.kind("steps").values()
    assert (done.state, done.waits_before) == ("completed", None)
    assert_rejected(log.state, E.step_ended(run, log.t, _step(1, "fetch", "completed")))
    assert_rejected(log.state, E.step_ended(run, log.t, _step(1, "fetch", "failed")))
    log.add(E.step_ended(run, log.t, _step(2, "send", "failed")))
    # another step at a failed step's number is a divergence, not a new try of it
    assert_rejected(log.state, E.step_ended(run, log.t, _step(2, "other", "completed")))
    assert replay(log.events).kind("steps") == log.state.kind("steps")
