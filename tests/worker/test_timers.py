"""The worker loop's decisions (``worker/timers.py``), without threads, stores or waiting:
a fake monotonic clock and a ManualClock stand in for time."""

from __future__ import annotations

import pytest

from mainspring.core.clock import ManualClock
from mainspring.worker import timers as T
from mainspring.worker.timers import Timers

MONO = 1000.0  # the fake monotonic clock's start
NOW = 1_800_000_000.0  # the engine clock's start


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = MONO

    def __call__(self) -> float:
        return self.t


def make(
    lease_seconds: float = 30.0, clock_driven: bool = False
) -> tuple[Timers, FakeMonotonic, ManualClock]:
    mono, clock = FakeMonotonic(), ManualClock(NOW)
    return Timers(lease_seconds, clock, clock_driven=clock_driven, monotonic=mono), mono, clock


def settle(t: Timers, want: int = 8) -> None:
    """The first turn: housekeeping, nothing leased, nothing due."""
    assert t.turn_wanted(t.monotonic(), 0, want)
    t.turned(want, 0, None)


# -- turns -------------------------------------------------------------------------------------
def test_the_first_turn_housekeeps_and_looks_for_work() -> None:
    t, mono, _ = make()
    assert t.turn_wanted(mono(), finished=0, want=8)
    assert t.housekeep and t.need_cycle


def test_a_quiet_turn_is_skipped_until_housekeeping_is_due_again() -> None:
    t, mono, _ = make()
    settle(t)
    assert not t.housekeep and not t.need_cycle
    assert not t.turn_wanted(mono(), 0, 8)
    mono.t += T.HOUSEKEEPING_SECONDS - 0.001
    assert not t.turn_wanted(mono(), 0, 8)
    mono.t += 0.001
    assert t.turn_wanted(mono(), 0, 8) and t.housekeep


def test_finished_results_always_want_a_turn() -> None:
    t, mono, _ = make()
    settle(t)
    assert t.turn_wanted(mono(), finished=1, want=0)


def test_a_turn_that_filled_every_slot_it_asked_for_turns_again_at_once() -> None:
    t, mono, _ = make()
    assert t.turn_wanted(mono(), 0, 4)
    t.turned(want=4, leased=4, next_due=None)
    assert t.must_turn(pending=False, free=4)  # more runs may be ready
    t.turned(want=4, leased=3, next_due=None)
    assert not t.must_turn(pending=False, free=4)  # it took all there were
    assert t.must_turn(pending=True, free=0)  # results wait to be recorded


def test_slots_freed_by_a_lost_or_canceled_run_are_filled_in_the_next_turn() -> None:
    t, _, _ = make()
    t.turned(want=0, leased=0, next_due=None)  # every slot was busy
    assert not t.must_turn(pending=False, free=1)
    t.slots_freed()
    assert t.must_turn(pending=False, free=1)


def test_no_new_work_while_stopping() -> None:
    t, mono, _ = make()
    t.turned(want=4, leased=4, next_due=None)
    t.stop(mono(), grace_seconds=5.0)
    assert not t.must_turn(pending=False, free=4)


# -- due times -----------------------------------------------------------------------------------
def test_housekeeping_learns_the_next_due_time_and_a_retry_can_only_bring_it_closer() -> None:
    t, mono, _ = make()
    t.turn_wanted(mono(), 0, 8)
    t.turned(8, 0, next_due=NOW + 60)
    assert t.next_due == NOW + 60
    t.turned(8, 0, next_due=NOW + 90)  # a retry decided in a turn without housekeeping
    assert t.next_due == NOW + 60
    t.turned(8, 0, next_due=NOW + 5)
    assert t.next_due == NOW + 5
    t.woke(timer=False, store=True, stop_asked=False)  # a commit elsewhere: ask the store
    assert t.refresh_due and t.turn_wanted(mono(), 0, 0)
    t.turned(0, 0, next_due=None)  # the store has nothing due: that replaces what we knew
    assert t.next_due is None and not t.refresh_due


def test_on_a_real_time_clock_the_loop_sleeps_until_the_next_due_time() -> None:
    t, _, clock = make(clock_driven=False)
    settle(t)
    t.next_due = NOW + 0.3
    assert t.sleep_for(heartbeat=False, busy=False, deadline=None) == pytest.approx(0.3)
    clock.advance(0.3)  # (a real-time clock gets there by itself)
    assert t.sleep_for(heartbeat=False, busy=False, deadline=None) == T.DUE_MARGIN_SECONDS


def test_on_a_clock_moved_by_hand_a_future_due_time_sets_no_timer() -> None:
    t, _, clock = make(clock_driven=True)
    settle(t)
    t.next_due = NOW + 0.3
    # only an advance reaches it, and an advance wakes the loop: sleep as if nothing were due
    assert t.sleep_for(heartbeat=False, busy=False, deadline=None) == T.POLL_SECONDS
    clock.advance(0.3)
    # one already reached (a retry with no delay) is looked at now, not at the next advance
    assert t.sleep_for(heartbeat=False, busy=False, deadline=None) == T.DUE_MARGIN_SECONDS


# -- the clock moved by hand -------------------------------------------------------------------------
def test_a_clock_move_housekeeps_and_looks_for_work_at_once() -> None:
    t, mono, clock = make(clock_driven=True)
    settle(t)
    assert not t.turn_wanted(mono(), 0, 8)
    clock.advance(5)
    assert t.clock_moved() == NOW + 5
    assert t.housekeep and t.need_cycle
    assert t.turn_wanted(mono(), 0, 8)


def test_the_worker_is_caught_up_once_a_housekeeping_turn_after_the_move_committed() -> None:
    t, mono, clock = make(clock_driven=True)
    settle(t)
    assert t.caught_up is None
    clock.advance(5)
    t.clock_moved()
    assert t.caught_up is None  # not before its turn
    t.turn_wanted(mono(), 0, 8)
    t.turn_failed()  # the store refused the turn: still not caught up
    assert t.caught_up is None and t.housekeep
    t.turned(8, 0, None)
    assert t.caught_up == NOW + 5


def test_a_clock_move_of_a_renewal_period_renews_the_leases() -> None:
    t, mono, clock = make(lease_seconds=30.0, clock_driven=True)  # renewals every 10 s
    settle(t)
    clock.advance(6)
    t.clock_moved()
    assert not t.renew_due(mono(), heartbeat=False)
    clock.advance(4)  # 10 s since the worker last renewed (it registered at NOW)
    t.clock_moved()
    assert t.renew_due(mono(), heartbeat=False)
    t.renewing()
    t.renewed()
    assert t.renewed_at == NOW + 10
    assert not t.renew_due(mono(), heartbeat=False)
    clock.advance(9.5)
    t.clock_moved()
    assert not t.renew_due(mono(), heartbeat=False)


def test_a_real_time_clock_never_renews_for_a_clock_move() -> None:
    t, mono, clock = make(lease_seconds=30.0, clock_driven=False)
    clock.advance(3600)
    t.clock_moved()
    assert t.renewed_at is None
    assert not t.renew_due(mono(), heartbeat=False)


# -- renewals and heartbeats ----------------------------------------------------------------------
def test_renewals_come_every_third_of_the_lease_in_real_time() -> None:
    t, mono, _ = make(lease_seconds=3.0)
    assert t.renew_every == 1.0
    assert not t.renew_due(mono(), heartbeat=False)
    mono.t += 1.0
    assert t.renew_due(mono(), heartbeat=False)
    t.renewing()
    t.renewed()
    assert t.next_renew == mono() + 1.0
    assert not t.renew_due(mono(), heartbeat=False)


def test_heartbeats_renew_at_once_but_no_closer_than_the_gap() -> None:
    t, mono, _ = make(lease_seconds=3.0)  # gap: a tenth of the renewal period
    assert t.heartbeat_gap == pytest.approx(0.1)
    assert t.renew_due(mono(), heartbeat=True)  # the first one: at once
    t.renewing()
    t.renewed()
    mono.t = MONO + 0.04
    assert not t.renew_due(mono(), heartbeat=True)
    assert t.sleep_for(heartbeat=True, busy=False, deadline=None) == pytest.approx(0.06)
    mono.t = MONO + 0.1
    assert t.renew_due(mono(), heartbeat=True)


def test_lease_periods_never_make_renewals_closer_than_a_floor() -> None:
    t, _, _ = make(lease_seconds=0.01)
    assert t.renew_every == T.MIN_RENEW_SECONDS


# -- sleeping --------------------------------------------------------------------------------------
def test_an_idle_worker_sleeps_until_the_poll_or_its_next_renewal() -> None:
    t, _, _ = make(lease_seconds=30.0)
    settle(t)
    assert t.sleep_for(heartbeat=False, busy=False, deadline=None) == T.POLL_SECONDS
    t, _, _ = make(lease_seconds=1.5)
    settle(t)
    assert t.sleep_for(heartbeat=False, busy=False, deadline=None) == pytest.approx(0.5)


def test_a_busy_worker_wakes_for_housekeeping_and_attempt_deadlines() -> None:
    t, mono, _ = make()
    settle(t)
    assert t.sleep_for(heartbeat=False, busy=True, deadline=None) == pytest.approx(
        T.HOUSEKEEPING_SECONDS
    )
    assert t.sleep_for(heartbeat=False, busy=True, deadline=mono() + 0.02) == pytest.approx(0.02)
    assert t.sleep_for(heartbeat=False, busy=True, deadline=mono() - 1) == 0.0


def test_a_stopping_worker_looks_at_its_handlers_often_until_the_grace_is_over() -> None:
    t, mono, _ = make()
    settle(t)
    t.stop(mono(), grace_seconds=5.0)
    t.stop(mono() + 3, grace_seconds=5.0)  # asked again: the deadline stays
    assert t.stopping and t.stop_deadline == MONO + 5.0
    assert t.sleep_for(heartbeat=False, busy=True, deadline=None) == T.STOP_POLL_SECONDS
    assert not t.grace_over(mono() + 4.999)
    assert t.grace_over(mono() + 5.0)


def test_what_woke_the_loop_decides_the_next_turn() -> None:
    t, _, _ = make()
    settle(t)
    t.woke(timer=False, store=False, stop_asked=False)  # its own pipe: nothing owed
    assert not (t.housekeep or t.need_cycle or t.refresh_due)
    t.woke(timer=False, store=True, stop_asked=False)
    assert t.need_cycle and t.refresh_due and not t.housekeep
    settle(t)
    t.woke(timer=True, store=False, stop_asked=False)
    assert t.housekeep and t.need_cycle
    t.woke(timer=True, store=False, stop_asked=True)
    assert not t.need_cycle


# -- store errors --------------------------------------------------------------------------------------
def test_a_failed_turn_backs_off_doubling_and_is_tried_again_once() -> None:
    t, _, _ = make()
    assert [t.turn_failed() for _ in range(8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert t.must_turn(pending=False, free=0)
    assert not t.must_turn(pending=False, free=0)  # once: the loop does not spin
    t.turned(0, 0, None)
    assert t.backoff == 0.0
    assert t.turn_failed() == 0.05
