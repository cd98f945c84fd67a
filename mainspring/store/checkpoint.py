"""The SQLite store's background checkpointer: the WAL copied into the file off the hot path."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("mainspring.store")

#: The background checkpointer copies the WAL into the database file each time this many
#: events have been committed through a store (see ``_Checkpointer``).
CHECKPOINT_EVENTS = 2000


class Checkpointer:
    """Copies the WAL back into the database file from a thread of its own.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, so
    every thousandth page or so a worker's turn waits for pages to be copied and the
    database file to be synced. Here commits only count what they wrote; past
    ``CHECKPOINT_EVENTS`` a daemon thread runs a PASSIVE checkpoint on its own connection,
    which waits for no reader or writer (a checkpoint that another process is already
    running is simply skipped). Durability is unchanged: a commit is durable in the WAL
    according to ``synchronous``, whenever its pages reach the database file.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._pending = 0
        self._go = threading.Event()
        self._closed = False
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def committed(self, events: int) -> None:
        self._pending += events
        if self._pending < CHECKPOINT_EVENTS or self._closed:
            return
        self._pending = 0
        if self._pid != os.getpid():  # not started yet, or this is a forked child
            with self._lock:
                if self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._go = threading.Event()
                    self._thread = threading.Thread(
                        target=self._run,
                        args=(self._go,),
                        name="mainspring-checkpoint",
                        daemon=True,
                    )
                    self._thread.start()
        self._go.set()

    def _run(self, go: threading.Event) -> None:
        con = self._connect()
        try:
            while True:
                go.wait()
                go.clear()
                if self._closed:
                    return
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the next round tries again; the valve holds
                    log.debug("background checkpoint failed: %s", exc)
        finally:
            con.close()

    def close(self) -> None:
        self._closed = True
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            self._go.set()
            thread.join(timeout=10)
