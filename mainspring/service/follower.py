"""Following a store's log for the service: one thread per served App reads the events
other processes (and this one) commit, in seq order without gaps, and fans them out to
every Server-Sent Events client and to listeners such as the metrics.

It sleeps on the store's wake-ups (``app.store.waiter()``: a descriptor that becomes
readable when a commit anywhere makes work ready, a submission say; on SQLite also the
wake-ups of runs that end), and on a slow poll as the safety net for commits that wake
nobody (an attempt starting, or one finishing in another process on PostgreSQL). It does
not subscribe to the App's log feed on ``app.bus``: that would turn every event this
process commits into bus traffic, which costs the submit path a quarter of its speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable

import anyio.to_thread
import msgspec

from .._records import LogEvent, plain
from ..app import App
from ..core.errors import LogCompacted, MainspringError
from ..store.base import EndedWaiter, Waiter

log = logging.getLogger("mainspring.service")

#: one SSE frame: (seq, the bytes of ``id: <seq>\ndata: <json>\n\n``)
Frame = tuple[int, bytes]


def event_json(event: LogEvent) -> bytes:
    """An event as ``mainspring log --json`` prints it."""
    return msgspec.json.encode(plain(event))


def frame(event: LogEvent) -> Frame:
    """The SSE frame of one event: its seq as the id, its JSON as the one data line."""
    return event.seq, b"id: %d\ndata: %s\n\n" % (event.seq, event_json(event))


def head_seq(app: App) -> int:
    """The seq of the last event in the store's log (0 for an empty log)."""
    with app.store.read() as tx:
        return tx.last_seq()


class Batch:
    """Events the follower read in one go: ``prev`` is its position before them, so a
    client that had seen up to ``prev`` misses nothing by taking ``frames``."""

    __slots__ = ("frames", "prev")

    def __init__(self, prev: int, frames: list[Frame]) -> None:
        self.prev = prev
        self.frames = frames


class Subscription:
    """One SSE client's queue of batches, filled from the follower's thread."""

    LIMIT = 1000  # batches kept for a slow client; past that it re-reads the store

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.batches: deque[Batch] = deque()
        self.overflowed = False
        self.ready = asyncio.Event()

    def push(self, batch: Batch) -> None:
        """(On the client's loop.) Queue a batch."""
        if len(self.batches) >= self.LIMIT:
            self.batches.clear()
            self.overflowed = True  # it catches up from the store instead
        else:
            self.batches.append(batch)
        self.ready.set()


class LogFollower:
    """Follows one App's store log and fans the events out (see the module's docstring).

    ``add_listener(fn)``: ``fn(events)`` is called on the follower's thread with every
    batch of events in seq order (the metrics). ``frames(since)``: the SSE frames for one
    client, from the store's history after ``since`` (None: from now on), then live."""

    PAGE = 1000

    def __init__(
        self,
        app: App,
        *,
        poll_seconds: float = 0.25,
        coalesce_seconds: float = 0.004,
        unwatched_seconds: float = 0.1,
        start: int | None = None,
    ) -> None:
        self.app = app
        self.poll_seconds = poll_seconds
        # after a wake-up, wait this long so that a burst of commits is read in one go;
        # longer while no stream client follows (only the metrics read the events then)
        self.coalesce_seconds = coalesce_seconds
        self.unwatched_seconds = max(coalesce_seconds, unwatched_seconds)
        self._start = start
        self._last = 0
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._listeners: list[Callable[[list[LogEvent]], None]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start following (from ``start``, else from the log's current end)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._last = self._start if self._start is not None else head_seq(self.app)
        self._thread = threading.Thread(target=self._run, name="mainspring-log-follower")
        self._thread.daemon = True
        self._thread.start()
        self._started.wait(5)

    def stop(self) -> None:
        """Stop following (clients' streams end)."""
        self._stop.set()
        self.poke()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            with contextlib.suppress(RuntimeError):
                sub.loop.call_soon_threadsafe(sub.ready.set)

    @property
    def last_seq(self) -> int:
        """The seq of the last event the follower has handed out."""
        return self._last

    def poke(self) -> None:
        """Read the log now (a commit happened)."""
        with contextlib.suppress(OSError):  # a full pipe: a wake-up is pending already
            os.write(self._w, b"!")

    def add_listener(self, fn: Callable[[list[LogEvent]], None]) -> None:
        """Call ``fn(events)`` on the follower's thread with every batch of new events."""
        self._listeners.append(fn)

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        waiter: Waiter | None = None
        ended: EndedWaiter | None = None
        try:
            waiter = self.app.store.waiter()
            ended = self.app.store.ended_waiter()
        except MainspringError as exc:
            log.warning("log follower: no store wake-ups (%s); polling", exc)
        self._started.set()
        fds = [self._r]
        if waiter is not None:
            fds.append(waiter.fileno())
        if isinstance(ended, Waiter):  # (SQLite's: a socket too)
            fds.append(ended.fileno())
        try:
            while not self._stop.is_set():
                woken: list[int] = []
                with contextlib.suppress(OSError, ValueError):
                    woken = select.select(fds, [], [], self.poll_seconds)[0]
                if self._stop.is_set():
                    break
                if woken and self.coalesce_seconds > 0:
                    self._stop.wait(self.coalesce_seconds if self._subs else self.unwatched_seconds)
                # consume the wake-ups before reading: one arriving during the read rounds again
                with contextlib.suppress(OSError):
                    while os.read(self._r, 4096):
                        pass
                if waiter is not None:
                    waiter.wait(0)
                if ended is not None:
                    ended.clear()
                self._read_all()
        finally:
            if waiter is not None:
                waiter.close()

    def _read_all(self) -> None:
        while not self._stop.is_set():
            try:
                events = self.app.log(since=self._last, limit=self.PAGE)
            except LogCompacted as exc:  # what was not read is gone: go on from the start
                log.warning("log follower: events %d.. were compacted away", self._last + 1)
                self._last = exc.first_seq - 1
                continue
            except Exception as exc:  # a store that went away: try again on the next round
                log.warning("log follower: cannot read the log: %s", exc)
                return
            if not events:
                return
            self._dispatch(events)
            if len(events) < self.PAGE:
                return

    def _dispatch(self, events: list[LogEvent]) -> None:
        for fn in self._listeners:
            try:
                fn(events)
            except Exception:
                log.exception("log follower: a listener failed")
        with self._lock:
            prev, self._last = self._last, events[-1].seq
            subs = list(self._subs)
        if not subs:
            return
        batch = Batch(prev, [frame(e) for e in events])  # (encoded once for every client)
        for sub in subs:
            with contextlib.suppress(RuntimeError):  # its loop closed: it is going away
                sub.loop.call_soon_threadsafe(sub.push, batch)

    # -- clients ----------------------------------------------------------------------------
    def _read_frames(self, since: int) -> list[Frame]:
        try:
            return [frame(e) for e in self.app.log(since=since, limit=self.PAGE)]
        except LogCompacted as exc:  # start where the log starts now
            return [frame(e) for e in self.app.log(since=exc.first_seq - 1, limit=self.PAGE)]

    async def frames(self, since: int | None, keepalive: float = 15.0) -> AsyncIterator[bytes]:
        """The SSE byte stream of one client: the events after ``since`` (None: from the
        follower's current position), then the live ones, with a comment line every
        ``keepalive`` seconds of silence. Ends when the follower stops."""
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            self._subs.add(sub)
            last = self._last if since is None else since
        catch_up = since is not None
        try:
            yield b"retry: 1000\n\n"
            while not self._stop.is_set():
                if catch_up:
                    catch_up = False
                    while True:
                        found = await anyio.to_thread.run_sync(self._read_frames, last)
                        for seq, data in found:
                            if seq > last:
                                yield data
                                last = seq
                        if len(found) < self.PAGE:
                            break
                    continue
                if not sub.batches and not sub.overflowed:
                    sub.ready.clear()
                    try:
                        await asyncio.wait_for(sub.ready.wait(), keepalive)
                    except TimeoutError:
                        yield b": keepalive\n\n"
                    continue
                if sub.overflowed:
                    sub.overflowed = False
                    catch_up = True
                    continue
                batch = sub.batches.popleft()
                if batch.prev > last:  # events between: read them (and this batch) from the store
                    catch_up = True
                    continue
                for seq, data in batch.frames:
                    if seq > last:
                        yield data
                        last = seq
        finally:
            with self._lock:
                self._subs.discard(sub)

    @property
    def clients(self) -> int:
        """How many SSE clients are connected."""
        return len(self._subs)
