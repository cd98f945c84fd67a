"""The PostgreSQL log in partitions by seq range, made ahead of the log and dropped whole.

``ms_log`` and ``ms_log_runs`` are partitioned by ``seq`` (a record's first event) into
ranges of ``log_partition`` events (a URL parameter, store/pg_url.py), named
``ms_log_<lo>_<hi>`` and ``ms_log_runs_<lo>_<hi>`` and always made and dropped together.
Why: rows a compaction deletes free space that PostgreSQL reuses only after a VACUUM, and
the log written meanwhile extends the files; a dropped partition gives its files back at
once, and a partition is written once, in seq order, so the log's size is bounded by the
partitions a snapshot does not cover yet.

* **Made ahead.** There are always partitions for the next ``AHEAD`` ranges past the
  counter. A writer that commits an event within one range of the last partition's end
  makes more, after its commit, in a short transaction of its own under an advisory lock
  (``ATTACH PARTITION`` takes a lock that neither inserts nor reads wait for). Should a
  write still find no partition for its seq (partitions not made, say a lock they waited
  for timed out), it is rolled back, the partitions are made, and the engine runs the
  command again (``Conflict``).
* **Dropped whole.** A compaction drops the partitions its snapshot covers entirely, the
  last record excepted (it says where the log goes on, ``LogTx``), then deletes the
  covered records of the partition the snapshot ends in by seq range (both tables are
  partitioned alike, so nothing is read or decoded to find a record's runs).
  ``DROP TABLE`` of a partition locks the whole log for the moment it takes: it waits
  at most ``LOCK_TIMEOUT`` for the transactions that read or write it, and, failing
  that, leaves the partition to the row deletes, a transaction per partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

#: partitions kept made past the one the counter is in
AHEAD = 2
#: how long making or dropping partitions waits for a lock before it gives up for now
LOCK_TIMEOUT = "200ms"
#: after making partitions failed, how long a writer waits before it tries again
RETRY_AFTER = 1.0
LOCK_NOT_AVAILABLE = "55P03"  # (a lock_timeout that ran out)


def _name(table: str, lo: int, hi: int) -> str:
    return f"{table}_{lo}_{hi}"


def _ranges(con: Any) -> list[tuple[int, int]]:
    """The log's partitions, as (lo, hi), in order."""
    rows = con.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'ms_log'::regclass"
    ).fetchall()
    out = []
    for (name,) in rows:
        lo, hi = name.rsplit("_", 2)[1:]
        out.append((int(lo), int(hi)))
    return sorted(out)


def _make(con: Any, lo: int, hi: int) -> None:
    """Make the partitions of both tables for seqs ``lo`` to ``hi - 1``: each made apart
    (like the parent: its key, storage and compression), then attached."""
    for table, options in (("ms_log", " WITH (toast_tuple_target = 8160)"), ("ms_log_runs", "")):
        name = _name(table, lo, hi)
        con.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING ALL){options}")
        con.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")


def partition_log(con: Any, size: int) -> None:
    """Schema version 6: the plain ``ms_log`` and ``ms_log_runs`` become the first
    partitions of partitioned tables of the same names (no row is copied), and the
    partitions ahead are made. Runs in the migration's transaction."""
    last = int(con.execute("SELECT last FROM ms_seq").fetchone()[0])
    hi = (last // size + 1) * size
    for table, columns, key in (
        ("ms_log", "seq bigint NOT NULL, last_seq bigint NOT NULL, events bytea NOT NULL", "seq"),
        ("ms_log_runs", "run_id text NOT NULL, seq bigint NOT NULL", "run_id, seq"),
    ):
        first = _name(table, 0, hi)
        con.execute(f"ALTER TABLE {table} RENAME TO {first}")
        key_name = con.execute(  # (version 2's table may have got ms_log_pkey1)
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            (first,),
        ).fetchone()[0]
        con.execute(f"ALTER TABLE {first} RENAME CONSTRAINT {key_name} TO {first}_pkey")
        con.execute(
            f"CREATE TABLE {table} ({columns}, PRIMARY KEY ({key})) PARTITION BY RANGE (seq)"
        )
        if table == "ms_log":
            con.execute("ALTER TABLE ms_log ALTER COLUMN events SET STORAGE MAIN")
            compression = con.execute(
                "SELECT attcompression FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attname = 'events'",
                (first,),
            ).fetchone()[0]
            if compression == "l":  # (the server has lz4: store/pg_schema.py, version 2)
                con.execute("ALTER TABLE ms_log ALTER COLUMN events SET COMPRESSION lz4")
        con.execute(f"ALTER TABLE {table} ATTACH PARTITION {first} FOR VALUES FROM (0) TO ({hi})")
    while hi <= last + AHEAD * size:
        _make(con, hi, hi + size)
        hi += size


class LogPartitions:
    """One store's partitions of the log, as its writers and compactions see them."""

    def __init__(self, size: int, lock_key: str) -> None:
        self.size = size
        self.lock_key = lock_key  # the advisory lock that makes partitions one at a time
        self.until = 0  # the end of the last partition this process knows of
        self._retry_at = 0.0

    def committed(self, con: Any, last_seq: int) -> None:
        """After a commit that numbered events up to ``last_seq``: make partitions ahead
        if they run short (``con`` is idle, in autocommit mode)."""
        if last_seq + self.size > self.until and time.monotonic() >= self._retry_at:
            self.try_make_ahead(con)

    def try_make_ahead(self, con: Any) -> None:
        """``make_ahead``, which never raises: the caller's commit stands (or its command
        runs again), and the next writer tries again."""
        try:
            self.make_ahead(con)
        except Exception as exc:  # (psycopg's, a lock timeout above all)
            self._retry_at = time.monotonic() + RETRY_AFTER
            routine = getattr(exc, "sqlstate", None) == LOCK_NOT_AVAILABLE
            log.log(
                logging.DEBUG if routine else logging.WARNING,
                "making the log's partitions ahead failed, for now: %s",
                exc,
            )

    def make_ahead(self, con: Any) -> None:
        """Make partitions up to ``AHEAD`` ranges past the counter's last seq."""
        with con.transaction():
            con.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
            con.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (self.lock_key,))
            last = int(con.execute("SELECT last FROM ms_seq").fetchone()[0])
            hi = max((h for _, h in _ranges(con)), default=0)
            while hi <= last + AHEAD * self.size:
                _make(con, hi, hi + self.size)
                hi += self.size
        self.until = hi

    def remove_covered(self, con: Any) -> Iterator[int]:
        """Remove what the latest snapshot covers, all but the last record, a step at a
        time: the partitions it covers entirely, dropped in one transaction (skipped when
        the lock on the log was not had in time), then the covered records of each
        partition left, deleted by seq range, a transaction per partition, oldest first.
        Yields how many events each step removed."""
        for attempt in range(3):
            try:
                with con.transaction():
                    con.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
                    dropped = self._drop_covered(con)
                break
            except Exception as exc:
                if getattr(exc, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                time.sleep(0.1 * (attempt + 1))
        else:
            dropped = 0
        if dropped:
            yield dropped
        snapshot, top = _bounds(con)
        for lo, hi in _ranges(con):
            if top is None or lo > min(snapshot, top - 1):
                return
            with con.transaction():
                # (no decoding: ms_log_runs is in the same partitions, found by seq)
                removed, upto = con.execute(
                    "WITH d AS (DELETE FROM ms_log WHERE seq >= %s AND seq < %s "
                    "AND last_seq <= %s AND seq < %s RETURNING seq, last_seq) "
                    "SELECT coalesce(sum(last_seq - seq + 1), 0), max(seq) FROM d",
                    (lo, hi, snapshot, top),
                ).fetchone()
                if upto is not None:
                    con.execute("DELETE FROM ms_log_runs WHERE seq >= %s AND seq <= %s", (lo, upto))
            if removed:
                yield int(removed)

    @staticmethod
    def _drop_covered(con: Any) -> int:
        snapshot, top = _bounds(con)
        if top is None:
            return 0
        covered = [(lo, hi) for lo, hi in _ranges(con) if hi <= min(snapshot + 1, top)]
        if not covered:
            return 0
        end = covered[-1][1]
        row = con.execute(
            "SELECT (SELECT last_seq FROM ms_log WHERE seq < %s ORDER BY seq DESC LIMIT 1) "
            "- (SELECT min(seq) FROM ms_log) + 1",
            (end,),
        ).fetchone()
        names = [_name(t, lo, hi) for lo, hi in covered for t in ("ms_log", "ms_log_runs")]
        con.execute(f"DROP TABLE IF EXISTS {', '.join(names)}")  # (or a compaction beside)
        return int(row[0] or 0)

    @staticmethod
    def first(con: Any) -> list[str]:
        """The names of the first partition of both tables (what row deletes leave
        space in)."""
        ranges = _ranges(con)
        return [_name(t, *ranges[0]) for t in ("ms_log", "ms_log_runs")] if ranges else []


def _bounds(con: Any) -> tuple[int, int | None]:
    """The latest snapshot's seq, and the seq of the log's last record (None: no log)."""
    snapshot, top = con.execute(
        "SELECT (SELECT value FROM ms_meta WHERE key = 'snapshot')::bigint, "
        "(SELECT max(seq) FROM ms_log)"
    ).fetchone()
    return int(snapshot), None if top is None else int(top)


def missing_partition(exc: BaseException) -> bool:
    """Did a write fail for want of a partition for its seq?"""
    diag = getattr(exc, "diag", None)
    return (
        getattr(exc, "sqlstate", None) == "23514"
        and diag is not None
        and diag.table_name in ("ms_log", "ms_log_runs")
    )
