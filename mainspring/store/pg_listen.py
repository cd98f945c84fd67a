"""Wake-ups on PostgreSQL: a connection that LISTENs on the store's channel."""

from __future__ import annotations

import os
import select
import time
from typing import TYPE_CHECKING, Any

import psycopg

from .base import Waiter

if TYPE_CHECKING:
    from .postgres import PostgresStore


class PostgresWaiter(Waiter):
    """A connection that LISTENs on the store's channel; reconnects when it drops."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.con: Any = None
        self._idle_r, self._idle_w = os.pipe()  # never readable: select on it while down
        self._connect()

    def _connect(self) -> bool:
        try:
            con = psycopg.connect(self.store.conninfo, autocommit=True, connect_timeout=5)
            con.execute(f'LISTEN "{self.store.channel}"')
        except psycopg.Error:
            self.con = None
            return False
        self.con = con
        return True

    def fileno(self) -> int:
        if self.con is None and not self._connect():
            return self._idle_r
        return int(self.con.pgconn.socket)

    def _drain(self) -> bool:
        """Consume pending notifications; True if any (or if the connection was renewed)."""
        if self.con is None:
            return self._connect()  # back after an outage: something may have been missed
        got = False
        try:
            pg = self.con.pgconn
            pg.consume_input()
            while pg.notifies() is not None:
                got = True
            if pg.status != psycopg.pq.ConnStatus.OK:
                raise psycopg.OperationalError("the LISTEN connection was closed")
        except psycopg.Error:
            self._close_con()
            self._connect()
            return True  # a wake-up may have been missed while it was down
        return got

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._drain():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                select.select([self.fileno()], [], [], left)
            except (OSError, ValueError):
                time.sleep(min(left, 0.05))

    def _close_con(self) -> None:
        if self.con is not None:
            try:
                self.con.close()
            except psycopg.Error:
                pass
            self.con = None

    def close(self) -> None:
        self._close_con()
        for fd in (self._idle_r, self._idle_w):
            try:
                os.close(fd)
            except OSError:
                pass
