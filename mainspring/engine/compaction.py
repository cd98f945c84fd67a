"""Compaction: a snapshot of the whole state at one seq, then the log up to it deleted.

Nothing here stops the workers. The state is read in one read transaction (a snapshot of
the store: on SQLite a WAL reader, on PostgreSQL REPEATABLE READ), which is the state
after the log's last event at that moment, ``seq``; its runs and tasks a page of rows at a
time, encoded into compressed parts as they come (``ReadTx.encode_snapshot``), so that
the compacting process never holds the whole state. Its parts are written a transaction
each; the transaction that makes the snapshot the latest records ``log.compacted``;
then the log records it covers are removed, oldest first: what the store can remove in
bulk (PostgreSQL's partitions, dropped whole, then deleted by seq range:
store/pg_log_parts.py), then the rest a batch of records per transaction (read and
decoded before the write transaction, which only deletes). A crash
at any point leaves a store that opens and verifies: a snapshot whose ``log.compacted``
did not commit is never read (its parts go with the next compaction), and the log is
always whole from its first record on (docs/operations.md, "Compaction").
"""

from __future__ import annotations

from collections.abc import Callable

from ..core import events as E
from ..store.base import WriteTx
from .batch import Batch
from .memory import release_free_memory
from .transact import Transactor

#: log records deleted per transaction
DELETE_BATCH = 500

Progress = Callable[[int, int], None]


class CompactionCommands(Transactor):
    def compact(self, progress: Progress | None = None) -> tuple[int, int]:
        """Snapshot the state and delete the log up to it: (the snapshot's seq, how many
        events were deleted). ``progress(done, total)`` hears the events deleted."""
        with self.store.read(snapshot=True) as tx:
            latest = tx.snapshot_seq()
            first = tx.first_seq()
            seq = tx.last_seq()
            parts = tx.encode_snapshot() if seq > latest else []
        if seq > latest:
            for part, body in enumerate(parts):
                with self.store.write() as w:
                    w.put_snapshot_part(seq, part, body)
            self.transact(lambda w, b: self._complete(w, b, seq))
        del parts
        total = max(0, seq - first + 1)
        removed = 0
        for n in self.store.remove_compacted_log():
            removed += n
            if progress is not None:
                progress(min(removed, total), total)
        while True:
            with self.store.read() as r:  # (read and decoded outside the write lock)
                batch = r.compacted_records(DELETE_BATCH)
            if not batch:
                if removed:
                    self.store.reclaim_log()
                # what reading the state took: the connection's cached pages, then the
                # heap's free pages (engine/memory.py)
                self.store.release_memory()
                release_free_memory()
                return seq, removed
            with self.store.write() as w:
                w.delete_log_records(
                    batch[0][0], batch[-1][0], [(rid, s) for s, _, rids in batch for rid in rids]
                )
            removed += sum(n for _, n, _ in batch)
            if progress is not None:
                progress(min(removed, total), total)

    @staticmethod
    def _complete(tx: WriteTx, b: Batch, seq: int) -> None:
        if tx.complete_snapshot(seq):
            b.emit(E.log_compacted(b.now, seq))
