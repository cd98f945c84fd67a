"""A worker's handler slots: at most ``concurrency`` handlers run at once, ``def`` handlers
in a thread pool (``worker/pool.py``) and ``async def`` handlers on one event loop. Runs
the worker leased and started beyond its slots (``prefetch``) wait here in order, and each
takes the slot of the next handler that ends, so that it goes on at once rather than after
the loop's next commit.

The worker's loop decides what runs (it leases, records and abandons); this module only
starts handlers, passes slots on, and stops the handlers of abandoned attempts. It shares
the worker's lock, since which runs are in flight and which are waiting here change
together."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Callable

from ..engine import Finished
from .execute import Attempt, call_async, call_sync
from .pool import ThreadPool


class Slots:
    """Starts handlers in ``concurrency`` slots; runs beyond them wait for the next slot."""

    def __init__(
        self,
        concurrency: int,
        is_async: dict[str, bool],
        lock: threading.Lock,
        on_end: Callable[[Attempt, Finished | None], None],
    ) -> None:
        self.concurrency = concurrency
        self._is_async = is_async  # task name -> its handler is ``async def``
        self._lock = lock  # the worker's
        #: called in the handler's thread once it ended and its slot went on; ``Finished``
        #: None when a workflow recorded its attempt's end itself
        self._on_end = on_end
        self._queued: collections.deque[Attempt] = collections.deque()  # started ahead
        self._running = 0  # handlers running (at most ``concurrency``)
        self._pool = ThreadPool(concurrency, "mainspring")
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._aloop_thread = 0  # the ident of the thread running ``_aloop``

    @property
    def waiting(self) -> int:
        """Runs started ahead that wait for a slot (read under the worker's lock)."""
        return len(self._queued)

    @property
    def idle(self) -> int:
        """Slots no handler holds or has waiting for it (read under the worker's lock)."""
        return max(0, self.concurrency - self._running - len(self._queued))

    def place(self, att: Attempt) -> None:
        """A run leased and started: run its handler now if a slot is free, else queue it
        to follow the next handler that ends."""
        with self._lock:
            now = self._running < self.concurrency and not self._queued
            if now:
                self._running += 1
                att.running = True
            else:
                self._queued.append(att)
        if now:
            self._start(att)

    def interrupt(self, att: Attempt) -> None:
        """``att`` was abandoned or overran its timeout (its context is cancelled already):
        its slot goes on; an ``async def`` handler is cancelled, and a thread stuck in a
        ``def`` handler is replaced, so the pool keeps its capacity. One still waiting for
        a slot never runs."""
        if not self.ended(att):
            return
        if att.future is not None:
            self._cancel(att)
        else:
            self._pool.grow()

    def ended(self, att: Attempt) -> bool:
        """The handler of ``att`` ended (or was abandoned): its slot goes to the next run
        started ahead, if any. False if it was not running (ended before, or never ran)."""
        follow: Attempt | None = None
        with self._lock:
            if not att.running:
                with contextlib.suppress(ValueError):
                    self._queued.remove(att)
                return False
            att.running = False
            self._running -= 1
            while self._queued:  # (stopping too: runs started ahead finish in the grace period)
                nxt = self._queued.popleft()
                if not nxt.abandoned:
                    nxt.running = True
                    self._running += 1
                    follow = nxt
                    break
        if follow is not None:
            self._start(follow)
        return True

    def shutdown(self) -> None:
        self._pool.shutdown()
        if self._aloop is not None:
            self._aloop.call_soon_threadsafe(self._aloop.stop)

    def _start(self, att: Attempt) -> None:
        """Run the handler of ``att`` (its slot taken already): in the pool, or on the loop.
        Its timeout counts from here."""
        lz = att.leased
        att.started = time.monotonic()
        att.deadline = att.started + lz.timeout if lz.timeout is not None else None
        if self._is_async[lz.task_name]:
            loop = self._async_loop()
            if threading.get_ident() == self._aloop_thread:  # following a handler that ended
                att.future = loop.create_task(self._run_async(att))
            else:
                att.future = asyncio.run_coroutine_threadsafe(self._run_async(att), loop)
        else:
            self._pool.submit(lambda: self._finish(att, call_sync(att)))

    def _finish(self, att: Attempt, fin: Finished | None) -> None:
        self.ended(att)
        self._on_end(att, fin)

    def _cancel(self, att: Attempt) -> None:
        """Cancel the task of an ``async def`` handler, from any thread."""
        fut = att.future
        if isinstance(fut, asyncio.Future) and self._aloop is not None:  # (a Task)
            self._aloop.call_soon_threadsafe(fut.cancel)
        elif fut is not None:
            fut.cancel()

    def _async_loop(self) -> asyncio.AbstractEventLoop:
        if self._aloop is None:
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                self._aloop_thread = threading.get_ident()
                started.set()
                loop.run_forever()

            threading.Thread(target=run, name="mainspring-async", daemon=True).start()
            started.wait()
            self._aloop = loop
        return self._aloop

    async def _run_async(self, att: Attempt) -> None:
        fin = await call_async(att)
        if fin is not None or not att.abandoned:
            self._finish(att, fin)
