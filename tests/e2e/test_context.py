"""async def handlers and ms.context() inside and outside handlers."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pytest

import mainspring as ms

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _fields(ctx: ms.Context) -> dict[str, Any]:
    return {
        "run_id": ctx.run_id,
        "task_id": ctx.task_id,
        "task_name": ctx.task_name,
        "attempt_id": ctx.attempt_id,
        "attempt": ctx.attempt,
        "execution_id": ctx.execution_id,
        "correlation_id": ctx.correlation_id,
        "idempotency_key": ctx.idempotency_key,
        "cancelled": ctx.cancelled,
    }


def test_async_handler_runs_and_returns(app: ms.App) -> None:
    @app.task
    async def add(a: int, b: int = 0) -> dict[str, int]:
        await asyncio.sleep(0.01)
        return {"sum": a + b}

    handles = [add.submit(i, b=1) for i in range(5)]
    with app.worker(concurrency=3) as w:
        w.run_until_idle(timeout=10)
    assert [h.result(timeout=1) for h in handles] == [{"sum": i + 1} for i in range(5)]


def test_context_fields_inside_a_sync_handler(app: ms.App) -> None:
    seen: list[dict[str, Any]] = []

    @app.task(name="billing.charge", max_attempts=2, backoff=ms.Backoff.fixed(0.01))
    def charge(amount: int) -> str:
        ctx = ms.context()
        seen.append(_fields(ctx))
        ctx.heartbeat()  # renewing the lease from inside is allowed
        if ctx.attempt == 1:
            raise ms.Retry()
        return ctx.run_id

    h = charge.with_options(
        idempotency_key="order-17", execution_id="exec-1", correlation_id="corr-1"
    ).submit(5)
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    info = h.info()
    assert h.result(timeout=1) == h.run_id
    assert len(seen) == 2
    for n, fields in enumerate(seen, start=1):
        assert fields["run_id"] == h.run_id
        assert fields["task_id"] == h.task_id
        assert fields["task_name"] == "billing.charge" == info.task_name
        assert fields["attempt"] == n
        assert fields["attempt_id"] == info.attempts[n - 1].attempt_id
        assert fields["execution_id"] == "exec-1" == info.execution_id
        assert fields["correlation_id"] == "corr-1" == info.correlation_id
        assert fields["idempotency_key"] == "order-17" == info.idempotency_key
        assert fields["cancelled"] is False
    for value in (h.run_id, h.task_id, seen[0]["attempt_id"], seen[1]["attempt_id"]):
        assert UUID7.match(value), value


def test_context_inside_an_async_handler(app: ms.App) -> None:
    seen: list[dict[str, Any]] = []

    @app.task
    async def probe() -> None:
        await asyncio.sleep(0)
        seen.append(_fields(ms.context()))

    hs = [probe.with_options(execution_id=f"e{i}").submit() for i in range(3)]
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    by_run = {s["run_id"]: s for s in seen}
    assert set(by_run) == {h.run_id for h in hs}
    for i, h in enumerate(hs):
        assert by_run[h.run_id]["execution_id"] == f"e{i}"
        assert by_run[h.run_id]["attempt"] == 1


def test_context_outside_a_handler_raises_no_context(app: ms.App) -> None:
    with pytest.raises(ms.NoContext) as exc:
        ms.context()
    assert isinstance(exc.value, ms.MainspringError)
    assert str(exc.value)

    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            ms.context()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(5)
    assert len(errors) == 1 and isinstance(errors[0], ms.NoContext)

    @app.task
    def called_inline() -> None:
        ms.context()

    # calling the task function directly runs it inline, outside any worker
    with pytest.raises(ms.NoContext):
        called_inline()
