"""Exactly-once effects: an ``@app.transaction`` call runs the user's statements in one
store transaction with a create-only receipt of the call, so that across retries, crashes
and fenced-out duplicates its writes commit once per run (docs/messages.md,
"Exactly-once effects")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import events as E
from ..core.codec import to_plain
from ..core.errors import UnknownRun
from ..core.failures import PreconditionFailed
from ..core.model import CallRecord, call_key
from ..core.reducer import CALLS
from ..store.base import WriteTx
from .batch import Batch
from .transact import Transactor


class CallCommands(Transactor):
    def call_once(
        self,
        run_id: str,
        attempt_id: str,
        number: int,
        name: str,
        args: Any,
        fn: Callable[[Any], Any],
        step: int | None = None,
    ) -> Any:
        """Call number ``number`` of ``run_id`` (of its workflow step ``step``, if given):
        ``fn(connection)`` and its receipt in one transaction; when the receipt exists
        already, its stored output (``fn`` is not called, or its writes are rolled back when
        a concurrent duplicate won)."""
        key = call_key(run_id, number, step)
        which = f"call {number}" if step is None else f"call {number} of step {step}"

        def body(tx: WriteTx, b: Batch) -> Any:
            tx.load_records(CALLS, [key], b.state)
            done: CallRecord | None = b.state.kind(CALLS).get(key)
            if done is not None:
                if (done.name, done.args) != (name, args):
                    raise PreconditionFailed(
                        "receipt-exists",
                        f"{which} of run {run_id} was {done.name} with other arguments "
                        f"({done.args!r}); a retried handler must make its transaction calls "
                        "in the same order with the same arguments",
                    )
                return done.output
            tx.load_runs([run_id], b.state)
            run = b.state.runs.get(run_id)
            if run is None:
                raise UnknownRun(f"no run {run_id!r} in this store")
            output = to_plain(fn(tx.connection()), f"the return value of transaction {name}")
            b.emit(E.transaction_recorded(run, b.now, attempt_id, number, name, args, output, step))
            return output

        return self.transact(body)[0]

    def plain_call(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(connection)`` in one store transaction, nothing recorded (outside a handler)."""
        return self.transact(lambda tx, b: fn(tx.connection()))[0]
