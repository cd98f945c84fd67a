"""``@app.transaction()``: a function whose writes to the store's own database commit
exactly once per run (docs/messages.md, "Exactly-once effects")."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

from .core.codec import to_plain
from .worker.context import current as context_now

if TYPE_CHECKING:
    from .app import App

P = ParamSpec("P")
R = TypeVar("R")


class TransactionFunction(Generic[P, R]):
    """A function declared with ``@app.transaction()``: called without its first
    parameter, it runs in one transaction of the store, given that transaction's DB-API
    connection (``sqlite3`` or ``psycopg``; do not commit or roll back in it).

    Inside a handler (or workflow) its calls are numbered in call order per run (a
    workflow step's within each try of the step, apart from the others), and each
    writes a receipt holding its return value in the same transaction: a call whose
    receipt exists (an earlier attempt got that far, a duplicate committed first) returns
    the stored value without running again, so its writes commit once per run; the same
    call number with other arguments raises ``ms.PreconditionFailed("receipt-exists")``.
    Outside a handler it is a plain transaction. Keep it short: on SQLite the store's write
    lock is held until it returns."""

    def __init__(self, app: App, fn: Callable[Concatenate[Any, P], R], name: str) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<mainspring transaction {self.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        def run(connection: Any) -> Any:
            return self.fn(connection, *args, **kwargs)

        ctx = context_now()
        if ctx is None:
            out: R = self.app.engine.plain_call(run)
            return out
        # a workflow's steps number their calls apart: a step that replays its stored result
        # runs none of them, and a step tried again makes them again
        if ctx.step is None:
            ctx.transactions += 1
            number = ctx.transactions
        else:
            ctx.step_transactions += 1
            number = ctx.step_transactions
        given = to_plain({"args": list(args), "kwargs": kwargs}, f"the arguments of {self.name}")
        stored: R = self.app.engine.call_once(
            ctx.run_id, ctx.attempt_id, number, self.name, given, run, ctx.step
        )
        return stored
