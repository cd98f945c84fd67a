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

from croniter import CroniterBadDateError, croniter

from .clock import representable
from .errors import InvalidSchedule
from .model import Policy, Task

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


#: Field names by field count, with the values each accepts (for error messages).
_FIELDS = {
    5: ("minute", "hour", "day-of-month", "month", "day-of-week"),
    6: ("second", "minute", "hour", "day-of-month", "month", "day-of-week"),
    7: ("second", "minute", "hour", "day-of-month", "month", "day-of-week", "year"),
}
_FIELD_VALUES = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT",
    "year": "1970-2099",
}


def _day_fields(expr: str) -> tuple[str, str]:
    """The day-of-month and day-of-week fields of a 5, 6 or 7 field expression."""
    fields = expr.split()
    return (fields[3], fields[5]) if len(fields) >= 6 else (fields[2], fields[4])


def _days_or(expr: str) -> bool:
    """Does a day matching either day field match (OR), rather than only one matching both?

    Vixie cron (and Debian's cron, cronie) ORs the two day fields unless one of them starts
    with ``*``: ``0 0 */10 * MON`` runs on Mondays that fall on day 1, 11, 21 or 31, while
    ``0 0 1,15 * MON`` runs on the 1st, the 15th and every Monday. croniter's own rule only
    looks for a bare ``*``, so the choice is made here. ``?`` (no specific value, in the
    Quartz dialect croniter accepts) counts as ``*``."""
    dom, dow = _day_fields(expr)
    return not (dom.startswith(("*", "?")) or dow.startswith(("*", "?")))


def _iter(expr: str, after: float, tz: str) -> croniter:
    fields = expr.split()
    start = datetime.fromtimestamp(after, tz=zone(tz))
    return croniter(
        expr,
        start,
        day_or=_days_or(expr),
        second_at_beginning=len(fields) >= 6,
        max_years_between_matches=_MAX_YEARS_BETWEEN_MATCHES,
    )


def _parse_error(expr: str) -> str:
    """Why croniter refuses ``expr``, in our words: the first field it refuses on its own.

    croniter's messages quote its internals; each field is tried alone, the others ``*``."""
    fields = expr.split()
    for i, name in enumerate(_FIELDS[len(fields)]):
        probe = ["*"] * len(fields)
        probe[i] = fields[i]
        try:
            croniter(" ".join(probe), second_at_beginning=len(fields) >= 6)
        except Exception:
            return f"bad {name} field {fields[i]!r} (expected {_FIELD_VALUES[name]})"
    return "its fields do not combine into a valid expression"


def _never_matches(expr: str) -> str:
    """Why an expression croniter parses has no occurrence: the fields that can cause it."""
    fields = expr.split()
    check = ["day-of-month", "month"]
    if not _days_or(expr) and _day_fields(expr)[1] not in ("*", "?"):
        check.append("day-of-week")  # both day fields must match: a weekday can rule a day out
    if len(fields) == 7 and fields[6] != "*":
        check.append("year")
    listed = ", ".join(check[:-1]) + " and " + check[-1]
    return f"it never matches a date (check its {listed})"


def validate_cron(expr: str, tz: str = "UTC") -> None:
    """Raise InvalidSchedule unless ``expr`` is a 5, 6 (leading seconds) or 7 (trailing
    year) field cron expression with at least one occurrence since 1970.

    The messages are ours: croniter's ("failed to find next date" ...) name its internals,
    not what to fix in the expression."""
    if not isinstance(expr, str) or len(expr.split()) not in (5, 6, 7):
        raise InvalidSchedule(
            f"invalid cron expression {expr!r}: expected 5 fields (minute hour day month "
            f"weekday), 6 (leading seconds) or 7 (leading seconds, trailing year)"
        )
    zone(tz)
    try:
        it = _iter(expr, 0.0, tz)
    except Exception:
        raise InvalidSchedule(f"invalid cron expression {expr!r}: {_parse_error(expr)}") from None
    try:
        it.get_next(float)
    except CroniterBadDateError:  # no date in the search window, e.g. 30 February
        raise InvalidSchedule(f"invalid cron expression {expr!r}: {_never_matches(expr)}") from None
    except Exception:
        raise InvalidSchedule(
            f"invalid cron expression {expr!r}: its occurrences cannot be computed"
        ) from None


def _runs_in_real_time(expr: str) -> bool:
    """Is ``expr`` a "wildcard" job, in cron's words: its minute or hour starts with ``*``
    (``*``, ``*/20``)?

    When clocks go back, the wall times of the repeated hour come twice. As in cron (Vixie
    and its descendants), a job at a fixed time runs once, at the first of them, while a
    wildcard job (every minute, every 20 minutes, every hour ...) runs at each: it follows
    real time."""
    fields = expr.split()
    minute, hour = fields[1:3] if len(fields) >= 6 else fields[0:2]
    return minute.startswith("*") or hour.startswith("*")


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
        representable(
            start + (policy.count - 1) * policy.every,
            f"the last of {policy.count} runs every {policy.every:g} s",
        )
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
    occurrence stands for them), ``skip`` derives only those still within
    ``misfire_grace`` of now and, when the overdue occurrence is older than that, cancels
    it. Then the next future occurrence is
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
        if policy.misfire == "skip":
            skip_overdue = now - cursor > policy.misfire_grace
            # a missed occurrence still within the grace runs, as the overdue one would
            create.extend(t for t in missed if now - t <= policy.misfire_grace)
    if len(missed) < MAX_CATCH_UP_PER_STEP or policy.misfire != "catch_up":
        nxt = next_after(
            policy.cron, policy.tz, max(last, now) if policy.misfire != "catch_up" else last
        )
        if nxt is not None:
            create.append(nxt)
    if remaining is not None:
        create = create[:remaining]
    return CronStep(create, skip_overdue)


def cron_due_at(task: Task) -> float | None:
    """When the scheduler must look at a cron task next: its latest derived occurrence
    (once that is due, the next is derived); None when it derives nothing more
    (``derives_more``). Stores index it to find due cron tasks: a task kept due with
    nothing left to derive would be found due at every turn, for good."""
    if task.policy.kind != "cron" or not derives_more(task):
        return None
    return task.cursor


def derives_more(task: Task) -> bool:
    """Whether ``task`` may still derive a run: not canceled, and its policy not spent. A
    once task derives its run when submitted; a repeat task stops at its count; a cron
    task at ``max_occurrences``, or after the last occurrence its expression has (one that
    names years)."""
    p = task.policy
    if task.canceled or p.kind == "once":
        return False
    if p.kind == "repeat":
        return task.derived < (p.count or 0)
    if p.max_occurrences is not None and task.derived >= p.max_occurrences:
        return False
    assert p.cron is not None
    return task.cursor is None or next_after(p.cron, p.tz, task.cursor) is not None
