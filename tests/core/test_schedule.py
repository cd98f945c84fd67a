"""Schedule derivation: cron (5/6/7 fields, time zones, misfire), repeat and once."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

import mainspring as ms
from mainspring.core import schedule as sch
from mainspring.core.model import Policy
from mainspring.core.schedule import (
    cron_step,
    initial_occurrences,
    next_after,
    occurrences_between,
    validate_cron,
    validate_policy,
)

PARIS = ZoneInfo("Europe/Paris")


def ts(*args: int, tz: ZoneInfo | type[UTC] = UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[arg-type,misc]


def local(t: float, tz: ZoneInfo = PARIS) -> datetime:
    return datetime.fromtimestamp(t, tz)


T0 = ts(2030, 1, 1)  # a Tuesday, midnight UTC


def cron(expr: str, **kw: object) -> Policy:
    return Policy(kind="cron", cron=expr, **kw)  # type: ignore[arg-type]


def take(expr: str, after: float, n: int, tz: str = "UTC") -> list[float]:
    return occurrences_between(expr, tz, after, after + 10 * 366 * 86400, n)


# -- fields ---------------------------------------------------------------------------------
def test_five_fields_minutes() -> None:
    occ = take("*/15 * * * *", T0, 6)
    assert occ[0] == T0 + 900  # strictly after `after`
    assert [b - a for a, b in itertools.pairwise(occ)] == [900.0] * 5


def test_five_fields_hour_and_weekday() -> None:
    occ = take("30 8 * * mon-fri", T0, 10)
    days = [datetime.fromtimestamp(t, UTC) for t in occ]
    assert all((d.hour, d.minute, d.second) == (8, 30, 0) for d in days)
    assert all(d.weekday() < 5 for d in days)
    assert days[0].date().isoformat() == "2030-01-01"


def test_six_fields_lead_with_seconds() -> None:
    occ = take("*/10 * * * * *", T0, 7)
    assert [t - T0 for t in occ] == [10, 20, 30, 40, 50, 60, 70]
    occ = take("15 0 12 * * *", T0, 2)  # second 15, minute 0, hour 12
    assert [datetime.fromtimestamp(t, UTC).time().isoformat() for t in occ] == ["12:00:15"] * 2


def test_seven_fields_trail_with_year() -> None:
    occ = take("0 0 12 1 1 * 2031", T0, 5)
    assert occ == [ts(2031, 1, 1, 12)]
    assert next_after("0 0 12 1 1 * 2031", "UTC", occ[0]) is None
    occ = take("0 0 0 1 1 * 2031-2033", T0, 5)
    assert occ == [ts(2031, 1, 1), ts(2032, 1, 1), ts(2033, 1, 1)]


@pytest.mark.parametrize(
    "expr",
    ["0 0 12 1 1 * 2031", "0 0 0 1 1 * 2031-2033", "0 30 9 * * mon 2099", "0 0 12 29 2 * *"],
)
def test_seven_field_expressions_with_future_years_are_valid(expr: str) -> None:
    # regression: validation searched from 1970 with croniter's 50-year window and refused
    # every expression whose years all lie after 2019
    validate_cron(expr)
    validate_cron(expr, "Europe/Paris")
    assert next_after(expr, "UTC", T0) is not None


def test_leap_day_only_expression() -> None:
    occ = take("0 12 29 2 *", T0, 2)
    assert [datetime.fromtimestamp(t, UTC).date().isoformat() for t in occ] == [
        "2032-02-29",
        "2036-02-29",
    ]


def test_field_count_decides_meaning() -> None:
    # "0 12 * * *" is 12:00 daily; "0 0 12 * * *" (6 fields) is also 12:00:00 daily;
    # "5 0 12 * * *" fires at second 5, which a 5-field reading could never do.
    a = take("0 12 * * *", T0, 1)[0]
    b = take("0 0 12 * * *", T0, 1)[0]
    c = take("5 0 12 * * *", T0, 1)[0]
    assert a == b == ts(2030, 1, 1, 12)
    assert c == a + 5


# -- day fields (Vixie cron: OR unless either field starts with "*") ---------------------------
def test_step_from_star_in_day_of_month_ands_with_weekday() -> None:
    # regression: "*/10" counted as a restriction to OR with, so this ran on days 1, 11, 21
    # and 31 and on every Monday; it starts with "*", so a day must be both
    occ = take("0 0 */10 * MON", ts(2026, 1, 1), 12)
    days = [datetime.fromtimestamp(t, UTC) for t in occ]
    assert len(days) == 12
    assert all(d.weekday() == 0 and d.day in (1, 11, 21, 31) for d in days)
    assert days[0].date().isoformat() == "2026-05-11"
    assert [d.date() for d in days] == sorted(set(d.date() for d in days))


@pytest.mark.parametrize(
    ("expr", "first_days"),
    [
        # neither field starts with "*": a day matching either one
        ("0 0 1,15 * MON", ["2026-01-05", "2026-01-12", "2026-01-15", "2026-01-19"]),
        # one field starts with "*" (croniter alone would OR "*/1", a restriction to it)
        ("0 0 */1 * MON", ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"]),
        ("0 0 1 * */2", ["2026-02-01", "2026-03-01", "2026-08-01", "2026-09-01"]),
        ("0 0 0 */10 * MON", ["2026-05-11", "2026-06-01", "2026-08-31", "2026-09-21"]),
        ("0 0 0 */10 * MON 2026", ["2026-05-11", "2026-06-01", "2026-08-31", "2026-09-21"]),
        # "?" (no specific value) counts as "*"
        ("0 0 ? * MON", ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"]),
    ],
)
def test_day_fields_combine_as_in_vixie_cron(expr: str, first_days: list[str]) -> None:
    occ = take(expr, ts(2026, 1, 1), 4)
    assert [datetime.fromtimestamp(t, UTC).date().isoformat() for t in occ] == first_days


#: Expressions restricting both day fields (or one of them with a "*" in the other), in the
#: forms cron allows: steps, ranges, lists, names, 7 for Sunday (and L, the last day, which
#: both parsers read); at fixed times inside the zones' DST changes (01:00-03:00) and as
#: wildcard jobs; a few with six fields (leading seconds), which cronsim reads too.
CRONSIM_EXPRESSIONS = [
    "0 0 */10 * MON",
    "30 9 */10 * mon",
    "15 14 1-7 * FRI",
    "0 12 1,15 * MON-FRI",
    "0 6 13 * FRI",
    "0 0 */7 * SUN,WED",
    "0 8 */1 * MON",
    "0 8 1-31 * MON",
    "0 8 10-20/3 JAN,JUL SAT,SUN",
    "5 4 * */2 */3",
    "0 9 1 * */2",
    "0 0 29 2 MON",
    "0 0 31 * 5",
    "0 0 1 * 7",
    "0 8 * * MON",
    "0 8 1 * *",
    "30 2 */5 * SUN",
    "45 1 1-10 * */3",
    "0,30 1-3 15 * SAT",
    "* 2 1 * SUN",
    "*/20 2 */9 * TUE",
    "0 */6 2-6 * FRI-SAT",
    "*/30 * 1 * WED",
    "0 0 */2 * */2",
    "0 12 L * MON",
    # six fields (leading seconds)
    "30 0 0 */10 * MON",
    "0 15 14 1-7 * FRI",
    "*/20 0 9 1 * */2",
]
CRONSIM_ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]
#: Local start times, each shortly before one zone's DST change or two.
CRONSIM_STARTS = [
    datetime(2025, 1, 1),
    datetime(2025, 3, 8, 12),
    datetime(2025, 10, 4, 12, 7),
    datetime(2026, 4, 4, 3),
]
CRONSIM_COUNT = 50


def _offset_changes(day: date, tz: ZoneInfo) -> bool:
    start = datetime.combine(day, time(), tz)
    return start.utcoffset() != datetime.combine(day + timedelta(days=1), time(), tz).utcoffset()


def cronsim_pair(expr: str, tz: str, start: datetime) -> tuple[list[float], list[float]]:
    """Our next occurrences of ``expr`` after local ``start`` and cronsim's, as compared.

    Our occurrences_between and a chain of next_after must agree first. Then, for jobs
    cronsim follows in real time, the days on which the zone's offset changes are left out
    on both sides, as cronsim and we model them differently there:
    - for a wildcard job, a skipped hour's run falls at the jump here but not in cronsim;
    - cronsim steps such jobs' hours by 3600 seconds: across Lord Howe's half-hour changes
      it lands on :30 and misses the rest of that day's runs (``0 */6``'s 06:00, a 6-field
      job's 14:15);
    - 6-field expressions get no DST handling in cronsim (not Debian cron's syntax), while
      ours run fixed-time jobs once in a repeated hour, as with 5 fields.
    Fixed-time 5-field jobs are compared on every day, DST changes included.
    """
    zi = ZoneInfo(tz)
    aware = start.replace(tzinfo=zi)
    after = aware.timestamp()
    ours = occurrences_between(expr, tz, after, after + 40 * 366 * 86400, CRONSIM_COUNT)
    chain: list[float] = []
    t: float | None = after
    while len(chain) < CRONSIM_COUNT:
        t = next_after(expr, tz, t)
        if t is None:
            break
        chain.append(t)
    assert chain == ours
    theirs = [d.timestamp() for d in itertools.islice(CronSim(expr, aware), CRONSIM_COUNT)]
    fields = expr.split()
    minute, hour = fields[1:3] if len(fields) == 6 else fields[0:2]
    if len(fields) == 6 or minute.startswith("*") or hour.startswith("*"):
        horizon = min(ours[-1], theirs[-1])
        ours, theirs = (
            [t for t in occ if t <= horizon and not _offset_changes(local(t, zi).date(), zi)]
            for occ in (ours, theirs)
        )
    return ours, theirs


@pytest.mark.parametrize("expr", CRONSIM_EXPRESSIONS)
def test_day_fields_agree_with_cronsim(expr: str) -> None:
    compared = 0
    for tz, start in itertools.product(CRONSIM_ZONES, CRONSIM_STARTS):
        ours, theirs = cronsim_pair(expr, tz, start)
        compared += len(ours)
        zi = ZoneInfo(tz)
        assert [local(t, zi).isoformat() for t in ours] == [
            local(t, zi).isoformat() for t in theirs
        ], (tz, start)
    # the days left out around DST changes leave most occurrences compared
    assert compared >= len(CRONSIM_ZONES) * len(CRONSIM_STARTS) * CRONSIM_COUNT * 3 // 4


# -- time zones -------------------------------------------------------------------------------
def test_daily_local_time_survives_spring_forward() -> None:
    start = ts(2025, 3, 28, tz=PARIS)
    occ = take("0 9 * * *", start, 4, tz="Europe/Paris")
    assert [local(t).strftime("%m-%d %H:%M") for t in occ] == [
        "03-28 09:00",
        "03-29 09:00",
        "03-30 09:00",
        "03-31 09:00",
    ]
    gaps = [b - a for a, b in itertools.pairwise(occ)]
    assert gaps == [86400, 82800, 86400]  # the night of 29->30 March has 23 hours
    assert [local(t).utcoffset() for t in occ] == [timedelta(hours=h) for h in (1, 1, 2, 2)]


def test_daily_local_time_survives_fall_back() -> None:
    start = ts(2025, 10, 25, tz=PARIS)
    occ = take("0 9 * * *", start, 3, tz="Europe/Paris")
    assert [local(t).strftime("%m-%d %H:%M") for t in occ] == [
        "10-25 09:00",
        "10-26 09:00",
        "10-27 09:00",
    ]
    assert [b - a for a, b in itertools.pairwise(occ)] == [90000, 86400]


def test_nonexistent_local_time_fires_once_that_day() -> None:
    # 02:30 does not exist in Paris on 2025-03-30; the day still gets exactly one run
    start = ts(2025, 3, 29, 12, tz=PARIS)
    occ = take("30 2 * * *", start, 3, tz="Europe/Paris")
    days = [local(t).date().isoformat() for t in occ]
    assert days == ["2025-03-30", "2025-03-31", "2025-04-01"]
    assert local(occ[1]).strftime("%H:%M") == "02:30"


def test_fixed_time_in_the_repeated_hour_fires_once() -> None:
    # 02:30 comes twice in Paris on 2025-10-26 (clocks go back at 03:00): one run, the first
    start = ts(2025, 10, 25, 12, tz=PARIS)
    occ = take("30 2 * * *", start, 3, tz="Europe/Paris")
    assert [local(t).date().isoformat() for t in occ] == ["2025-10-26", "2025-10-27", "2025-10-28"]
    assert local(occ[0]).utcoffset() == timedelta(hours=2)  # the first pass (summer time)
    assert sch.next_after("30 2 * * *", "Europe/Paris", occ[0]) == occ[1]
    secs = take("0 30 2 * * *", start, 2, tz="Europe/Paris")  # six fields: the same rule
    assert secs == occ[:2]


def test_wildcard_jobs_follow_real_time_through_the_repeated_hour() -> None:
    # every half hour: the repeated hour has its four half hours, as the clock shows them
    start = ts(2025, 10, 26, 1, 45, tz=PARIS)
    occ = take("*/30 * * * *", start, 6, tz="Europe/Paris")
    assert [b - a for a, b in itertools.pairwise(occ)] == [1800] * 5
    assert [local(t).strftime("%H:%M%z") for t in occ] == [
        "02:00+0200",
        "02:30+0200",
        "02:00+0100",
        "02:30+0100",
        "03:00+0100",
        "03:30+0100",
    ]
    hourly = take("0 * * * *", start, 3, tz="Europe/Paris")
    assert [b - a for a, b in itertools.pairwise(hourly)] == [3600, 3600]
    minutes_of_two = take("* 2 * * *", ts(2025, 10, 26, 2, 58, tz=PARIS), 4, tz="Europe/Paris")
    assert [b - a for a, b in itertools.pairwise(minutes_of_two)] == [60, 60, 60]
    # a step from "*" is a wildcard too, as in Vixie cron: 02:00, 02:20, 02:40 twice
    steps = take("*/20 2 * * *", ts(2025, 10, 26, 1, 50, tz=PARIS), 6, tz="Europe/Paris")
    assert [local(t).strftime("%H:%M%z") for t in steps] == [
        "02:00+0200",
        "02:20+0200",
        "02:40+0200",
        "02:00+0100",
        "02:20+0100",
        "02:40+0100",
    ]


@pytest.mark.parametrize("misfire", sch.MISFIRE_POLICIES)
def test_cron_at_a_repeated_local_time_derives_one_run_a_day(misfire: str) -> None:
    p = cron("30 2 * * *", tz="Europe/Paris", misfire=misfire)
    start = ts(2025, 10, 24, tz=PARIS)
    wake = [start + h * 900 for h in range(1, 4 * 24 * 5)]  # every 15 min for 5 days
    derived, _ = simulate(p, start, wake)
    days = [local(t).date().isoformat() for t in derived]
    assert len(days) == len(set(days))
    assert "2025-10-26" in days


def test_same_expression_differs_by_zone() -> None:
    utc = take("0 9 * * *", T0, 1, tz="UTC")[0]
    paris = take("0 9 * * *", T0, 1, tz="Europe/Paris")[0]
    assert utc - paris == 3600  # Paris is UTC+1 in January


def test_unknown_zone_is_invalid_schedule() -> None:
    with pytest.raises(ms.InvalidSchedule, match="time zone"):
        validate_cron("* * * * *", "Mars/Olympus_Mons")
    with pytest.raises(ms.InvalidSchedule):
        validate_policy(cron("* * * * *", tz="Not/AZone"))


# -- invalid expressions ------------------------------------------------------------------
@pytest.mark.parametrize(
    "expr",
    [
        "",
        "   ",
        "* * * *",  # 4 fields
        "* * * * * * * *",  # 8 fields
        "61 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "a b c d e",
        "*/0 * * * *",
        "60 * * * * *",  # seconds out of range
        "0 0 25 * * *",  # hour 25 in the 6-field form
        "* * 31 2 *",  # 31 February never happens
        "0 0 0 1 1 * 3000",  # year beyond the cron range
        None,
        42,
    ],
)
def test_invalid_cron_raises_invalid_schedule(expr: object) -> None:
    with pytest.raises(ms.InvalidSchedule) as info:
        validate_cron(expr)  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, ms.MainspringError)
    assert "cron" in str(err)


@pytest.mark.parametrize(
    ("expr", "fields"),
    [
        ("0 0 30 2 *", "day-of-month and month"),  # 30 February
        ("0 0 31 4 *", "day-of-month and month"),  # 31 April
        ("0 0 31 2,4,6 *", "day-of-month and month"),
        ("0 0 30 2 */1", "day-of-month, month and day-of-week"),  # "*/1": AND, as a bare "*"
        ("0 0 0 30 2 * *", "day-of-month and month"),
        ("0 0 0 29 2 * 2030", "day-of-month, month and year"),  # not a leap year
        ("0 0 0 1 1 SUN 2030", None),  # OR: every Sunday of January 2030 matches
    ],
)
def test_impossible_date_is_our_error_not_croniters(expr: str, fields: str | None) -> None:
    if fields is None:
        validate_cron(expr)
        return
    with pytest.raises(ms.InvalidSchedule) as info:
        validate_cron(expr, "Europe/Paris")
    msg = str(info.value)
    assert msg == f"invalid cron expression {expr!r}: it never matches a date (check its {fields})"
    assert "failed" not in msg and "next date" not in msg  # croniter's CroniterBadDateError


@pytest.mark.parametrize(
    ("expr", "field"),
    [
        ("61 * * * *", "bad minute field '61' (expected 0-59)"),
        ("* * * * 8", "bad day-of-week field '8' (expected 0-7 or SUN-SAT)"),
        ("0 0 25 * * *", "bad hour field '25' (expected 0-23)"),
        ("0 0 0 1 1 * 3000", "bad year field '3000' (expected 1970-2099)"),
    ],
)
def test_unparsable_field_is_named_in_our_words(expr: str, field: str) -> None:
    with pytest.raises(ms.InvalidSchedule) as info:
        validate_cron(expr)
    assert str(info.value) == f"invalid cron expression {expr!r}: {field}"
    assert "not acceptable" not in str(info.value)  # croniter's CroniterBadCronError


@pytest.mark.parametrize(
    "policy",
    [
        Policy(kind="cron", cron="* * * * *", misfire="sometimes"),
        Policy(kind="cron", cron="* * * * *", max_occurrences=0),
        Policy(kind="cron", cron="* * * * *", max_occurrences=True),
        Policy(kind="cron", cron="nope"),
        Policy(kind="repeat", count=0, every=10.0),
        Policy(kind="repeat", count=None, every=10.0),
        Policy(kind="repeat", count=True, every=10.0),
        Policy(kind="repeat", count=3, every=0.0),
        Policy(kind="repeat", count=3, every=None),
        Policy(kind="weekly"),
    ],
)
def test_invalid_policies(policy: Policy) -> None:
    with pytest.raises(ms.InvalidSchedule):
        validate_policy(policy)


@pytest.mark.parametrize(
    "policy",
    [
        Policy(),
        Policy(kind="repeat", count=1, every=0.5),
        cron("*/5 * * * *", misfire="skip", max_occurrences=3),
        cron("0 */5 * * * *", misfire="coalesce", tz="Europe/Paris"),
        cron("0 0 0 1 1 * 2099"),
    ],
)
def test_valid_policies(policy: Policy) -> None:
    validate_policy(policy)


# -- initial derivation -----------------------------------------------------------------------
def test_once_derives_one_run_now_or_at_start() -> None:
    assert initial_occurrences(Policy(), 123.0) == [123.0]
    assert initial_occurrences(Policy(start_at=500.0), 123.0) == [500.0]


def test_repeat_derives_count_runs_every_interval() -> None:
    occ = initial_occurrences(Policy(kind="repeat", count=6, every=1800.0), T0)
    assert len(occ) == 6
    assert occ[0] == T0
    assert [b - a for a, b in itertools.pairwise(occ)] == [1800.0] * 5
    occ = initial_occurrences(Policy(kind="repeat", count=3, every=10.0, start_at=T0 + 60), T0)
    assert occ == [T0 + 60, T0 + 70, T0 + 80]


@given(count=st.integers(1, 200), every=st.floats(0.001, 1e6), start=st.floats(0, 4e9))
def test_repeat_derivation_property(count: int, every: float, start: float) -> None:
    occ = initial_occurrences(Policy(kind="repeat", count=count, every=every), start)
    assert len(occ) == count
    assert occ == sorted(occ)
    assert len(set(occ)) == count
    for i, t in enumerate(occ):
        assert t == pytest.approx(start + i * every)


def test_cron_first_occurrence_is_at_or_after_origin() -> None:
    p = cron("*/5 * * * *")
    assert initial_occurrences(p, T0) == [T0]  # exactly on an occurrence: that one
    assert initial_occurrences(p, T0 + 1) == [T0 + 300]
    assert initial_occurrences(cron("*/5 * * * *", start_at=T0 + 3600), T0) == [T0 + 3600]


def test_cron_with_no_future_occurrence_derives_nothing() -> None:
    assert initial_occurrences(cron("0 0 0 1 1 * 2020"), T0) == []


# -- misfire through cron_step -------------------------------------------------------------
EVERY5 = "*/5 * * * *"


def test_step_on_time_derives_the_next_occurrence() -> None:
    for misfire in sch.MISFIRE_POLICIES:
        step = cron_step(cron(EVERY5, misfire=misfire), 1, T0, T0)
        assert step.create == [T0 + 300]
        assert step.skip_overdue is False


def test_catch_up_derives_every_missed_occurrence() -> None:
    step = cron_step(cron(EVERY5, misfire="catch_up"), 1, T0, T0 + 1000)
    assert step.create == [T0 + 300, T0 + 600, T0 + 900, T0 + 1200]  # 3 missed, 1 ahead
    assert step.skip_overdue is False


def test_coalesce_derives_only_the_next_future_occurrence() -> None:
    step = cron_step(cron(EVERY5, misfire="coalesce"), 1, T0, T0 + 1000)
    assert step.create == [T0 + 1200]
    assert step.skip_overdue is False  # the overdue run stands for the missed ones


def test_skip_drops_missed_and_the_stale_overdue_one() -> None:
    step = cron_step(cron(EVERY5, misfire="skip"), 1, T0, T0 + 1000)
    assert step.create == [T0 + 1200]
    assert step.skip_overdue is True
    # by default, an occurrence more than a second late is dropped too
    assert cron_step(cron(EVERY5, misfire="skip"), 1, T0, T0 + 1.5).skip_overdue is True
    assert cron_step(cron(EVERY5, misfire="skip"), 1, T0, T0 + 0.5).skip_overdue is False
    # within the grace period the overdue occurrence still runs
    step = cron_step(cron(EVERY5, misfire="skip", misfire_grace=60.0), 1, T0, T0 + 30)
    assert step.create == [T0 + 300]
    assert step.skip_overdue is False
    # and so does a missed one within it: it is no later than the overdue one would be
    step = cron_step(cron(EVERY5, misfire="skip", misfire_grace=60.0), 1, T0, T0 + 930)
    assert step.create == [T0 + 900, T0 + 1200]
    assert step.skip_overdue is True


def test_max_occurrences_caps_a_step() -> None:
    p = cron(EVERY5, misfire="catch_up", max_occurrences=3)
    assert cron_step(p, 1, T0, T0 + 1000).create == [T0 + 300, T0 + 600]
    assert cron_step(p, 3, T0, T0 + 1000).create == []
    assert cron_step(p, 5, T0, T0 + 1000).create == []


def simulate(policy: Policy, start: float, wakeups: list[float]) -> tuple[list[float], list[float]]:
    """Drive cron_step as the engine does: derive when the cursor is due, at each wake-up.

    Returns (derived occurrences in order, overdue occurrences skipped).
    """
    derived = initial_occurrences(policy, start)
    skipped: list[float] = []
    for now in wakeups:
        for _ in range(100):
            cursor = max(derived)
            cap = policy.max_occurrences
            if cursor > now or (cap is not None and len(derived) >= cap):
                break
            step = cron_step(policy, len(derived), cursor, now)
            if step.skip_overdue:
                skipped.append(cursor)
            if not step.create:
                break
            assert step.create == sorted(step.create)
            assert step.create[0] > cursor  # never derives an occurrence twice
            derived.extend(step.create)
    return derived, skipped


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 4000), min_size=1, max_size=12),
    misfire=st.sampled_from(sch.MISFIRE_POLICIES),
    cap=st.none() | st.integers(1, 30),
)
def test_derivation_over_outages(gaps: list[int], misfire: str, cap: int | None) -> None:
    p = cron("*/5 * * * *", misfire=misfire, max_occurrences=cap)
    wakeups = []
    now = T0
    for g in gaps:
        now += g
        wakeups.append(now)
    derived, skipped = simulate(p, T0, wakeups)
    assert derived == sorted(derived)
    assert len(set(derived)) == len(derived)
    assert all((t - T0) % 300 == 0 for t in derived)  # only real occurrences
    if cap is not None:
        assert len(derived) <= cap
    every = [T0 + 300 * i for i in range(int((now - T0) // 300) + 2)]
    if cap is None:
        # one occurrence always waits in the future
        assert max(derived) > now
    if misfire == "catch_up":
        # nothing missed: exactly the occurrences up to the first one after `now`
        n = len(derived)
        assert derived == every[:n]
        if cap is None:
            assert derived == [t for t in every if t <= now] + [derived[-1]]
    else:
        assert set(skipped) <= set(derived)


def test_catch_up_after_a_long_outage_is_chunked_but_complete() -> None:
    p = cron("* * * * * *", misfire="catch_up")  # every second
    derived, _ = simulate(p, T0, [T0 + 3500])
    assert derived == [T0 + i for i in range(3502)]  # 0..3500 plus one ahead


@pytest.mark.parametrize("misfire", sch.MISFIRE_POLICIES)
def test_cron_in_paris_across_dst_never_duplicates(misfire: str) -> None:
    p = cron("0 9 * * *", tz="Europe/Paris", misfire=misfire)
    start = ts(2025, 3, 25, tz=PARIS)
    wake = [start + h * 3600 for h in range(1, 24 * 12)]
    derived, _ = simulate(p, start, wake)
    days = [local(t).date() for t in derived]
    assert len(days) == len(set(days))
    assert all(local(t).hour == 9 for t in derived)
