"""The run state machine: the transition table is the contract's table, nothing more."""

from __future__ import annotations

import itertools
from enum import StrEnum

import pytest

import mainspring as ms
from mainspring.core import states
from mainspring.core.states import TERMINAL, TRANSITIONS, can_transition, check_transition

S = ms.RunState

# The transition table as published (docs/api.md), copied by hand: a change to either side must be deliberate.
CONTRACT_TABLE: dict[str, set[str]] = {
    "scheduled": {"ready", "canceled"},
    "ready": {"leased", "canceled"},
    "leased": {"ready", "running", "canceled"},
    "running": {"retry_wait", "suspended", "completed", "failed", "canceled"},
    "retry_wait": {"ready", "failed", "canceled"},
    "suspended": {"ready", "canceled"},
    "completed": set(),
    "failed": set(),
    "canceled": set(),
}

ALL_PAIRS = list(itertools.product(list(S), list(S)))


def test_run_state_values_are_the_contracts() -> None:
    assert issubclass(S, StrEnum)
    assert [s.value for s in S] == [
        "scheduled",
        "ready",
        "leased",
        "running",
        "retry_wait",
        "suspended",
        "completed",
        "failed",
        "canceled",
    ]
    assert S("retry_wait") is S.RETRY_WAIT
    assert S.RUNNING == "running"


def test_attempt_result_values_are_the_contracts() -> None:
    assert issubclass(ms.AttemptResult, StrEnum)
    assert {r.value for r in ms.AttemptResult} == {
        "success",
        "retryable",
        "terminal",
        "timeout",
        "suspended",
        "lost",
    }


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(S)
    assert len(ALL_PAIRS) == 81


@pytest.mark.parametrize(
    ("frm", "to"), ALL_PAIRS, ids=[f"{a.value}->{b.value}" for a, b in ALL_PAIRS]
)
def test_pair_matches_contract(frm: ms.RunState, to: ms.RunState) -> None:
    allowed = to.value in CONTRACT_TABLE[frm.value]
    assert can_transition(frm, to) is allowed
    assert (to in TRANSITIONS[frm]) is allowed
    if allowed:
        check_transition(frm, to)  # does not raise
    else:
        with pytest.raises(ms.InvalidTransition) as info:
            check_transition(frm, to, run_id="r-123")
        err = info.value
        assert isinstance(err, ms.MainspringError)
        assert err.from_state == frm.value
        assert err.to_state == to.value
        msg = str(err)
        assert repr(frm.value) in msg
        assert repr(to.value) in msg
        assert "r-123" in msg


def test_table_equals_contract_as_a_whole() -> None:
    assert {k.value: {v.value for v in vs} for k, vs in TRANSITIONS.items()} == CONTRACT_TABLE


def test_terminal_states() -> None:
    assert {s.value for s in TERMINAL} == {"completed", "failed", "canceled"}
    for s in S:
        assert s.terminal is (s in TERMINAL)
        if s in TERMINAL:
            assert TRANSITIONS[s] == frozenset()
            assert not any(can_transition(s, t) for t in S)
        else:
            # canceled is reachable from every non-terminal state
            assert S.CANCELED in TRANSITIONS[s]


def test_terminal_error_says_nothing_is_allowed() -> None:
    with pytest.raises(ms.InvalidTransition, match="terminal"):
        check_transition(S.COMPLETED, S.READY)


def test_error_lists_the_allowed_targets() -> None:
    with pytest.raises(ms.InvalidTransition) as info:
        check_transition(S.SCHEDULED, S.RUNNING)
    assert "canceled" in str(info.value)
    assert "ready" in str(info.value)


def test_no_self_loops() -> None:
    for s in S:
        assert not can_transition(s, s)


def test_uncounted_results() -> None:
    assert {ms.AttemptResult.SUSPENDED, ms.AttemptResult.LOST} == states.UNCOUNTED_RESULTS


def test_every_state_is_reachable_from_scheduled() -> None:
    seen = {S.SCHEDULED}
    todo = [S.SCHEDULED]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(S)
