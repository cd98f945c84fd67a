"""``ms.context()``: what a running handler can know about its run."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from ..core.errors import NoContext
from ..core.model import TaskOptions

_current: ContextVar[Context | None] = ContextVar("mainspring_context", default=None)


class Context:
    """The run a handler is executing. Get it with ``ms.context()`` inside a handler."""

    def __init__(
        self,
        *,
        run_id: str,
        task_id: str,
        task_name: str,
        attempt_id: str,
        attempt: int,
        execution_id: str | None,
        correlation_id: str | None,
        idempotency_key: str | None,
        heartbeat: Callable[[], None] | None = None,
        worker: str = "",
        options: TaskOptions | None = None,
    ) -> None:
        self.run_id = run_id
        self.task_id = task_id
        self.task_name = task_name
        self.attempt_id = attempt_id
        self.attempt = attempt
        self.execution_id = execution_id
        self.correlation_id = correlation_id
        self.idempotency_key = idempotency_key
        self._heartbeat = heartbeat
        self.worker = worker  # the worker id holding the lease (fences a workflow's records)
        self.options = options or TaskOptions()  # the run's task options, as leased
        #: in a workflow: the number of the step running now (None between steps)
        self.step: int | None = None
        #: what this attempt launched (submissions, messages): written if it succeeds
        self.launches: list[Any] = []
        self.publishes = 0  # messages published so far (numbers their minted event ids)
        self.transactions = 0  # @app.transaction calls so far (numbers their receipts)
        self.step_transactions = 0  # ... in this try of the current step (numbered apart)
        self._cancelled = False  # a flag only (nothing waits on it): set once, read often

    @property
    def cancelled(self) -> bool:
        """True once the run was canceled, its lease was lost, or the attempt timed out."""
        return self._cancelled

    def cancel(self) -> None:
        """Turn ``cancelled`` true (the worker does this; handlers only read it)."""
        self._cancelled = True

    def heartbeat(self) -> None:
        """Renew this run's lease now (the worker also renews it on its own, every third
        of ``lease_seconds``). Calls closer together than a tenth of that (at most 1 s)
        are folded into one renewal."""
        if self._heartbeat is not None:
            self._heartbeat()

    def __repr__(self) -> str:
        return (
            f"Context(run_id={self.run_id!r}, task_name={self.task_name!r}, attempt={self.attempt})"
        )


def context() -> Context:
    """The current handler's Context; raises NoContext outside a handler."""
    ctx = _current.get()
    if ctx is None:
        raise NoContext(
            "ms.context() was called outside a running handler; call it from inside a "
            "function decorated with @app.task while a worker executes it"
        )
    return ctx


def current() -> Context | None:
    """The running handler's Context, or None outside one."""
    return _current.get()


def set_current(ctx: Context | None) -> object:
    return _current.set(ctx)


def reset_current(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
