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
    info = h.info()
    assert info.output is None
    # classed like any failure: the store rejects the payload, and trying again would not help
    assert (info.failure_class, info.retry_class) == ("payload_rejected", "do_not_retry")
    [attempt] = info.attempts
    assert (attempt.failure_class, attempt.retry_class) == ("payload_rejected", "do_not_retry")
    finished = next(e for e in h.history() if e.type == "attempt.finished")
    assert finished.data["failure_class"] == "payload_rejected"


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
        lambda: job.with_options(queue=" ").submit(),
        lambda: app.pause(queue=" "),
        lambda: job.with_options(concurrency_key=5).submit(),  # type: ignore[arg-type]
        lambda: app.runs(state="bogus"),
        lambda: app.submit("   "),
        # times no datetime can show (a run written with one broke every reader of runs)
        lambda: job.with_options(run_at=_aware(1, 1, 1, 0, 0, 1)).submit(),
        lambda: job.with_options(run_at=_aware(9999, 12, 31, 23, 59, -1)).submit(),
        lambda: job.with_options(delay=1e15).submit(),
        lambda: job.with_options(deadline=1e15).submit(),
        lambda: job.with_options(deadline=_aware(1, 1, 1, 0, 0, 1)).submit(),
        lambda: job.with_options(run_at=_aware(9999, 12, 31, 23, 59, 0)).repeat(2, every=60),
        lambda: job.repeat(count=2, every=dt.timedelta(days=3_000_000)),
    ]
    for action in bad:
        _unchanged(app, action, ms.InvalidArgument)


def _aware(*fields: int) -> dt.datetime:
    """A datetime of these fields whose last one is its offset from UTC in hours."""
    *when, hours = fields
    return dt.datetime(*when, tzinfo=dt.timezone(dt.timedelta(hours=hours)))  # type: ignore[misc]


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
        # a Backoff built directly is checked as its constructors check
        {"backoff": ms.Backoff(kind="fixed", initial=-5.0)},
        {"backoff": ms.Backoff(kind="linear")},
        {"backoff": ms.Backoff(factor=0.5)},
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


def test_nul_characters_in_outputs_errors_and_arguments_are_stored(app: ms.App) -> None:
    """A NUL in a handler's output or error, or in a run's arguments, is stored like any
    character (PostgreSQL's text cannot hold one: the worker's turn was refused there, at
    every try, and with it every other result of that turn)."""

    @app.task(name="nul.echo")
    def echo(x: str) -> str:
        return x + "\x00!"

    @app.task(name="nul.fails", max_attempts=1)
    def fails() -> None:
        raise ValueError("bad \x00 value")

    plain = echo.submit("a")
    odd = echo.with_options(correlation_id="c\x00").submit("b\x00c")
    failed = fails.submit()
    with app.worker(concurrency=2) as w:
        w.run_until_idle(timeout=20)
    assert plain.result(timeout=5) == "a\x00!"
    assert odd.result(timeout=5) == "b\x00c\x00!"
    assert odd.info().correlation_id == "c\x00"
    info = failed.info()
    assert info.state == ms.RunState.FAILED
    assert info.error == "ValueError: bad \x00 value"


def test_a_nul_character_the_store_cannot_take_is_a_bad_argument(
    app: ms.App, job: ms.TaskFunction, store_kind: str
) -> None:
    """Where the store cannot hold a NUL in a key or a name (PostgreSQL), the command says
    so with ``InvalidArgument`` and writes nothing; a lookup by such an id finds nothing
    there is to find. SQLite takes them."""
    job.submit(1)
    cases: list[Callable[[], object]] = [
        lambda: job.with_options(idempotency_key="k\x00").submit(2),
        lambda: job.with_options(queue="q\x00").submit(3),
    ]
    for case in cases:
        if store_kind == "postgres":
            err = _unchanged(app, case, ms.InvalidArgument)
            assert "NUL" in err
        else:
            case()
    with pytest.raises((ms.InvalidArgument, ms.UnknownRun)):
        app.get_run("\x00")


def test_one_bad_value_among_concurrent_submits_fails_only_its_own(
    app: ms.App, job: ms.TaskFunction, store_kind: str
) -> None:
    """Submits from many threads share a commit; one the store refuses fails alone."""
    import threading

    if store_kind != "postgres":
        pytest.skip("SQLite takes a NUL in a key")
    errors: dict[int, BaseException] = {}
    barrier = threading.Barrier(8)

    def submit(i: int) -> None:
        barrier.wait()
        try:
            key = f"k{i}\x00" if i == 3 else f"k{i}"
            job.with_options(idempotency_key=key).submit(i)
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list(errors) == [3]
    assert isinstance(errors[3], ms.InvalidArgument)
    assert len(app.runs(limit=100)) == 7


def test_bad_worker_options_are_refused_before_anything_starts(
    app: ms.App, job: ms.TaskFunction
) -> None:
    """A str of queues would be read as its letters, an empty list would serve nothing."""
    for kwargs in (
        {"queues": "default"},
        {"queues": []},
        {"queues": ["default", ""]},
        {"queues": [1]},
        {"grace_seconds": -5},
        {"grace_seconds": "5"},
        {"on_attempt": 5},
    ):
        with pytest.raises(ms.InvalidArgument), app.worker(**kwargs):  # type: ignore[arg-type]
            pytest.fail(f"a worker started with {kwargs}")
        with pytest.raises(ms.InvalidArgument):
            app.run_worker(**kwargs)  # type: ignore[arg-type]
    assert app.workers() == []
    h = job.submit(1)
    with app.worker(queues=("default",)) as w:  # any sequence of names
        w.run_until_idle(timeout=10)
    assert h.status() == ms.RunState.COMPLETED


def test_lookups_and_arguments_of_the_wrong_type_are_bad_arguments(
    app: ms.App, job: ms.TaskFunction
) -> None:
    h = job.submit(1)
    calls: list[Callable[[], object]] = [
        lambda: app.get_task(None),  # type: ignore[arg-type]
        lambda: app.task_handle(None),  # type: ignore[arg-type]
        lambda: app.get_run(5),  # type: ignore[arg-type]
        lambda: app.why(None),  # type: ignore[arg-type]
        lambda: app.runs(task=5),  # type: ignore[arg-type]
        lambda: app.log(run_id=5),  # type: ignore[arg-type]
        lambda: app.log(since=2**63),
        lambda: h.result(timeout="x"),  # type: ignore[arg-type]
        lambda: h.result(timeout=float("nan")),  # (it waited for ever)
        lambda: h.result(timeout=-1),  # (a TimeoutError at once)
    ]
    for call in calls:
        with pytest.raises(ms.InvalidArgument):
            call()
    for submit in (
        lambda: app.submit("jobs.job", args=5),  # type: ignore[arg-type]
        lambda: app.submit("jobs.job", kwargs=[1]),  # type: ignore[arg-type]
        lambda: job.repeat(count=2, every=1, args=5),  # type: ignore[arg-type]
        lambda: job.schedule(cron="* * * * *", kwargs={1: 2}),  # type: ignore[dict-item]
    ):
        _unchanged(app, submit, ms.InvalidArgument)
    assert app.log(since=2**63 - 1) == []  # the largest seq: nothing after it


def test_nan_and_infinite_floats_are_refused_not_stored_as_null(
    app: ms.App, job: ms.TaskFunction
) -> None:
    """JSON has no NaN: msgspec writes it as null, so the handler would see None."""
    job.submit(1)
    for value in (float("nan"), [1.0, float("inf")], {"x": (float("-inf"),)}):
        err = _unchanged(app, lambda v=value: job.submit(v), ms.SerializationError)
        assert "NaN or infinite" in err
    assert job.submit([1.5, None]).info().state  # finite floats and None are fine
