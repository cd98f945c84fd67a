"""The store interface: the log plus a projection of current state.

A store gives the engine transactions. Inside a write transaction the engine loads the
records a command needs, decides, applies the resulting events through the reducer, and
calls ``save`` which appends the events and writes back every record the reducer touched,
in that same transaction. Stores differ in SQL, never in meaning.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ..core.errors import InvalidArgument, StoreError
from ..core.model import Event, Run, Task
from ..core.reducer import State
from .rows import Fence

DEFAULT_URL = "sqlite:///mainspring.db"


def resolve_url(url: str | None) -> str:
    """Explicit argument, then ``MAINSPRING_STORE``, then ``sqlite:///mainspring.db``."""
    if url:
        return url
    return os.environ.get("MAINSPRING_STORE") or DEFAULT_URL


class Conflict(StoreError):
    """A concurrent transaction got in the way and nothing was written: run the command again.

    Raised by a write transaction on a deadlock, a serialization failure, a unique-key race
    (two submitters of one idempotency key) or a connection lost before the commit was sent.
    ``Engine.transact`` retries; after too many attempts the caller sees it as a StoreError.
    """


class ReadTx(ABC):
    """A transaction that reads: the queries of commands and of the facade."""

    # -- single records -----------------------------------------------------------
    @abstractmethod
    def get_run(self, run_id: str) -> Run | None: ...

    @abstractmethod
    def runs_of(self, run_ids: Sequence[str]) -> list[Run]:
        """The runs with these ids (those that exist), in id order."""

    @abstractmethod
    def get_task(self, task_id: str) -> Task | None: ...

    @abstractmethod
    def task_by_idempotency(self, name: str, key: str) -> Task | None: ...

    @abstractmethod
    def paused(self, *, lock: bool = False) -> bool:
        """Whether the engine is paused; with ``lock``, for changing it."""

    @abstractmethod
    def meta(self, key: str) -> str | None:
        """A value of the store's own metadata (``schema_version``, ``store_id``...)."""

    @abstractmethod
    def definition(self, name: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def run_ids_matching(
        self, state: str, task: str | None, queue: str | None, after: str, limit: int
    ) -> list[str]:
        """Ids of the runs in ``state`` (of task name ``task``, in ``queue``) after the id
        ``after``, in id order: a page of a bulk operation."""

    @abstractmethod
    def queue_counts(self) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
        """Runs per queue and state, and per queue the scheduled time of its oldest ready run."""

    @abstractmethod
    def run_counts(self) -> list[tuple[str, str, str, int]]:
        """``(state, task name, queue, runs)`` for each combination that has runs (the
        service's ``mainspring_runs`` gauge)."""

    @abstractmethod
    def definitions(self) -> dict[str, dict[str, Any]]:
        """Every task definition recorded in the store, by name."""

    # -- runs ---------------------------------------------------------------------
    @abstractmethod
    def run_ids_of_task(
        self, task_id: str, *, active_only: bool = False, scheduled_at: float | None = None
    ) -> list[str]:
        """The runs of a task by scheduled time (non-terminal ones only, or those of one
        scheduled time)."""

    @abstractmethod
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
        """Runs by (scheduled_at, run_id), or the reverse; ``after``: only those past that
        pair in that order (a page)."""

    @abstractmethod
    def stats(self) -> dict[str, int]: ...

    @abstractmethod
    def lease_owners(self, run_ids: Sequence[str]) -> dict[str, str | None]:
        """The current lease owner of each of these runs (None: not leased)."""

    @abstractmethod
    def key_heads(self, keys: Sequence[str]) -> dict[str, str]:
        """The first ready run of each concurrency key that has one, in the order runs are
        leased, as committed now (a candidate query that skipped rows other writers had
        locked may have passed over it)."""

    @abstractmethod
    def key_holders(self, keys: Sequence[str]) -> dict[str, set[str] | None]:
        """The runs holding each concurrency key; None for a key another writer is deciding.

        A store with concurrent writers serializes the decisions on each key (not globally):
        a key it could not take at once is reported as None and left alone this time.
        """

    @abstractmethod
    def ready_ahead(self, run: Run) -> int:
        """How many ready runs of ``run``'s queue come before it in leasing order."""

    @abstractmethod
    def runs_held_by(self, owners: Sequence[str]) -> dict[str, list[str]]:
        """For each lease owner (worker id), the runs whose lease it holds."""

    # -- tasks --------------------------------------------------------------------
    @abstractmethod
    def query_tasks(self, active: bool, limit: int) -> list[Task]:
        """Tasks in creation order (with ``active``, those not canceled)."""

    @abstractmethod
    def task_run_counts(self, task_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """For each task, its number of runs in each state (states without runs left out)."""

    @abstractmethod
    def next_scheduled(self, task_ids: Sequence[str]) -> dict[str, float]:
        """For each task with a ``scheduled`` run, the earliest such run's time."""

    # -- is there work --------------------------------------------------------------
    @abstractmethod
    def is_idle(
        self, now: float, names: Sequence[str] | None = None, queues: Sequence[str] | None = None
    ) -> bool:
        """No run ready, leased or running, in retry_wait, or scheduled and already due.

        With ``names`` (and ``queues``), only runs of those tasks (in those queues) count:
        whether a worker of these tasks has anything left to do or to wait for."""

    @abstractmethod
    def next_due(self) -> float | None:
        """The earliest due time of a scheduled or retry_wait run or a cron task."""

    @abstractmethod
    def probe(
        self, now: float, names: Sequence[str], queues: Sequence[str] | None
    ) -> tuple[bool, float | None]:
        """One cheap read for an idle worker: (is there work for it now, ``next_due()``).

        Work now: a ready run of these names (and queues), a due scheduled or retry_wait run,
        an expired lease or a due cron task.
        """

    # -- record kinds (store/kinds.py) ---------------------------------------------
    @abstractmethod
    def records(
        self,
        kind: str,
        *,
        at_most: tuple[str, float] | None = None,
        where: tuple[str, Any] | None = None,
        after: tuple[str, Any] | None = None,
        order: str | None = None,
        limit: int | None = None,
    ) -> list[Any]:
        """Records of ``kind`` by key; with ``at_most=(column, value)``, only those whose
        column is <= value (claimed, where a write transaction locks: others skip them);
        with ``where=(column, value)``, those whose column is that value; with
        ``after=(column, value)``, those whose column is greater, in that column's order;
        ``order``: the column to order by instead of the key."""

    @abstractmethod
    def keys_under(self, kind: str, prefixes: Sequence[str]) -> list[str]:
        """The keys of ``kind`` that start with one of ``prefixes``, in key order."""

    @abstractmethod
    def keys_by(self, kind: str, column: str, values: Sequence[str]) -> list[tuple[str, str]]:
        """(key, that column's value) of the records of ``kind`` whose indexed ``column``
        is one of ``values``, in key order."""

    # -- the log and the whole projection ---------------------------------------------
    @abstractmethod
    def events(self, since: int, run_id: str | None, limit: int) -> list[Event]: ...

    @abstractmethod
    def last_seq(self) -> int:
        """The ``seq`` of the log's last event (0: the log is empty)."""

    @abstractmethod
    def first_seq(self) -> int:
        """The seq of the log's first event (compaction removed those before it); on an
        empty log, the seq the next event gets."""

    @abstractmethod
    def snapshot_seq(self, *, lock: bool = False) -> int:
        """The seq of the latest complete snapshot (0: none); with ``lock``, for changing it."""

    @abstractmethod
    def compacted_records(self, limit: int) -> list[tuple[int, int, list[str]]]:
        """Up to ``limit`` of the oldest log records the latest snapshot covers (never the
        last record): each one's seq, number of events and the runs they are about."""

    @abstractmethod
    def snapshot_parts(self, seq: int) -> Iterator[bytes]:
        """The parts of the snapshot taken at ``seq`` (store/snapshots.py), in order."""

    def iter_all_events(self, batch: int = 5000, since: int = 0) -> Iterator[Event]:
        """The log after ``since`` in seq order, read ``batch`` events at a time."""
        while True:
            evs = self.events(since, None, batch)
            if not evs:
                return
            yield from evs
            since = evs[-1].seq

    @abstractmethod
    def snapshot(self) -> State: ...

    @abstractmethod
    def encode_snapshot(self) -> list[bytes]:
        """The parts of a snapshot of the state as of ``last_seq()``
        (``snapshots.encode_parts`` of ``snapshot()``), read with the runs and tasks a page
        of rows at a time: only the compressed parts are ever all in memory. Call it in a
        read transaction that sees one snapshot of the store (``read(snapshot=True)``)."""


class WriteTx(ReadTx):
    """A write transaction: what a command loads, claims and saves.

    Records a write transaction loads are the ones it may change. A store whose writers run
    concurrently (PostgreSQL) locks them: ``load_runs`` waits for each run's row lock, the
    ``*_run_ids`` / ``ready_candidates`` / ``cron_due_task_ids`` claims skip rows another
    transaction holds, and ``load_tasks`` / ``paused`` lock only when asked. A store that
    serializes whole write transactions (SQLite) needs none of that.
    """

    @abstractmethod
    def load_runs(self, run_ids: Sequence[str], state: State) -> None: ...

    def hold_leasing(self) -> None:
        """Keep every worker from leasing until this transaction ends (a pause): a lease
        turn in progress commits first, and one that begins after reads what this one
        wrote. Nothing to do where write transactions run one at a time (SQLite)."""

    @abstractmethod
    def connection(self) -> Any:
        """The DB-API connection this transaction runs on, with everything it decided so
        far sent (``@app.transaction`` runs the user's statements in it)."""

    @abstractmethod
    def load_tasks(self, task_ids: Sequence[str], state: State, *, lock: bool = False) -> None:
        """Load tasks into ``state``; with ``lock``, for changing them."""

    @abstractmethod
    def load_records(self, kind: str, keys: Sequence[str], state: State) -> None:
        """Load these records of ``kind`` into ``state`` (locked for changing them)."""

    @abstractmethod
    def due_run_ids(self, now: float, limit: int) -> list[str]: ...

    @abstractmethod
    def expired_lease_run_ids(self, now: float, limit: int) -> list[str]: ...

    @abstractmethod
    def cron_due_task_ids(self, now: float, limit: int) -> list[str]: ...

    @abstractmethod
    def rate_accounts_free(self, keys: Sequence[str]) -> set[str]:
        """Of these rate limit accounts, those this transaction may decide now. A store
        with concurrent writers serializes the decisions on each account with a lock it
        only tries (as for concurrency keys): taken one by one in each turn's order,
        waiting, two turns could each hold the account the other waits for."""

    @abstractmethod
    def ready_candidates(
        self,
        now: float,
        queues: Sequence[str] | None,
        names: Sequence[str],
        limit: int,
        offset: int = 0,
        without: Sequence[str] = (),
    ) -> list[Run]:
        """Ready runs of these task names (and queues), best first: priority, time, id;
        ``without``: but those that count in these rate limit accounts.

        None while the engine is paused.
        """

    @abstractmethod
    def save(self, state: State, events: Sequence[Event]) -> None:
        """Append ``events`` (assigning seq) and write the records ``state`` marks dirty."""

    def update_runs_if_unchanged(self, fences: Sequence[Fence], after: Sequence[Run]) -> bool:
        """Write each run of ``after`` over the stored one only if that is still exactly
        the matching row of ``fences`` (the run as it was written, before this transaction
        began: ``rows.Fence``). Returns False if any was not; the caller then drops the
        transaction. Stores that say ``fenced_updates`` implement it."""
        raise NotImplementedError

    # -- compaction (engine/compaction.py) -----------------------------------------------
    @abstractmethod
    def put_snapshot_part(self, seq: int, part: int, body: bytes) -> None: ...

    @abstractmethod
    def complete_snapshot(self, seq: int) -> bool:
        """Make the snapshot taken at ``seq`` the latest, dropping older ones; False (and
        its parts dropped) when a later one completed first."""

    @abstractmethod
    def delete_log_records(self, first: int, last: int, runs: Sequence[tuple[str, int]]) -> None:
        """Delete the log records from seq ``first`` to ``last`` and their ``(run_id,
        seq)`` index entries ``runs`` (found by ``compacted_records``)."""

    @abstractmethod
    def wake_on_commit(self) -> None:
        """Wake waiting workers (this process and others) once this transaction commits."""

    def ended_on_commit(self, run_ids: Sequence[str]) -> None:
        """These runs end (a terminal state) in this transaction: once it commits, tell the
        ``ended_waiter``s. Stores without them ignore it; ``RunHandle.result`` then polls."""


class Waiter(ABC):
    """Blocks a worker until something may have become ready, or a timeout."""

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a wake-up (consuming it); True if one came."""

    @abstractmethod
    def fileno(self) -> int:
        """A descriptor that becomes readable on a wake-up (for the worker's select)."""

    @abstractmethod
    def close(self) -> None: ...


class EndedWaiter(ABC):
    """Blocks ``RunHandle.result`` until a commit says its run ended, or a timeout."""

    @property
    @abstractmethod
    def heard(self) -> bool:
        """True once every committer tells this waiter (until then, callers poll often)."""

    @abstractmethod
    def clear(self) -> None:
        """Forget the wake-ups received so far (they were about other runs)."""

    @abstractmethod
    def wait_for(self, run_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True once a commit ended ``run_id`` (or may have)."""


class Store(ABC):
    url: str
    #: the schema version of the open store (the current one: opening migrates)
    schema_version: int
    #: whether its transactions offer ``Tx.update_runs_if_unchanged``
    fenced_updates: bool = False

    @property
    def store_id(self) -> str:
        """The id the store was created with: the same store under every URL that reaches it."""
        found: str | None = getattr(self, "_store_id", None)
        if found is None:
            with self.read() as tx:
                found = tx.meta("store_id") or ""
            self._store_id = found
        return found

    @property
    def display_url(self) -> str:
        """The URL to show people (without a password)."""
        return self.url

    @abstractmethod
    def write(self) -> AbstractContextManager[WriteTx]: ...

    def write_in(self, connection: Any) -> AbstractContextManager[WriteTx]:
        """A write transaction inside the caller's open transaction on ``connection`` (a
        DB-API connection to the store's own database), which it never commits.

        Its work runs in a savepoint: when it fails, the caller's transaction is as it was.
        It appends its log record but leaves the commit, or the rollback, to the caller;
        waiting workers are woken once the caller commits (docs/transactions.md). A
        connection that does not reach this store is refused with ``InvalidArgument``."""
        raise InvalidArgument(
            f"the store {self.display_url!r} cannot write inside your own transaction "
            "(connection=): submit without it"
        )

    @abstractmethod
    def read(self, *, snapshot: bool = False) -> AbstractContextManager[ReadTx]:
        """A read-only transaction; with ``snapshot``, every read in it sees one snapshot."""

    def ping(self, timeout: float) -> None:
        """Read the store once, giving up after about ``timeout`` seconds when it cannot be
        reached (a readiness probe); raises StoreError when it cannot be read."""
        with self.read() as tx:
            tx.paused()

    @abstractmethod
    def notify(self) -> None:
        """Wake waiting workers (in this process and others) after a commit."""

    @abstractmethod
    def waiter(self) -> Waiter: ...

    def ended_waiter(self) -> EndedWaiter | None:
        """This thread's waiter for runs that end, or None (``RunHandle.result`` polls)."""
        return None

    def remove_compacted_log(self) -> Iterator[int]:
        """Remove what the log holds before the latest snapshot where the store can do so
        in bulk (PostgreSQL: partitions dropped whole, the rest deleted by seq range,
        oldest first), a step at a time; yields how many events each step removed. What
        is left, compaction deletes a batch of records at a time."""
        return iter(())  # (SQLite: one table, deleted a batch at a time)

    def reclaim_log(self) -> None:
        """After a compaction deleted log records: make the space they held reusable now,
        where the store does not do so as it deletes."""
        return None  # (SQLite: the pages it frees are reused by the next writes at once)

    def release_memory(self) -> None:
        """Free what this thread's connection caches, after a large piece of work that
        passes (compaction), so that a long-lived process does not hold it until it
        closes."""
        return None  # (PostgreSQL: the server caches, not this process)

    @abstractmethod
    def close(self) -> None: ...


def open_store(
    url: str | None = None, *, migrate: bool | None = None, create: bool = True
) -> Store:
    """Open the store at ``url``; see README.md, "Stores".

    A new store is created and an older schema migrated, unless ``migrate`` is False (or,
    for PostgreSQL, the URL says ``auto_migrate=false``): then a store whose schema is not
    current is refused with StoreError. ``migrate=True`` migrates whatever the URL says.
    With ``create=False`` a store that does not exist yet is refused (StoreError naming
    it) rather than created: what commands that only read use.
    """
    resolved = resolve_url(url)
    scheme = resolved.split(":", 1)[0]
    opener = _OPENERS.get(scheme)
    if opener is None:
        raise StoreError(
            f"unsupported store URL {resolved!r}: use sqlite:///relative.db, sqlite:////abs.db "
            "or postgresql://user@host:port/db"
        )
    return opener(resolved, migrate, create)


def auto_migrate_of(value: str, url: str) -> bool:
    """A store URL's ``auto_migrate=`` (either store): true or false."""
    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise StoreError(f"invalid auto_migrate={value!r} in {url!r}: use true or false")
    return value.lower() in ("true", "1", "yes")


Opener = Callable[[str, "bool | None", bool], Store]
_OPENERS: dict[str, Opener] = {}


def register_store(scheme: str, opener: Opener) -> None:
    """Make ``open_store`` open URLs of ``scheme`` with ``opener(url, migrate, create)``."""
    _OPENERS[scheme] = opener
