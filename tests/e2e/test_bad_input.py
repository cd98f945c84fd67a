"""Bad input gets a clear error and changes nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

import mainspring as ms


class NotJson:
    pass


@pytest.fixture
def job(app: ms.App) -> ms.TaskFunction:
    @app.task(name="jobs.job")
    def job(*args: object, **kwargs: object) -> None:
        return None

    return job


def _unchanged(app: ms.App, action: Callable[[], object], exc: type[BaseException]) -> str:
    before = app.log(limit=1_000_000)
    runs_before = app.runs(limit=1_000_000)
    with pytest.raises(exc) as info:
        action()
    assert isinstance(info.value, ms.MainspringError)
    assert str(info.value)  # says what was wrong
    assert app.log(limit=1_000_000) == before
    assert app.runs(limit=1_000_000) == runs_before
    return str(info.value)


def test_non_serializable_arguments(app: ms.App, job: ms.TaskFunction) -> None:
    job.submit(1)  # the store is not empty: nothing more must be written
    err = _unchanged(app, lambda: job.submit(NotJson()), ms.SerializationError)
    assert "serializ" in err.lower() or "json" in err.lower()
    _unchanged(app, lambda: job.submit(x={1, 2, object()}), ms.SerializationError)
    _unchanged(app, lambda: job.submit([1, NotJson()]), ms.SerializationError)
    _unchanged(app, lambda: job.repeat(count=2, every=1, args=(NotJson(),)), ms.SerializationError)
    _unchanged(
        app,
        lambda: job.schedule(cron="* * * * *", kwargs={"x": NotJson()}),
        ms.SerializationError,
    )
    _unchanged(app, lambda: app.submit("jobs.job", args=[NotJson()]), ms.SerializationError)


def test_non_serializable_return_value_does_not_complete_the_run(app: ms.App) -> None:
    @app.task
    def returns_junk() -> object:
        return NotJson()

    h = returns_junk.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    assert h.status() == ms.RunState.FAILED
    assert h.info().output is None


@pytest.mark.parametrize(
    "cron",
    ["not a cron", "* * *", "61 * * * *", "* * * * * * * *", "* 25 * * *", "", "* * 32 2 *"],
)
def test_invalid_cron(app: ms.App, job: ms.TaskFunction, cron: str) -> None:
    _unchanged(app, lambda: job.schedule(cron=cron), ms.InvalidSchedule)
    with pytest.raises(ValueError):
        job.schedule(cron=cron)


def test_valid_cron_shapes_are_accepted(app: ms.App, job: ms.TaskFunction) -> None:
    for cron in ("*/5 * * * *", "0 */5 * * * *", "0 0 12 * * * 2099"):
        t = job.schedule(cron=cron, max_occurrences=1)
        assert len(t.runs()) == 1


def test_invalid_schedule_options(app: ms.App, job: ms.TaskFunction) -> None:
    bad: list[Callable[[], object]] = [
        lambda: job.with_options(delay=-1).submit(),
        lambda: job.with_options(delay=dt.timedelta(seconds=-5)).submit(),
        lambda: job.with_options(delay=float("nan")).submit(),
        lambda: job.with_options(run_at=dt.datetime(2030, 1, 1)).submit(),  # naive
        lambda: job.with_options(delay=1, run_at=dt.datetime.now(dt.UTC)).submit(),
        lambda: job.repeat(count=0, every=1),
        lambda: job.repeat(count=3, every=-1),
        lambda: job.repeat(count=3, every=0),
        lambda: job.schedule(cron="* * * * *", tz="Mars/Olympus"),
        lambda: job.schedule(cron="* * * * *", misfire="sometimes"),
        lambda: job.schedule(cron="* * * * *", max_occurrences=0),
        lambda: job.with_options(priority="high").submit(),  # type: ignore[arg-type]
        lambda: job.with_options(queue=5).submit(),  # type: ignore[arg-type]
        lambda: job.with_options(queue="").submit(),
        lambda: job.with_options(concurrency_key=5).submit(),  # type: ignore[arg-type]
        lambda: app.runs(state="bogus"),
        lambda: app.submit("   "),
    ]
    for action in bad:
        _unchanged(app, action, ms.InvalidArgument)


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"concurrency_limit": 0},
        {"timeout": -1},
        {"timeout": 0},
        {"key_policy": "maybe"},
        {"max_lost": 0},
    ],
)
def test_invalid_task_options(app: ms.App, options: dict[str, object]) -> None:
    def declare() -> None:
        @app.task(name="bad.options", **options)  # type: ignore[arg-type]
        def f() -> None:
            return None

    _unchanged(app, declare, ms.InvalidArgument)
    with pytest.raises(ValueError):
        declare()


def test_invalid_app_options(tmp_path: object) -> None:
    with pytest.raises(ms.InvalidSchedule):
        ms.App(f"sqlite:///{tmp_path}/x.db", lease_seconds=-1)
    with pytest.raises(ms.InvalidSchedule):
        ms.App(f"sqlite:///{tmp_path}/x.db", lease_seconds=0)


def test_unknown_run_id(app: ms.App, job: ms.TaskFunction) -> None:
    job.submit()
    missing = "01900000-0000-7000-8000-000000000000"
    _unchanged(app, lambda: app.get_run(missing), ms.UnknownRun)
    _unchanged(app, lambda: app.run(missing), ms.UnknownRun)
    with pytest.raises(LookupError):
        app.get_run("not-even-a-uuid")


def test_an_unknown_keyword_anywhere_in_the_api_is_an_invalid_argument(app: ms.App) -> None:
    @app.task
    def f(x: int) -> None: ...

    before = app.log()
    calls = [
        lambda: f.with_options(bogus=1),
        lambda: app.task(bogus=1),
        lambda: app.workflow(bogus=1),
        lambda: app.step(bogus=1),
        lambda: f.repeat(2, 1, bogus=1),
        lambda: f.schedule("* * * * *", bogus=1),
        lambda: app.worker(bogus=1),
        lambda: app.runs(bogus=1),
        lambda: app.prune(bogus=1),
        lambda: app.tasks(active="no"),
        lambda: f.submit(1).result(1, 2, 3),
        lambda: ms.App(bogus=1),
    ]
    for call in calls:
        with pytest.raises(ms.InvalidArgument):
            call()
    assert [e.type for e in app.log()[len(before) :]] == [
        "task.created",
        "run.created",
        "run.state_changed",
    ]  # (only the submit of the handle's line)
