"""What a finished attempt's report becomes before its turn records it, when it cannot stand
as the worker made it: a launch the store refused fails the attempt alone
(``LaunchRefused``), and a second handling of a message ends as the first did
(``as_handled``)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ..core.errors import MainspringError
from ..core.failures import FailureClass, PreconditionFailed, RetryClass
from ..core.model import ReceiptRecord, receipt_key
from ..core.outcomes import Outcome, outcome_of
from ..core.reducer import RECEIPTS
from ..core.states import AttemptResult
from ..store.base import WriteTx
from .batch import Batch
from .messages import Finished

#: The attempt results a delivery's receipt is written or looked for at.
_ENDS = (
    AttemptResult.SUCCESS,
    AttemptResult.RETRYABLE,
    AttemptResult.TERMINAL,
    AttemptResult.TIMEOUT,
)


class LaunchRefused(Exception):
    """What a successful attempt launched was refused (an idempotency conflict, an invalid
    argument): the turn is decided again with that attempt failed instead."""

    def __init__(self, run_id: str, error: MainspringError) -> None:
        super().__init__(run_id)
        self.run_id = run_id
        self.error = error

    def report(self, f: Finished) -> Finished:
        """``f`` as an attempt that failed for good: the same launch would be refused again."""
        exc = self.error
        return _ending(
            f,
            Outcome(
                AttemptResult.TERMINAL,
                error=f"{type(exc).__name__}: {exc} (what the attempt launched was refused)",
                failure_class=FailureClass.INVALID_REQUEST.value,
                retry_class=RetryClass.DO_NOT_RETRY.value,
            ),
        )


def _ending(f: Finished, o: Outcome) -> Finished:
    """``f`` ending with ``o`` instead, and launching nothing."""
    return msgspec.structs.replace(
        f,
        result=o.result,
        output=o.output,
        error=o.error,
        traceback=None,
        retry_delay=None,
        failure_class=o.failure_class,
        retry_class=o.retry_class,
        launches=[],
    )


def as_handled(tx: WriteTx, b: Batch, finished: Sequence[Finished]) -> list[Finished]:
    """``finished``, where a delivery's message has a receipt of another run already (a
    rerun handled it while the first handling was in flight, or the other way round):
    that handling ends as the first did, with its output when delivered, else refused
    (``PreconditionFailed("receipt-exists")``); what it launched is not written."""
    st = b.state
    keys: dict[str, str] = {}
    for f in finished:
        run = st.runs.get(f.run_id)
        if run is not None and run.delivery is not None and f.result in _ENDS:
            keys[f.run_id] = receipt_key(run.task_name, run.delivery)
    if not keys:
        return list(finished)
    tx.load_records(RECEIPTS, sorted(set(keys.values())), st)
    found = st.kind(RECEIPTS)
    out: list[Finished] = []
    for f in finished:
        rec: ReceiptRecord | None = found.get(keys.get(f.run_id, ""))
        if rec is None or rec.run_id == f.run_id:
            out.append(f)
        elif rec.status == "delivered":
            out.append(_ending(f, Outcome(AttemptResult.SUCCESS, output=rec.output)))
        else:
            refusal = PreconditionFailed(
                "receipt-exists",
                f"{rec.subscriber} already handled {rec.event_id} ({rec.status}, run {rec.run_id})",
            )
            out.append(_ending(f, outcome_of(refusal)))
    return out
