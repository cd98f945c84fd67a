"""The retry decision by failure class, end to end on both stores: retrying classes retry,
classes that need a reconfiguration or an operator suspend the run until it is resumed,
do_not_retry and permanent rejections fail it at once; the classes are recorded on
attempts, the attempt.finished event and the failed run."""

from __future__ import annotations

from collections.abc import Callable

import mainspring as ms

Make = Callable[..., ms.App]


class Unavailable(Exception):
    failure_class = "adapter_unavailable"


def test_classes_decide_retry_suspend_and_fail(make_app: Make) -> None:
    app = make_app()
    tries: dict[str, int] = {}

    def count(name: str) -> int:
        tries[name] = tries.get(name, 0) + 1
        return tries[name]

    @app.task(max_attempts=3, backoff=ms.Backoff.fixed(0))
    def flaky() -> str:
        if count("flaky") < 3:
            raise ConnectionError("reset")
        return "ok"

    @app.task(max_attempts=5)
    def rejected() -> None:
        count("rejected")
        raise ms.PreconditionFailed("receipt-exists")

    @app.task(max_attempts=5)
    def invalid() -> None:
        count("invalid")
        raise ms.Fail("bad input", failure_class="invalid_request")

    @app.task(max_attempts=5)
    def needs_config() -> str:
        if count("needs_config") == 1:
            raise Unavailable("the adapter is down")
        return "configured"

    hs = {f.name.rsplit(".", 1)[1]: f.submit() for f in (flaky, rejected, invalid, needs_config)}
    with app.worker() as w:
        w.run_until_idle()
        assert hs["flaky"].result() == "ok"
        assert tries["rejected"] == 1 and tries["invalid"] == 1  # failed at once
        info = hs["needs_config"].info()
        assert info.state == ms.RunState.SUSPENDED
        assert app.why(info.run_id).reasons[0].data.get("reason") == "retry_after_reconfigure"
        assert hs["needs_config"].resume()
        w.run_until_idle()
    assert hs["needs_config"].result() == "configured"
    r = app.get_run(hs["rejected"].run_id)
    assert (r.state, r.failure_class, r.retry_class) == ("failed", "state_conflict", "do_not_retry")
    r = app.get_run(hs["invalid"].run_id)
    assert (r.failure_class, r.retry_class) == ("invalid_request", "do_not_retry")
    flaky_info = hs["flaky"].info()
    assert [(a.failure_class, a.retry_class) for a in flaky_info.attempts] == [
        ("transport_error", "safe_retry"),
        ("transport_error", "safe_retry"),
        (None, None),
    ]
    assert flaky_info.failure_class is None  # (only a failed run carries them)
    finished = [e.data for e in hs["flaky"].history() if e.type == "attempt.finished"]
    assert finished[0]["failure_class"] == "transport_error"


def test_retry_on_and_never_retry_options(make_app: Make) -> None:
    app = make_app()
    calls: list[str] = []

    @app.task(max_attempts=3, backoff=ms.Backoff.fixed(0), never_retry=(KeyError,))
    def never() -> None:
        calls.append("never")
        raise KeyError("x")

    @app.task(max_attempts=2, backoff=ms.Backoff.fixed(0), retry_on=(Unavailable,))
    def retried() -> None:
        calls.append("retried")
        raise Unavailable("still down")

    h1, h2 = never.submit(), retried.submit()
    with app.worker() as w:
        w.run_until_idle()
    assert calls.count("never") == 1 and calls.count("retried") == 2
    assert h1.status() == h2.status() == ms.RunState.FAILED


def test_a_workflow_step_retries_only_what_the_classifier_retries(make_app: Make) -> None:
    app = make_app()
    calls: list[str] = []

    @app.step(max_attempts=3, backoff=ms.Backoff.fixed(0))
    def step() -> None:
        calls.append("step")
        raise ms.PreconditionFailed("origin-committed")

    @app.workflow
    def flow() -> str:
        try:
            step()
        except ms.PreconditionFailed as exc:
            return exc.precondition
        return "no"

    h = flow.submit()
    with app.worker() as w:
        w.run_until_idle()
    assert h.result() == "origin-committed" and calls == ["step"]
