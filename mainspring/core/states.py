"""The run state machine.

Everything that decides whether a run may move from one state to another lives in this
file, and nowhere else: the engine validates its decisions here, the reducer validates
every event here, and replay relies on both agreeing.

Theory of operation
-------------------
A run starts ``scheduled``. Promotion (its time has come) makes it ``ready``; a worker's
lease makes it ``leased``; starting an attempt makes it ``running``. An attempt's result
then decides where it goes: ``completed``, ``failed``, ``suspended`` or ``retry_wait`` (and
back to ``ready`` after its backoff). A lease that expires puts a ``leased`` run back to
``ready``. ``canceled`` is reachable from every non-terminal state. The three terminal
states have no way out: a run that reached one is never dispatched again.

The transitions are data (``TRANSITIONS``: state -> set of states), so the table in the
contract, the docs and the code are one thing.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import InvalidTransition


class RunState(StrEnum):
    """The state of a run."""

    SCHEDULED = "scheduled"
    READY = "ready"
    LEASED = "leased"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


class AttemptResult(StrEnum):
    """How one attempt of a run ended."""

    SUCCESS = "success"
    RETRYABLE = "retryable"
    TERMINAL = "terminal"
    TIMEOUT = "timeout"
    SUSPENDED = "suspended"
    LOST = "lost"


S = RunState

TERMINAL: frozenset[RunState] = frozenset({S.COMPLETED, S.FAILED, S.CANCELED})

#: state -> the states it may move to. Everything else is an InvalidTransition.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    S.SCHEDULED: frozenset({S.READY, S.CANCELED}),
    S.READY: frozenset({S.LEASED, S.CANCELED}),
    S.LEASED: frozenset({S.READY, S.RUNNING, S.CANCELED}),
    S.RUNNING: frozenset({S.RETRY_WAIT, S.SUSPENDED, S.COMPLETED, S.FAILED, S.CANCELED}),
    S.RETRY_WAIT: frozenset({S.READY, S.FAILED, S.CANCELED}),
    S.SUSPENDED: frozenset({S.READY, S.CANCELED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
}


#: Attempt results that do not count toward ``max_attempts``.
UNCOUNTED_RESULTS: frozenset[AttemptResult] = frozenset(
    {AttemptResult.SUSPENDED, AttemptResult.LOST}
)


def can_transition(from_state: RunState, to_state: RunState) -> bool:
    return to_state in TRANSITIONS[from_state]


def check_transition(from_state: RunState, to_state: RunState, *, run_id: str = "?") -> None:
    """Raise InvalidTransition unless the table permits ``from_state -> to_state``."""
    if to_state not in TRANSITIONS[from_state]:
        allowed = ", ".join(sorted(TRANSITIONS[from_state])) or "nothing (terminal)"
        raise InvalidTransition(
            f"run {run_id} cannot move from {from_state.value!r} to {to_state.value!r}; "
            f"from {from_state.value!r} it may move to: {allowed}",
            from_state=from_state.value,
            to_state=to_state.value,
        )
