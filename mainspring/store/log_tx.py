"""The log's reads and compaction's writes, shared by the stores' transactions.

The log is one record per write transaction (store/rows.py), ``ms_log_runs`` indexes
the records by run. Compaction (engine/compaction.py) keeps a snapshot of the whole
state in ``ms_snapshots`` (store/snapshots.py), and the seq of the latest complete one in
``ms_meta`` (key ``snapshot``), then deletes the records up to that seq. It never deletes
the last record: the next record is numbered after it (SQLite), and ``first_seq`` then
still says where the log starts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..core.model import MAX_SEQ, Event
from .dialect import Dialect
from .rows import decode_record, record_run_ids

#: snapshot parts read per query
_PARTS_PER_READ = 8


class LogTx:
    """Reads of the log and snapshots, and compaction's writes (the hooks of ``KindTx``)."""

    DIALECT: Dialect

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _write_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _lock(self, skip: bool = False) -> str:
        return ""

    def meta(self, key: str) -> str | None:
        raise NotImplementedError

    def events(self, since: int, run_id: str | None, limit: int) -> list[Event]:
        if since >= MAX_SEQ:
            return []  # (nothing can come after; since + 1 would not fit the column)
        # from the record that holds event since + 1 (or ends before it), a page of
        # records at a time; each holds at least one event wanted, so `limit` are enough
        p = self.DIALECT.placeholder
        start = f"(SELECT coalesce(max(seq), 0) FROM ms_log WHERE seq <= {p})"
        if run_id is None:
            # (and no record that starts past the last event wanted: records can be large)
            # (nor the record that ends at or before since: following the log's end would
            # decode that record, however large, at every look)
            q = f"SELECT seq, events FROM ms_log WHERE seq >= {start} AND seq <= {p} "
            q += f"AND last_seq > {p} AND seq > {p} ORDER BY seq LIMIT {p}"
            params: tuple[Any, ...] = (since + 1, min(since + limit, MAX_SEQ), since)
        else:
            q = (
                "SELECT l.seq, l.events FROM ms_log_runs r JOIN ms_log l ON l.seq = r.seq "
                f"WHERE r.run_id = {p} AND r.seq >= {start} AND r.seq > {p} "
                f"ORDER BY r.seq LIMIT {p}"
            )
            params = (run_id, since + 1)
        out: list[Event] = []
        page = min(limit, 100)
        after = -1  # the last record read
        while len(out) < limit:
            rows = self._rows(q, (*params, after, page))
            for seq, body in rows:
                out.extend(e for e in decode_record(seq, body, run_id) if e.seq > since)
                if len(out) >= limit:
                    break  # (the page's other records are not needed)
            if len(rows) < page:
                break
            after = rows[-1][0]
        return out[:limit]

    def last_seq(self) -> int:
        rows = self._rows("SELECT last_seq FROM ms_log ORDER BY seq DESC LIMIT 1")
        return int(rows[0][0]) if rows else 0

    def first_seq(self) -> int:
        """The seq of the log's first event (compaction removed those before it); on an
        empty log, the seq the next event gets."""
        # compaction keeps the last record, so an empty log has never had an event: 1. (One
        # statement: reading the last seq after finding none would see an event a writer
        # committed meanwhile, and call the first event compacted away.)
        rows = self._rows("SELECT coalesce(min(seq), 1) FROM ms_log")
        return int(rows[0][0])

    # -- snapshots and compaction ------------------------------------------------------------
    def snapshot_seq(self, *, lock: bool = False) -> int:
        """The seq of the latest complete snapshot (0: none); with ``lock``, for changing it."""
        p = self.DIALECT.placeholder
        rows = self._rows(
            f"SELECT value FROM ms_meta WHERE key = {p}" + (self._lock() if lock else ""),
            ("snapshot",),
        )
        return int(rows[0][0]) if rows else 0

    def snapshot_parts(self, seq: int) -> Iterator[bytes]:
        """The parts of the snapshot taken at ``seq``, in order, a few at a time."""
        p = self.DIALECT.placeholder
        after = -1
        while True:
            rows = self._rows(
                f"SELECT part, body FROM ms_snapshots WHERE seq = {p} AND part > {p} "
                f"ORDER BY part LIMIT {_PARTS_PER_READ}",
                (seq, after),
            )
            for _, body in rows:
                yield bytes(body)
            if len(rows) < _PARTS_PER_READ:
                return
            after = rows[-1][0]

    def put_snapshot_part(self, seq: int, part: int, body: bytes) -> None:
        # over a part an earlier compaction at the same seq wrote (it crashed, or runs at
        # the same time): the same state, cut the same way, so the same part
        p = self.DIALECT.placeholder
        self._write_many(
            f"INSERT INTO ms_snapshots (seq, part, body) VALUES ({p}, {p}, {p}) "
            "ON CONFLICT (seq, part) DO UPDATE SET body = excluded.body",
            [(seq, part, body)],
        )

    def complete_snapshot(self, seq: int) -> bool:
        """Make the snapshot taken at ``seq`` the latest, dropping older ones; False (and
        its parts dropped) when a later one completed first."""
        p = self.DIALECT.placeholder
        if seq <= self.snapshot_seq(lock=True):
            self._write_many(f"DELETE FROM ms_snapshots WHERE seq = {p}", [(seq,)])
            return False
        self._write_many(
            f"UPDATE ms_meta SET value = {p} WHERE key = {p}", [(str(seq), "snapshot")]
        )
        self._write_many(f"DELETE FROM ms_snapshots WHERE seq < {p}", [(seq,)])
        return True

    def compacted_records(self, limit: int) -> list[tuple[int, int, list[str]]]:
        """Up to ``limit`` of the oldest log records the latest snapshot covers (never the
        last record): for each, its seq, how many events it holds and the runs they are
        about (what ``delete_log_records`` needs). Records never change, so a write
        transaction can delete what a read found."""
        p = self.DIALECT.placeholder
        rows = self._rows(
            f"SELECT seq, events FROM ms_log WHERE last_seq <= {p} "
            f"AND seq < (SELECT max(seq) FROM ms_log) ORDER BY seq LIMIT {p}",
            (self.snapshot_seq(), limit),
        )
        out: list[tuple[int, int, list[str]]] = []
        for seq, body in rows:
            evs = decode_record(seq, body)
            out.append((int(seq), len(evs), record_run_ids(evs)))
        return out

    def delete_log_records(self, first: int, last: int, runs: Sequence[tuple[str, int]]) -> None:
        """Delete the log records from seq ``first`` to ``last`` and their ``(run_id,
        seq)`` index entries ``runs``."""
        p = self.DIALECT.placeholder
        self._write_many(f"DELETE FROM ms_log WHERE seq >= {p} AND seq <= {p}", [(first, last)])
        if self.DIALECT.arrays:  # (one statement, not one per row)
            self._write_many(  # (the seq range: only the partitions that hold them)
                f"DELETE FROM ms_log_runs WHERE seq >= {p} AND seq <= {p} AND (run_id, seq) IN "
                f"(SELECT * FROM unnest({p}::text[], {p}::bigint[]))",
                [(first, last, [r for r, _ in runs], [s for _, s in runs])],
            )
        else:
            self._write_many(f"DELETE FROM ms_log_runs WHERE run_id = {p} AND seq = {p}", runs)
