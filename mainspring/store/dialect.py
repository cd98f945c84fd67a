"""What differs between the stores' SQL, in one small object per store.

The statements of ``store/sql.py`` and ``store/schema.py`` are written once; each store's
``Dialect`` fills in the driver's placeholder, how a document column is read, how a list of
values is matched, the index hints SQLite needs to use its partial indexes, and the column
types and storage options of its DDL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.states import RunState


@dataclass(frozen=True)
class Dialect:
    placeholder: str  # the driver's parameter marker: "?" (sqlite3) or "%s" (psycopg)
    ddl: dict[str, str]  # what store/schema.py's statements leave open: types, options
    doc: str = "doc"  # how a document column is selected (PostgreSQL: as text)
    doc_in: str = "?"  # how a document parameter is written (PostgreSQL: cast to json)
    arrays: bool = False  # lists travel as one array parameter (``= ANY(%s)``)
    hints: bool = False  # name the partial index to use (SQLite's INDEXED BY)
    true: str = "true"  # a true boolean column value in a WHERE
    max_list: int = 1 << 30  # values per IN list (SQLite: bound parameters per statement)
    bytewise: str = ""  # after ORDER BY a text column: order as Python sorts str (PostgreSQL's "C")
    #: a text field of a document column: the column and the field's name fill it in
    doc_field: str = "json_extract(CAST({0} AS TEXT), '$.{1}')"
    run_cols: str = field(init=False)
    task_cols: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_cols", ", ".join((*RUN_COLUMNS, self.doc)))
        object.__setattr__(self, "task_cols", ", ".join((*TASK_COLUMNS, self.doc)))

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: the condition and its parameters."""
        if self.arrays:
            return f"{column} = ANY({self.placeholder}::text[])", [text_array(values)]
        marks = ", ".join([self.placeholder] * len(values))
        return f"{column} IN ({marks})", list(values)

    def hint(self, index: str) -> str:
        """The clause after a table's name that makes SQLite walk ``index`` ("" elsewhere)."""
        return f" INDEXED BY {index}" if self.hints else ""

    def of_state(self, state: RunState) -> str:
        """``FROM ms_runs`` + this: the runs in ``state``, through its partial index.

        There is deliberately no index on ``state`` itself: every state change would rewrite
        it (the hot path changes a run's state four times), while each partial index sees a
        run enter and leave once. The conditions repeat the index's own so the planners
        (SQLite's in particular) see that it applies."""
        index, condition = _STATE_INDEX[state]
        return f"{self.hint(index)} WHERE {condition} AND state = '{state}'"


#: The text of an array literal whose elements need no quotes: ids, names, keys (none "null")
_PLAIN = re.compile(r"(?!null(?:,|$))[\w.:-]+(?:,(?!null(?:,|$))[\w.:-]+)*", re.ASCII | re.I)


def text_array(values: Sequence[str]) -> str | list[str]:
    """``values`` as one PostgreSQL ``text[]`` parameter. Ids and names go as the text of
    the array literal, checked in one match: the driver quotes a list element by element,
    one regular expression each, a cost per id that a turn's rows would pay. Anything else
    goes as the list."""
    joined = ",".join(values)
    if _PLAIN.fullmatch(joined):
        return "{" + joined + "}"
    return list(values)


#: The columns of a run's row before its document (store/rows.py: ``run_columns``).
RUN_COLUMNS = (
    "run_id",
    "task_id",
    "task_name",
    "state",
    "scheduled_at",
    "due_at",
    "priority",
    "queue",
    "concurrency_key",
    "holds_key",
    "lease_owner",
    "lease_expires_at",
)
#: The columns of a task's row before its document (store/rows.py: ``task_columns``).
TASK_COLUMNS = ("task_id", "name", "idempotency_key", "kind", "canceled", "cron_next")

#: The runs that come due (ms_runs_due's predicate, as the queries that use it repeat it)
DUE = "(state = 'scheduled' OR state = 'retry_wait' OR state = 'suspended')"
_STATE_INDEX: dict[str, tuple[str, str]] = {
    RunState.SCHEDULED: ("ms_runs_due", DUE),
    RunState.RETRY_WAIT: ("ms_runs_due", DUE),
    RunState.READY: ("ms_runs_ready", "state = 'ready'"),
    RunState.LEASED: ("ms_runs_lease", "lease_owner IS NOT NULL"),
    RunState.RUNNING: ("ms_runs_lease", "lease_owner IS NOT NULL"),
    RunState.SUSPENDED: ("ms_runs_suspended", "state = 'suspended'"),
    RunState.COMPLETED: ("ms_runs_completed", "state = 'completed'"),
    RunState.FAILED: ("ms_runs_failed", "state = 'failed'"),
    RunState.CANCELED: ("ms_runs_canceled", "state = 'canceled'"),
}
