"""Per-attempt timeouts for sync and async handlers."""

from __future__ import annotations

import asyncio
import threading
import time

import mainspring as ms

from .helpers import attempt_results, wait_for


def test_sync_handler_that_overruns_is_recorded_as_timeout_and_its_result_discarded(
    app: ms.App,
) -> None:
    release = threading.Event()
    returned = threading.Event()

    @app.task(timeout=0.3)
    def stubborn() -> str:
        release.wait(30)  # never polls ms.context().cancelled
        returned.set()
        return "too late"

    h = stubborn.submit()
    try:
        with app.worker() as w:
            wait_for(lambda: h.status().terminal, 10, "the run to end")
            # the timeout is enforced while the handler is still running
            assert not returned.is_set()
            release.set()
            assert returned.wait(5)
            w.run_until_idle(timeout=5)
    finally:
        release.set()
    info = h.info()
    assert info.state == ms.RunState.FAILED
    assert attempt_results(h) == [ms.AttemptResult.TIMEOUT]
    assert info.output is None  # the late return value was discarded
    assert info.attempts[0].error is not None and "timeout" in info.attempts[0].error.lower()


def test_polling_handler_sees_cancelled_on_timeout(app: ms.App) -> None:
    observed: dict[int, float] = {}  # attempt -> when (wall clock) it saw ctx.cancelled

    @app.task(timeout=0.3, max_attempts=2, backoff=ms.Backoff.fixed(0.01))
    def polite() -> str:
        ctx = ms.context()
        start = time.monotonic()
        assert not ctx.cancelled
        while time.monotonic() - start < 30:
            if ctx.cancelled:
                observed[ctx.attempt] = time.time()
                return "stopped"
            time.sleep(0.01)
        return "ran to the end"

    h = polite.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=30)
    # two attempts, both timed out, both counted
    assert attempt_results(h) == [ms.AttemptResult.TIMEOUT, ms.AttemptResult.TIMEOUT]
    assert h.status() == ms.RunState.FAILED
    # the abandoned handler notices on its next poll, a moment after the attempt was recorded
    wait_for(lambda: len(observed) == 2, 10, "the second attempt to see ctx.cancelled")
    # ... and not before its timeout ran out (counted from the attempt's start, as stored)
    for attempt in h.info().attempts:
        assert observed[attempt.number] >= attempt.started_at.timestamp() + 0.3, observed
    assert h.info().output is None


def test_async_handler_timeout(app: ms.App) -> None:
    cancelled = threading.Event()

    @app.task(timeout=0.2)
    async def slow_async() -> str:
        try:
            await asyncio.sleep(60)  # ended by its timeout, or run_until_idle gives up first
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "too late"

    h = slow_async.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=30)
    assert attempt_results(h) == [ms.AttemptResult.TIMEOUT]
    assert h.status() == ms.RunState.FAILED
    assert h.info().output is None
    assert cancelled.wait(5)  # the coroutine itself was interrupted


def test_handler_within_its_timeout_succeeds(app: ms.App) -> None:
    @app.task(timeout=30)  # far more than the handler can take, however slow the machine
    def quick() -> int:
        time.sleep(0.05)
        return 7

    h = quick.submit()
    with app.worker() as w:
        w.run_until_idle(timeout=30)
    assert h.result(timeout=1) == 7
    assert attempt_results(h) == [ms.AttemptResult.SUCCESS]
