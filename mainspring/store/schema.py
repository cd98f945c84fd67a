"""The schema: every table of a store, by version, written once for both stores.

``migration(version, dialect)`` is the list of statements that takes a store from
``version - 1`` to ``version``; each store runs them one by one, in its schema transaction,
after filling in its ``Dialect.ddl`` (column types, and the few storage options only one
store has). Versions from 3 on also create the tables of the record kinds that version
adds (store/kinds.py). Data that a migration must rewrite (version 2: the log as records)
is the store's own step, run after the statements of its version.

A version's statements never change once stores are written at it (a store at version N
runs only those of the later versions): a change to the schema is a new version
(tests/store/test_schema_versions.py holds each version to its statements).
"""

from __future__ import annotations

from .dialect import Dialect
from .kinds import KINDS

SCHEMA_VERSION = 8
APP_ID = "mainspring"
#: Every table a store of the current version has (what marks a schema as mainspring's).
TABLES = (
    "ms_meta",
    "ms_log",
    "ms_log_runs",
    "ms_tasks",
    "ms_runs",
    "ms_definitions",
    "ms_engine",
    "ms_snapshots",
    *(k.table for k in KINDS),
)

_VERSIONS: dict[int, str] = {
    1: """
    CREATE TABLE ms_meta (key {text} PRIMARY KEY, value {text} NOT NULL);
    {counter}
    CREATE TABLE ms_log (
        seq {seq} PRIMARY KEY,
        event_id {text} NOT NULL,
        type {text} NOT NULL,
        at {real} NOT NULL,
        task_id {text},
        run_id {text},
        attempt_id {text},
        correlation_id {text},
        execution_id {text},
        data {json} NOT NULL
    );
    CREATE INDEX ms_log_run ON ms_log (run_id, seq) WHERE run_id IS NOT NULL;
    CREATE TABLE ms_tasks (
        task_id {text} PRIMARY KEY,
        name {text} NOT NULL,
        idempotency_key {text},
        kind {text} NOT NULL,
        canceled {bool} NOT NULL,
        cron_next {real},
        doc {json} NOT NULL
    );
    CREATE UNIQUE INDEX ms_tasks_idem ON ms_tasks (name, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX ms_tasks_cron ON ms_tasks (cron_next) WHERE cron_next IS NOT NULL;
    CREATE TABLE ms_runs (
        run_id {text} PRIMARY KEY,
        task_id {text} NOT NULL,
        task_name {text} NOT NULL,
        state {text} NOT NULL,
        scheduled_at {real} NOT NULL,
        due_at {real} NOT NULL,
        priority {int} NOT NULL,
        queue {text} NOT NULL,
        concurrency_key {text},
        holds_key {bool} NOT NULL,
        lease_owner {text},
        lease_expires_at {real},
        doc {json} NOT NULL
    );
    CREATE INDEX ms_runs_task ON ms_runs (task_id);
    CREATE INDEX ms_runs_completed ON ms_runs (scheduled_at, run_id) WHERE state = 'completed';
    CREATE INDEX ms_runs_failed ON ms_runs (scheduled_at, run_id) WHERE state = 'failed';
    CREATE INDEX ms_runs_canceled ON ms_runs (scheduled_at, run_id) WHERE state = 'canceled';
    CREATE INDEX ms_runs_suspended ON ms_runs (scheduled_at, run_id) WHERE state = 'suspended';
    CREATE INDEX ms_runs_due ON ms_runs (due_at) WHERE state IN ('scheduled', 'retry_wait');
    CREATE INDEX ms_runs_ready ON ms_runs (priority DESC, scheduled_at, run_id)
        WHERE state = 'ready';
    CREATE INDEX ms_runs_lease ON ms_runs (lease_expires_at) WHERE lease_owner IS NOT NULL;
    CREATE INDEX ms_runs_key ON ms_runs (concurrency_key) WHERE holds_key = {true};
    CREATE TABLE ms_definitions (name {text} PRIMARY KEY, doc {json} NOT NULL);
    CREATE TABLE ms_engine (id {int} PRIMARY KEY CHECK (id = 1), paused {bool} NOT NULL);
    INSERT INTO ms_engine (id, paused) VALUES (1, {false});
    """,
    # the log as one record per transaction (store/rows.py); each store copies the old
    # events over, one record each, after these statements
    2: """
    DROP INDEX ms_log_run;
    ALTER TABLE ms_log RENAME TO ms_log_v1;
    CREATE TABLE ms_log (
        seq {seq} PRIMARY KEY,
        last_seq {seq} NOT NULL,
        events {bytes} NOT NULL
    ){log_options};
    {log_storage}
    CREATE TABLE ms_log_runs (
        run_id {text} NOT NULL,
        seq {seq} NOT NULL,
        PRIMARY KEY (run_id, seq)
    ){log_runs_options};
    """,
    # a task's runs by time (misfire=skip finds its overdue occurrence, task listings), and
    # the worker registry (kinds)
    3: """
    DROP INDEX ms_runs_task;
    CREATE INDEX ms_runs_task ON ms_runs (task_id, scheduled_at);
    """,
    # workflows: a suspended run that sleeps or waits with a timeout comes due like a
    # scheduled one (its due_at is the wake time; NEVER, core/model.py, when there is
    # none), and the workflow kinds (kinds)
    4: """
    DROP INDEX ms_runs_due;
    UPDATE ms_runs SET due_at = 1e18 WHERE state = 'suspended';
    CREATE INDEX ms_runs_due ON ms_runs (due_at)
        WHERE state IN ('scheduled', 'retry_wait', 'suspended');
    """,
    # compaction's snapshots (store/snapshots.py), each in parts, the store's own id (what
    # ``connection=`` checks a caller's connection against), and runs by time in every
    # state (a page of ``app.runs`` without a state, the service's run list)
    5: """
    CREATE INDEX ms_runs_time ON ms_runs (scheduled_at, run_id);
    CREATE TABLE ms_snapshots (
        seq {seq} NOT NULL,
        part {int} NOT NULL,
        body {bytes} NOT NULL,
        PRIMARY KEY (seq, part)
    );
    INSERT INTO ms_meta (key, value) VALUES ('store_id', {random_id});
    INSERT INTO ms_meta (key, value) VALUES ('snapshot', '0');
    """,
    # PostgreSQL's log in partitions by seq range, which compaction drops whole: that
    # store's own step (store/pg_log_parts.py); nothing changes on SQLite
    6: "",
    # the due runs' predicate as equalities (dialect.py ``DUE``): SQLite builds a temporary
    # table for a list of three or more IN values each time it evaluates one, and every
    # change of a run's row evaluates the predicate twice (the row before and after)
    7: """
    DROP INDEX ms_runs_due;
    CREATE INDEX ms_runs_due ON ms_runs (due_at)
        WHERE state = 'scheduled' OR state = 'retry_wait' OR state = 'suspended';
    """,
    # the idempotency keys of debounced submissions (kinds: ms_idempotency)
    8: "",
}


def migration(version: int, dialect: Dialect) -> list[str]:
    """The statements that take a store from ``version - 1`` to ``version``."""
    text = _VERSIONS[version].format(**dialect.ddl)
    statements = [s.strip() for s in text.split(";") if s.strip()]
    return statements + [stmt for k in KINDS if k.since == version for stmt in k.ddl(dialect)]
