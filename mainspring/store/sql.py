"""Every read and write of the two SQL stores, written once.

``SqlReadTx`` holds the queries, ``SqlWriteTx`` adds what a write transaction does: the
loads that lock what a command will change, the claims that skip what another writer
holds, and ``save``. What differs between SQLite and PostgreSQL is the store's ``Dialect``
(store/dialect.py) and a few hooks each store's transaction provides:

* ``_rows(query, params)`` runs a query; ``_write_many(statement, rows)`` runs a write
  once per row of parameters, now or with its next round trip;
* ``_lock()`` / ``_claim()``: the clauses that lock the rows a write transaction reads,
  waiting for them or skipping them ("" where writers are serialized anyway: SQLite);
* ``_take_keys(keys)``: the concurrency keys this transaction may decide now;
* ``_write_tasks`` / ``_insert_runs`` / ``_update_runs``, ``update_runs_if_unchanged`` and
  ``append_log``: how rows and the log record reach the store.

What the rows mean is the reducer's (core/), and the rules are the engine's; the SQL only
finds and stores records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..core.model import NEVER, Event, Run, Task
from ..core.reducer import State
from ..core.states import TERMINAL, RunState
from .base import ReadTx, WriteTx
from .dialect import DUE, Dialect
from .kinds import KindTx
from .log_tx import LogTx
from .rows import Fence, any_decoder, decode_task, encoder, row_run, row_task
from .snapshots import encode_stream

#: rows a streamed read (``_stream``) holds in memory at a time, where the driver lets it
STREAM_ROWS = 2000

_TERMINAL = ", ".join(f"'{s}'" for s in sorted(TERMINAL))


class SqlReadTx(KindTx, LogTx, ReadTx):
    """The queries both stores run, in their dialect."""

    DIALECT: Dialect

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _stream(self, query: str) -> Iterator[tuple[Any, ...]]:
        """The rows of ``query`` as they come, ``STREAM_ROWS`` or so in memory at a time
        where the driver can (here: all at once)."""
        yield from self._rows(query)

    def _chunks(self, values: Sequence[Any]) -> list[Sequence[Any]]:
        n = self.DIALECT.max_list
        return [values[i : i + n] for i in range(0, len(values), n)]

    # -- single records ---------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run | None:
        d = self.DIALECT
        rows = self._rows(
            f"SELECT {d.run_cols} FROM ms_runs WHERE run_id = {d.placeholder}", (run_id,)
        )
        return row_run(rows[0]) if rows else None

    def runs_of(self, run_ids: Sequence[str]) -> list[Run]:
        """The runs with these ids (those that exist), in id order."""
        d, out = self.DIALECT, []
        for chunk in self._chunks(sorted(set(run_ids))):
            cond, params = d.one_of("run_id", chunk)
            q = f"SELECT {d.run_cols} FROM ms_runs WHERE {cond} ORDER BY run_id"
            out += [row_run(r) for r in self._rows(q, params)]
        return out

    def get_task(self, task_id: str) -> Task | None:
        d = self.DIALECT
        q = f"SELECT {d.task_cols} FROM ms_tasks WHERE task_id = {d.placeholder}"
        rows = self._rows(q, (task_id,))
        return row_task(rows[0]) if rows else None

    def task_by_idempotency(self, name: str, key: str) -> Task | None:
        d, p = self.DIALECT, self.DIALECT.placeholder
        q = f"SELECT {d.task_cols} FROM ms_tasks WHERE name = {p} AND idempotency_key = {p}"
        rows = self._rows(q, (name, key))
        return row_task(rows[0]) if rows else None

    def paused(self, *, lock: bool = False) -> bool:
        rows = self._rows(
            "SELECT paused FROM ms_engine WHERE id = 1" + (self._lock() if lock else "")
        )
        return bool(rows and rows[0][0])

    def meta(self, key: str) -> str | None:
        rows = self._rows(
            f"SELECT value FROM ms_meta WHERE key = {self.DIALECT.placeholder}", (key,)
        )
        return str(rows[0][0]) if rows else None

    def definition(self, name: str) -> dict[str, Any] | None:
        d = self.DIALECT
        q = f"SELECT {d.doc} FROM ms_definitions WHERE name = {d.placeholder}"
        rows = self._rows(q, (name,))
        return dict(any_decoder.decode(rows[0][0])) if rows else None

    def queue_counts(self) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
        """Runs per queue and state, and per queue the scheduled time of its oldest ready run."""
        counts: dict[str, dict[str, int]] = {}
        for queue, state, n in self._rows(
            "SELECT queue, state, count(*) FROM ms_runs GROUP BY queue, state"
        ):
            counts.setdefault(queue, {})[state] = int(n)
        oldest = {
            queue: float(at)
            for queue, at in self._rows(
                f"SELECT queue, min(scheduled_at) FROM ms_runs{self.DIALECT.hint('ms_runs_ready')} "
                "WHERE state = 'ready' GROUP BY queue"
            )
        }
        return counts, oldest

    def run_counts(self) -> list[tuple[str, str, str, int]]:
        sql = (
            "SELECT state, task_name, queue, count(*) FROM ms_runs GROUP BY state, task_name, queue"
        )
        return [(str(s), str(t), str(q), int(n)) for s, t, q, n in self._rows(sql)]

    def definitions(self) -> dict[str, dict[str, Any]]:
        q = f"SELECT name, {self.DIALECT.doc} FROM ms_definitions ORDER BY name"
        return {name: dict(any_decoder.decode(doc)) for name, doc in self._rows(q)}

    def _lock(self, skip: bool = False) -> str:
        return ""

    # -- runs -----------------------------------------------------------------------------------
    def run_ids_of_task(
        self, task_id: str, *, active_only: bool = False, scheduled_at: float | None = None
    ) -> list[str]:
        p = self.DIALECT.placeholder
        q = f"SELECT run_id FROM ms_runs WHERE task_id = {p}"
        params: list[Any] = [task_id]
        if active_only:
            q += f" AND state NOT IN ({_TERMINAL})"
        if scheduled_at is not None:
            q += f" AND scheduled_at = {p}"
            params.append(scheduled_at)
        return [r[0] for r in self._rows(q + " ORDER BY scheduled_at, run_id", params)]

    def query_runs(
        self,
        state: str | None,
        task: str | None,
        limit: int,
        task_id: str | None = None,
        *,
        queue: str | None = None,
        after: tuple[float, str] | None = None,
        newest_first: bool = False,
    ) -> list[Run]:
        d, p = self.DIALECT, self.DIALECT.placeholder
        q = f"SELECT {d.run_cols} FROM ms_runs"
        params: list[Any] = []
        if state is not None:
            q += d.of_state(RunState(state))
        elif task_id is not None:
            q += d.hint("ms_runs_task") + " WHERE 1 = 1"
        else:
            q += " WHERE 1 = 1"
        if task is not None:
            q += f" AND task_name = {p}"
            params.append(task)
        if task_id is not None:
            q += f" AND task_id = {p}"
            params.append(task_id)
        if queue is not None:
            q += f" AND queue = {p}"
            params.append(queue)
        past, order = ("<", " DESC") if newest_first else (">", "")
        if after is not None:  # keyset pagination: past the last row of the previous page
            q += f" AND (scheduled_at, run_id) {past} ({p}, {p})"
            params.extend(after)
        q += f" ORDER BY scheduled_at{order}, run_id{order} LIMIT {p}"
        return [row_run(r) for r in self._rows(q, (*params, limit))]

    def run_ids_matching(
        self, state: str, task: str | None, queue: str | None, after: str, limit: int
    ) -> list[str]:
        """Ids of the runs in ``state`` (of task name ``task``, in ``queue``) after the id
        ``after``, in id order: a page of a bulk operation."""
        d, p = self.DIALECT, self.DIALECT.placeholder
        q = f"SELECT run_id FROM ms_runs{d.of_state(RunState(state))} AND run_id > {p}"
        params: list[Any] = [after]
        for column, value in (("task_name", task), ("queue", queue)):
            if value is not None:
                q += f" AND {column} = {p}"
                params.append(value)
        q += f" ORDER BY run_id LIMIT {p}"
        return [r[0] for r in self._rows(q, (*params, limit))]

    def stats(self) -> dict[str, int]:
        states = list(RunState)
        counts = ", ".join(
            f"(SELECT count(*) FROM ms_runs{self.DIALECT.of_state(s)})" for s in states
        )
        row = self._rows(f"SELECT {counts}")[0]
        return {s.value: int(n) for s, n in zip(states, row, strict=True)}

    def lease_owners(self, run_ids: Sequence[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = dict.fromkeys(run_ids)
        for chunk in self._chunks(list(run_ids)):
            cond, params = self.DIALECT.one_of("run_id", chunk)
            out.update(self._rows(f"SELECT run_id, lease_owner FROM ms_runs WHERE {cond}", params))
        return out

    def key_holders(self, keys: Sequence[str]) -> dict[str, set[str] | None]:
        ks = sorted(set(keys))
        taken = self._take_keys(ks)
        out: dict[str, set[str] | None] = {k: (set() if k in taken else None) for k in ks}
        for chunk in self._chunks(sorted(taken)):
            cond, params = self.DIALECT.one_of("concurrency_key", chunk)
            q = (
                f"SELECT concurrency_key, run_id FROM ms_runs{self.DIALECT.hint('ms_runs_key')} "
                f"WHERE holds_key = {self.DIALECT.true} AND {cond}"
            )
            for k, rid in self._rows(q, params):
                holders = out[k]
                assert holders is not None
                holders.add(rid)
        return out

    def key_heads(self, keys: Sequence[str]) -> dict[str, str]:
        p = self.DIALECT.placeholder
        q = (
            f"SELECT run_id FROM ms_runs WHERE state = 'ready' AND concurrency_key = {p} "
            f"ORDER BY priority DESC, scheduled_at, run_id LIMIT 1"
        )
        out = {}
        for key in keys:  # (a turn meets few ordered keys: each its own statement)
            for (rid,) in self._rows(q, (key,)):
                out[key] = rid
        return out

    def _take_keys(self, keys: Sequence[str], kind: str = "key") -> set[str]:
        """The keys (of concurrency keys, or of ``kind``) this transaction may decide now
        (all, unless writers run side by side)."""
        return set(keys)

    def rate_accounts_free(self, keys: Sequence[str]) -> set[str]:
        return self._take_keys(keys, "rate")

    def ready_ahead(self, run: Run) -> int:
        p = self.DIALECT.placeholder
        q = (
            f"SELECT count(*) FROM ms_runs WHERE state = 'ready' AND queue = {p} "
            f"AND (priority > {p} OR (priority = {p} AND (scheduled_at < {p} "
            f"OR (scheduled_at = {p} AND run_id < {p}))))"
        )
        pr, t = run.priority, run.scheduled_at
        return int(self._rows(q, (run.queue, pr, pr, t, t, run.run_id))[0][0])

    def runs_held_by(self, owners: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {o: [] for o in owners}
        for chunk in self._chunks(list(owners)):
            cond, params = self.DIALECT.one_of("lease_owner", chunk)
            q = f"SELECT lease_owner, run_id FROM ms_runs WHERE {cond} ORDER BY run_id"
            for owner, rid in self._rows(q, params):
                out[owner].append(rid)
        return out

    # -- tasks ----------------------------------------------------------------------------------
    def query_tasks(self, active: bool, limit: int) -> list[Task]:
        d = self.DIALECT
        q = f"SELECT {d.task_cols} FROM ms_tasks" + (" WHERE NOT canceled" if active else "")
        return [
            row_task(r)
            for r in self._rows(q + f" ORDER BY task_id LIMIT {d.placeholder}", (limit,))
        ]

    def task_run_counts(self, task_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {t: {} for t in task_ids}
        for chunk in self._chunks(list(task_ids)):
            cond, params = self.DIALECT.one_of("task_id", chunk)
            q = f"SELECT task_id, state, count(*) FROM ms_runs WHERE {cond} GROUP BY task_id, state"
            for tid, st, n in self._rows(q, params):
                out[tid][st] = int(n)
        return out

    def next_scheduled(self, task_ids: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for chunk in self._chunks(list(task_ids)):
            cond, params = self.DIALECT.one_of("task_id", chunk)
            q = (
                f"SELECT task_id, min(scheduled_at) FROM ms_runs WHERE {cond} "
                "AND state = 'scheduled' GROUP BY task_id"
            )
            out.update((tid, float(at)) for tid, at in self._rows(q, params))
        return out

    # -- is there work ----------------------------------------------------------------------------
    def _of(
        self, names: Sequence[str] | None, queues: Sequence[str] | None
    ) -> tuple[str, list[Any]]:
        """`` AND`` the runs of these task names and queues (None: any)."""
        sql, params = "", []
        for column, values in (("task_name", names), ("queue", queues)):
            if values is not None:
                cond, ps = self.DIALECT.one_of(column, values)
                sql += f" AND {cond}"
                params += ps
        return sql, params

    def is_idle(
        self, now: float, names: Sequence[str] | None = None, queues: Sequence[str] | None = None
    ) -> bool:
        d = self.DIALECT
        only, params = self._of(names, None if names is None else queues)
        # (for a worker's tasks: runs of a paused queue wait for no worker, as none of a
        # paused engine do)
        open_only = "" if names is None else f" AND {OPEN_QUEUE}"
        row = self._rows(
            f"SELECT EXISTS (SELECT 1 FROM ms_runs r{d.hint('ms_runs_ready')} "
            f"WHERE state = 'ready'{only}{open_only}) "
            f"OR EXISTS (SELECT 1 FROM ms_runs{d.hint('ms_runs_lease')} "
            f"WHERE lease_owner IS NOT NULL{only}) "
            f"OR EXISTS (SELECT 1 FROM ms_runs r{d.hint('ms_runs_due')} WHERE {DUE} "
            f"AND (state = 'retry_wait' OR due_at <= {d.placeholder}){only}{open_only}) "
            f"OR EXISTS (SELECT 1 FROM ms_deadlines WHERE at <= {d.placeholder})",
            (*params, *params, now, *params, now),
        )[0]
        return not row[0]

    def _next_due(self) -> str:
        """The two columns whose smaller value is ``next_due``."""
        return (
            f"(SELECT min(due_at) FROM ms_runs{self.DIALECT.hint('ms_runs_due')} "
            f"WHERE {DUE} AND due_at < {NEVER!r}), "
            "(SELECT min(cron_next) FROM ms_tasks WHERE cron_next IS NOT NULL), "
            "(SELECT min(at) FROM ms_deadlines)"
        )

    def next_due(self) -> float | None:
        return _smaller(*self._rows(f"SELECT {self._next_due()}")[0])

    def probe(
        self, now: float, names: Sequence[str], queues: Sequence[str] | None
    ) -> tuple[bool, float | None]:
        d, p = self.DIALECT, self.DIALECT.placeholder
        if names:
            only, params = self._of(names, queues)
            ready = (
                f"SELECT 1 FROM ms_runs r{d.hint('ms_runs_ready')} "
                f"WHERE state = 'ready'{only} AND {OPEN_QUEUE}"
            )
        else:
            ready, params = "SELECT 1 WHERE 1 = 0", []  # (an empty IN leaves INDEXED BY no plan)
        row = self._rows(
            f"SELECT EXISTS ({ready}) "
            f"OR EXISTS (SELECT 1 FROM ms_runs{d.hint('ms_runs_due')} WHERE {DUE} AND due_at <= {p}) "
            f"OR EXISTS (SELECT 1 FROM ms_runs{d.hint('ms_runs_lease')} "
            f"WHERE lease_owner IS NOT NULL AND lease_expires_at <= {p}) "
            f"OR EXISTS (SELECT 1 FROM ms_tasks WHERE cron_next <= {p}) "
            f"OR EXISTS (SELECT 1 FROM ms_deadlines WHERE at <= {p}), {self._next_due()}",
            (*params, now, now, now, now),
        )[0]
        return bool(row[0]), _smaller(*row[1:])

    # -- the whole projection, for verify and compaction ----------------------------------------
    def encode_snapshot(self) -> list[bytes]:
        d, rest = self.DIALECT, self._all_but_runs_and_tasks()
        runs = self._stream(f"SELECT {d.run_cols} FROM ms_runs ORDER BY run_id{d.bytewise}")
        tasks = self._stream(f"SELECT {d.task_cols} FROM ms_tasks ORDER BY task_id{d.bytewise}")
        return list(encode_stream(map(row_run, runs), map(row_task, tasks), rest))

    def snapshot(self) -> State:
        d, st = self.DIALECT, self._all_but_runs_and_tasks()
        for row in self._rows(f"SELECT {d.run_cols} FROM ms_runs"):
            st.runs[row[0]] = row_run(row)
        for row in self._rows(f"SELECT {d.task_cols} FROM ms_tasks"):
            st.tasks[row[0]] = row_task(row)
        st.last_seq = self.last_seq()
        return st

    def _all_but_runs_and_tasks(self) -> State:
        """The definitions, every record of every kind and the engine flag."""
        st = State()
        for name, doc in self._rows(f"SELECT name, {self.DIALECT.doc} FROM ms_definitions"):
            st.definitions[name] = dict(any_decoder.decode(doc))
        self.snapshot_records(st)
        st.paused = self.paused()
        return st


class SqlWriteTx(SqlReadTx, WriteTx):
    """A write transaction: loads and claims for a command, and ``save``."""

    def __init__(self) -> None:
        self.wake = False
        self.ended: list[str] = []
        self.pending: list[Event] = []  # this transaction's events: its log record
        self.task_docs: dict[str, Any] = {}  # documents of the tasks of claimed runs

    def wake_on_commit(self) -> None:
        self.wake = True

    def ended_on_commit(self, run_ids: Sequence[str]) -> None:
        self.ended.extend(run_ids)

    def _claim(self, of: str | None = None) -> str:
        """The clause that claims the rows a query returns ("" where writers are serialized)."""
        return ""

    def _share_leasing(self) -> None:
        """Before reading what to lease: hold what a pause waits for (``hold_leasing``;
        nothing where writers are serialized)."""

    # -- loads and claims ---------------------------------------------------------------------
    def load_runs(self, run_ids: Sequence[str], state: State) -> None:
        d = self.DIALECT
        for chunk in self._chunks(sorted({r for r in run_ids if r not in state.runs})):
            cond, params = d.one_of("run_id", chunk)
            q = f"SELECT {d.run_cols} FROM ms_runs WHERE {cond} ORDER BY run_id{self._lock()}"
            for row in self._rows(q, params):
                state.runs[row[0]] = row_run(row)

    def load_tasks(self, task_ids: Sequence[str], state: State, *, lock: bool = False) -> None:
        d = self.DIALECT
        need = sorted({t for t in task_ids if t not in state.tasks})
        if not lock:  # read with their claimed runs in this transaction: current enough
            for t in [t for t in need if t in self.task_docs]:
                state.tasks[t] = decode_task(self.task_docs[t])
            need = [t for t in need if t not in state.tasks]
        for chunk in self._chunks(need):
            cond, params = d.one_of("task_id", chunk)
            q = f"SELECT {d.task_cols} FROM ms_tasks WHERE {cond} ORDER BY task_id"
            for row in self._rows(q + (self._lock() if lock else ""), params):
                state.tasks[row[0]] = row_task(row)

    def due_run_ids(self, now: float, limit: int) -> list[str]:
        d, p = self.DIALECT, self.DIALECT.placeholder
        q = (
            f"SELECT run_id FROM ms_runs{d.hint('ms_runs_due')} WHERE {DUE} AND due_at <= {p} "
            f"ORDER BY due_at LIMIT {p}{self._claim()}"
        )
        return [r[0] for r in self._rows(q, (now, limit))]

    def expired_lease_run_ids(self, now: float, limit: int) -> list[str]:
        p = self.DIALECT.placeholder
        q = (
            f"SELECT run_id FROM ms_runs WHERE lease_owner IS NOT NULL AND lease_expires_at <= {p} "
            f"ORDER BY lease_expires_at LIMIT {p}{self._claim()}"
        )
        return [r[0] for r in self._rows(q, (now, limit))]

    def cron_due_task_ids(self, now: float, limit: int) -> list[str]:
        p = self.DIALECT.placeholder
        q = f"SELECT task_id FROM ms_tasks WHERE cron_next <= {p} ORDER BY cron_next LIMIT {p}"
        return [r[0] for r in self._rows(q + self._claim(), (now, limit))]

    def ready_candidates(
        self,
        now: float,
        queues: Sequence[str] | None,
        names: Sequence[str],
        limit: int,
        offset: int = 0,
        without: Sequence[str] = (),
    ) -> list[Run]:
        self._share_leasing()
        out = []
        q, params = ready_query(self.DIALECT, names, queues, self._claim(of="r"), without)
        for row in self._rows(q, (*params, limit, offset)):
            run = row_run(row)
            self.task_docs.setdefault(run.task_id, row[13])
            out.append(run)
        return out

    # -- writing ----------------------------------------------------------------------------------
    def save(self, state: State, events: Sequence[Event]) -> None:
        self.pending.extend(events)  # the transaction's record is written at its end
        self._saved(len(events) + len(state.dirty_runs))
        if state.dirty_tasks:
            tasks = [state.tasks[i] for i in sorted(state.dirty_tasks)]
            self._write_tasks(tasks, all(t.task_id in state.new_tasks for t in tasks))
        if state.dirty_runs:
            # in id (= creation) order, so that runs made together share pages: a worker
            # later leases them together, and its commit then rewrites few pages
            ids = sorted(state.dirty_runs)
            new = [state.runs[i] for i in ids if i in state.new_runs]
            old = [state.runs[i] for i in ids if i not in state.new_runs]
            if new:
                self._insert_runs(new)
            if old:
                self._update_runs(old, state.fences)
        for table, column, gone in (
            ("ms_runs", "run_id", state.pruned_runs),
            ("ms_tasks", "task_id", state.pruned_tasks),
        ):
            if gone:
                p = self.DIALECT.placeholder
                self._write_many(
                    f"DELETE FROM {table} WHERE {column} = {p}", [(i,) for i in sorted(gone)]
                )
        if state.dirty_definitions:
            p, doc_in = self.DIALECT.placeholder, self.DIALECT.doc_in
            self._write_many(
                f"INSERT INTO ms_definitions (name, doc) VALUES ({p}, {doc_in}) "
                "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
                [
                    (n, self._doc(encoder.encode(state.definitions[n])))
                    for n in sorted(state.dirty_definitions)
                ],
            )
        if state.dirty_engine:
            p = self.DIALECT.placeholder
            self._write_many(f"UPDATE ms_engine SET paused = {p} WHERE id = 1", [(state.paused,)])
        self.save_records(state)
        state.clear_dirty()

    def _saved(self, rows: int) -> None:
        """``save`` is writing this many events and run rows (SQLite's checkpointer counts)."""

    def _doc(self, doc: bytes) -> Any:
        """A JSON document as the driver binds it."""
        return doc

    def _write_tasks(self, tasks: Sequence[Task], all_new: bool) -> None:
        raise NotImplementedError

    def _insert_runs(self, runs: Sequence[Run]) -> None:
        raise NotImplementedError

    def _update_runs(self, runs: Sequence[Run], fences: dict[str, Fence] | None) -> None:
        """Write the rows of ``runs`` (``rows.doc_written``: their fences kept in
        ``fences``, when given)."""
        raise NotImplementedError


#: A ready run ``r`` whose queue is not paused (``app.pause(queue=...)``).
OPEN_QUEUE = (
    "NOT EXISTS (SELECT 1 FROM ms_queues q WHERE q.name = r.queue AND q.paused_at IS NOT NULL)"
)


def ready_query(
    d: Dialect,
    names: Sequence[str],
    queues: Sequence[str] | None,
    claim: str,
    without: Sequence[str] = (),
) -> tuple[str, list[Any]]:
    """Ready runs of some task names (and queues), best first, each with its task's document
    (for ``load_tasks``); none while the engine is paused; ``without``: none that counts in
    these rate limit accounts (their ``rate_key``, read from the run's document: only a
    turn that found them all spent asks, so no column of its own). After ``params``: limit,
    offset."""
    p = d.placeholder
    names_in, params = d.one_of("r.task_name", names)
    q = (
        f"SELECT {', '.join('r.' + c for c in d.run_cols.split(', '))}, t.{d.doc} "
        f"FROM ms_runs r{d.hint('ms_runs_ready')} JOIN ms_tasks t ON t.task_id = r.task_id "
        f"WHERE r.state = 'ready' AND {names_in} "
        f"AND NOT EXISTS (SELECT 1 FROM ms_engine WHERE paused = {d.true}) AND {OPEN_QUEUE}"
    )
    if queues is not None:
        queues_in, qs = d.one_of("r.queue", queues)
        q += f" AND {queues_in}"
        params += qs
    if without:
        account = d.doc_field.format("r.doc", "rate_key")
        spent_in, ws = d.one_of(account, without)
        q += f" AND ({account} IS NULL OR NOT {spent_in})"
        params += ws
    q += f" ORDER BY r.priority DESC, r.scheduled_at, r.run_id LIMIT {p} OFFSET {p}"
    return q + claim, params


def _smaller(*times: Any) -> float | None:
    values = [float(v) for v in times if v is not None]
    return min(values) if values else None
