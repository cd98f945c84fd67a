"""Schedule derivation: which occurrences a task's policy implies, and when.

``once`` derives one run; ``repeat`` derives exactly ``count`` runs at
``start + i * every``; ``cron`` derives occurrences of a cron expression in a time zone,
one ahead of time, and the engine tops it up as they come due (see ``cron_step``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .errors import InvalidSchedule
from .model import Policy

MISFIRE_POLICIES = ("catch_up", "skip", "coalesce")
#: At most this many missed occurrences are derived in one step (catch_up after a long outage).
MAX_CATCH_UP_PER_STEP = 1000
#: How far croniter searches for a next occurrence. Its default (50 years) made validation,
#: which searches from 1970, refuse every 7-field expression naming a year after 2019.
_MAX_YEARS_BETWEEN_MATCHES = 150


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidSchedule(
            f"unknown time zone {tz!r}; use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None


def _iter(expr: str, after: float, tz: str) -> croniter:
    fields = expr.split()
    start = datetime.fromtimestamp(after, tz=zone(tz))
    return croniter(
        expr,
        start,
        second_at_beginning=len(fields) >= 6,
        max_years_between_matches=_MAX_YEARS_BETWEEN_MATCHES,
    )


def validate_cron(expr: str, tz: str = "UTC") -> None:
    """Raise InvalidSchedule unless ``expr`` is a 5, 6 (leading seconds) or 7 (trailing
    year) field cron expression with at least one future occurrence."""
    if not isinstance(expr, str) or len(expr.split()) not in (5, 6, 7):
        raise InvalidSchedule(
            f"invalid cron expression {expr!r}: expected 5 fields (minute hour day month "
            f"weekday), 6 (leading seconds) or 7 (leading seconds, trailing year)"
        )
    zone(tz)
    try:
        _iter(expr, 0.0, tz).get_next(float)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidSchedule(f"invalid cron expression {expr!r}: {exc}") from None
    except Exception as exc:  # croniter's CroniterBadDateError and friends
        raise InvalidSchedule(f"invalid cron expression {expr!r}: {exc}") from None


def _runs_in_real_time(expr: str) -> bool:
    """Does ``expr`` have ``*`` as its minute or hour (a "wildcard" job, in cron's words)?

    When clocks go back, the wall times of the repeated hour come twice. As in cron (Vixie
    and its descendants), a job at a fixed time runs once, at the first of them, while a
    wildcard job (every minute, every hour ...) runs at each: it follows real time."""
    fields = expr.split()
    minute, hour = fields[1:3] if len(fields) >= 6 else fields[0:2]
    return minute == "*" or hour == "*"


def _occurrences(expr: str, tz: str, after: float) -> Iterator[float]:
    """Occurrences strictly after ``after``, in order, with fixed-time jobs' second pass
    over a repeated hour left out (see ``_runs_in_real_time``)."""
    try:
        it = _iter(expr, after, tz)
        zi = zone(tz)
    except Exception:  # (validated on submission: not expected here)
        return
    every_pass = _runs_in_real_time(expr)
    while True:
        try:
            t = float(it.get_next(float))
        except Exception:  # no further occurrence (a year in the past, Feb 30 ...)
            return
        if every_pass or not datetime.fromtimestamp(t, tz=zi).fold:
            yield t


def next_after(expr: str, tz: str, after: float) -> float | None:
    """The first occurrence strictly after ``after`` (epoch seconds), or None if none."""
    return next(_occurrences(expr, tz, after), None)


def occurrences_between(expr: str, tz: str, after: float, until: float, limit: int) -> list[float]:
    """Occurrences in ``(after, until]``, at most ``limit`` of them."""
    out: list[float] = []
    for t in _occurrences(expr, tz, after):
        if t > until or len(out) >= limit:
            break
        out.append(t)
    return out


def validate_policy(policy: Policy) -> None:
    if policy.kind == "repeat":
        if isinstance(policy.count, bool) or not isinstance(policy.count, int) or policy.count < 1:
            raise InvalidSchedule(f"repeat count must be an int >= 1, got {policy.count!r}")
        if policy.every is None or policy.every <= 0:
            raise InvalidSchedule(f"repeat every must be > 0 seconds, got {policy.every!r}")
    elif policy.kind == "cron":
        assert policy.cron is not None
        validate_cron(policy.cron, policy.tz)
        if policy.misfire not in MISFIRE_POLICIES:
            raise InvalidSchedule(
                f"misfire must be one of {', '.join(MISFIRE_POLICIES)}, got {policy.misfire!r}"
            )
        mo = policy.max_occurrences
        if mo is not None and (isinstance(mo, bool) or not isinstance(mo, int) or mo < 1):
            raise InvalidSchedule(f"max_occurrences must be an int >= 1 or None, got {mo!r}")
    elif policy.kind != "once":
        raise InvalidSchedule(f"unknown run policy {policy.kind!r}")


def initial_occurrences(policy: Policy, now: float) -> list[float]:
    """The occurrences derived when the task is submitted."""
    start = policy.start_at if policy.start_at is not None else now
    if policy.kind == "once":
        return [start]
    if policy.kind == "repeat":
        assert policy.count is not None and policy.every is not None
        return [start + i * policy.every for i in range(policy.count)]
    assert policy.cron is not None
    # The first occurrence at or after the origin.
    first = next_after(policy.cron, policy.tz, start - 1e-6)
    return [] if first is None else [first]


class CronStep(NamedTuple):
    create: list[float]  # occurrences to derive now (scheduled_at), in order
    skip_overdue: bool  # cancel the already-derived overdue occurrence (misfire=skip)


def cron_step(policy: Policy, derived: int, cursor: float, now: float) -> CronStep:
    """What to derive once the latest derived occurrence (``cursor``) has come due.

    Occurrences between the cursor and ``now`` were missed (nothing derived them while
    they came due). ``catch_up`` derives them all, ``coalesce`` derives none (the overdue
    occurrence stands for them), ``skip`` derives none and, when the overdue occurrence
    is older than ``misfire_grace``, cancels it too. Then the next future occurrence is
    derived, so one occurrence is always waiting. ``max_occurrences`` caps the total.
    """
    assert policy.cron is not None
    remaining = None if policy.max_occurrences is None else policy.max_occurrences - derived
    if remaining is not None and remaining <= 0:
        return CronStep([], False)
    missed = occurrences_between(policy.cron, policy.tz, cursor, now, MAX_CATCH_UP_PER_STEP)
    create: list[float] = []
    skip_overdue = False
    if policy.misfire == "catch_up":
        create.extend(missed)
        last = missed[-1] if missed else cursor
    else:
        last = missed[-1] if missed else cursor
        if policy.misfire == "skip" and now - cursor > policy.misfire_grace:
            skip_overdue = True
    if len(missed) < MAX_CATCH_UP_PER_STEP or policy.misfire != "catch_up":
        nxt = next_after(
            policy.cron, policy.tz, max(last, now) if policy.misfire != "catch_up" else last
        )
        if nxt is not None:
            create.append(nxt)
    if remaining is not None:
        create = create[:remaining]
    return CronStep(create, skip_overdue)
