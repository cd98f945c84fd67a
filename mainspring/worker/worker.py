"""The worker: one loop thread per worker that talks to the engine, and hands the runs it
leases to its handler slots (``worker/slots.py``), which run the handlers
(``worker/execute.py``) in a thread pool for ``def`` and an event loop for ``async def``.

Each turn of the loop reports finished attempts, and leases and starts as many new runs as
it has free slots, in one transaction (``Engine.cycle``). The loop renews its leases,
enforces per-attempt timeouts, and sleeps on the store's wake-up channel when there is
nothing to do. A slot becomes free only after the engine has durably recorded its attempt's
result. Its timers and flags live in one object (``worker/timers.py``): ``_loop`` is a turn,
a renewal if one is due, and a sleep until the earliest timer or a wake-up.

Which clock times what (the engine's clock is the App's: ``SystemClock``, or the tests'
``ManualClock``):

- **When runs come due** (delayed runs, retries, cron occurrences) is engine-clock time:
  the store says when the next one is due, in the engine's clock. On a clock that follows
  real time the loop sleeps until then. A clock moved by hand tells the worker of each move
  (``core.clock.watch``: ``ManualClock.advance`` calls the worker's ``_clock_advanced``,
  which wakes the loop through its pipe at once): the next turn housekeeps (promotes what
  came due, derives cron occurrences, expires leases) and leases, so a due run starts right
  after ``advance``, not a poll later. No timer is set for a future due time on such a
  clock: only an advance can reach it.
- **Lease expiry** is engine-clock time too: the engine stamps ``lease_expires_at`` and
  expires leases by its clock, and the worker agrees with it. How often the worker renews
  stays on the monotonic clock (every third of ``lease_seconds`` of real time, so leases
  live while the clock stands still), and in addition, when the clock is moved by hand, the
  worker renews as soon as it sees the clock a third of ``lease_seconds`` past its last
  renewal, as it would have in that much real time. One jump past a lease's expiry is a
  lease that expired: the turn the jump wakes (this worker's or another's) closes the
  attempt as ``lost`` and the run goes through the retry decision, as if the worker had
  stalled that long. This worker then tells the handler (``ctx.cancelled``) and discards
  its outcome: at once when that same turn gave the run back to it (``_dispatch`` finds
  the old attempt in flight), otherwise when its next housekeeping turn (within
  ``HOUSEKEEPING_SECONDS`` while it runs handlers) or renewal reports the run lost; a late
  report is fenced by the engine anyway. The worker's own guard, ``Attempt.lease_until``
  (a lease it could not renew because the store is unreachable), is monotonic: it
  measures how long the worker went without a renewal.
- **Everything about the worker's own pace** is monotonic, real time: per-attempt
  ``timeout`` (a handler's run time is real; the contract does not put it on the
  ``ManualClock``), group commit, housekeeping while busy, the poll, the heartbeat gap, the
  stop grace and the store-error backoff.
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.clock import watch
from ..core.errors import MainspringError, StoreError
from ..core.ids import uuid7
from ..core.states import AttemptResult
from ..engine import Engine, Finished, Leased, Registration
from ..store.rows import Fence
from .execute import Attempt, make_context, timed_out
from .retention import Retention
from .slots import Slots
from .timers import Timers

if TYPE_CHECKING:
    from .._task_options import FailureOverrides
    from ..store.base import Waiter

log = logging.getLogger("mainspring.worker")

GATHER_SECONDS = 0.002  # longest a finished attempt waits for others to share its commit
GATHER_QUIET_SECONDS = 0.0003  # ... and how long it waits for the next one to finish


@dataclass(frozen=True)
class AttemptDone:
    """An attempt whose end the store recorded (``on_attempt`` of a worker)."""

    task_name: str
    run_id: str
    attempt: int
    result: AttemptResult
    duration: float  # seconds, as the worker measured it
    error: str | None


class Worker:
    """Runs the handlers an App registered. Use ``app.worker()`` or ``app.run_worker()``."""

    def __init__(
        self,
        engine: Engine,
        handlers: dict[str, Callable[..., Any]],
        *,
        concurrency: int = 8,
        queues: Sequence[str] | None = None,
        lease_seconds: float = 30.0,
        grace_seconds: float = 10.0,
        on_attempt: Callable[[AttemptDone], None] | None = None,
        failure_overrides: dict[str, FailureOverrides] | None = None,
        retention: float | None = None,
        prefetch: int = 0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.engine = engine
        self.handlers = dict(handlers)
        self.names = sorted(self.handlers)
        self.queues = list(queues) if queues is not None else None
        self.concurrency = concurrency
        #: runs leased and started ahead, beyond the handlers running, so that a handler
        #: that ends is followed at once by the next (worker/slots.py), not after a commit
        self.prefetch = prefetch
        self.lease_seconds = lease_seconds
        self.grace_seconds = grace_seconds
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid7()[-12:]}"
        self.on_attempt = on_attempt
        self.failure_overrides = failure_overrides or {}
        #: ``App(retention=...)``: prune runs that ended longer ago than this, in a thread
        #: of its own (worker/retention.py)
        self.retention = retention
        self._retention = None if retention is None else Retention(self.engine, retention, self.id)
        self.registration = Registration(
            worker_id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            tasks=self.names,
            concurrency=concurrency,
        )
        self._inflight: dict[str, Attempt] = {}  # every run this worker holds
        self._done: collections.deque[tuple[Attempt, Finished]] = collections.deque()
        self._renew_now: set[str] = set()
        self._lock = threading.Lock()
        self._rpipe, self._wpipe = os.pipe()
        self._pipe_lock = threading.Lock()
        os.set_blocking(self._rpipe, False)
        os.set_blocking(self._wpipe, False)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        is_async = {n: inspect.iscoroutinefunction(fn) for n, fn in self.handlers.items()}
        self._slots = Slots(concurrency, is_async, self._lock, self._complete)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._waiting = False
        self._freed = False  # a slot was freed outside a turn (a workflow suspended itself)
        #: attempts a workflow ended itself (suspended), with when: told to ``on_attempt``
        #: by the loop, as the others are
        self._suspended: list[tuple[Attempt, float]] = []
        # the engine's clock, when it is moved by hand, wakes the loop (see the docstring)
        self._clock_moved = False
        self._unwatch: Callable[[], None] | None = None
        self._timers: Timers | None = None
        self.cycles = 0
        self.executed = 0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Worker:
        """Register in the store's worker registry, then run the loop in a thread."""
        self._registry(self.engine.register_worker, self.registration, self.lease_seconds)
        self._unwatch = watch(self.engine.clock, self._clock_advanced)
        self.engine.group.register(self._wake)  # (its turns commit workflows' commands)
        self._thread = threading.Thread(
            target=self._main, name=f"mainspring-worker-{self.id}", daemon=True
        )
        self._thread.start()
        if self._retention is not None:
            self._retention.start()
        return self

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop leasing; let running handlers finish within the grace period; release the rest."""
        if grace_seconds is not None:
            self.grace_seconds = grace_seconds
        self._stop.set()
        self._wake()
        if self._retention is not None:
            self._retention.stop()
        if self._thread is not None:
            self._thread.join()
        self._slots.shutdown()
        with self._pipe_lock:
            for fd in (self._rpipe, self._wpipe):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._rpipe = self._wpipe = -1

    def request_stop(self) -> None:
        self._stop.set()
        self._wake()

    @property
    def clock_seen(self) -> float | None:
        """On a clock moved by hand (``ManualClock``): the clock's time as of which this
        worker's latest turn housekept (promoted due runs, derived cron occurrences,
        expired leases) and leased; None until its first such turn after the clock first
        moved. A test that advanced the clock waits for ``clock_seen is not None and
        clock_seen >= clock.now()`` to know the worker caught up. Always None on a clock
        that follows real time."""
        timers = self._timers
        return None if timers is None else timers.caught_up

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._inflight or self._done)

    def check(self) -> None:
        """Raise MainspringError if the worker loop has crashed."""
        if self._error is not None:
            raise MainspringError(f"the worker loop failed: {self._error}") from self._error

    def run_until_idle(self, timeout: float | None = 30.0) -> None:
        """Return once the store is idle and nothing is in flight here; else TimeoutError."""
        self._wait_until(self.engine.is_idle, timeout)

    def run_until_done(self, timeout: float | None = None) -> None:
        """Return once nothing is in flight here and nothing is left that this worker could
        do: the engine is paused, or no run of its tasks and queues is ready, leased,
        running, in retry_wait or due (``worker --burst``). Runs of tasks or queues it does
        not serve, and of paused queues, do not keep it waiting, as they do
        ``run_until_idle``."""
        self._wait_until(lambda: self.engine.nothing_for(self.names, self.queues), timeout)

    def _wait_until(self, idle: Callable[[], bool], timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.check()
            if not self.busy and idle() and not self.busy:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"the store did not become idle within {timeout} s (see app.stats())"
                )
            time.sleep(0.005)

    # -- the loop -----------------------------------------------------------------------------
    def _clock_advanced(self) -> None:
        """The engine's clock was moved by hand (called in the thread that moved it)."""
        self._clock_moved = True
        self._wake()

    def _wake(self) -> None:
        with self._pipe_lock:  # never write to a closed (and perhaps reused) descriptor
            if self._wpipe < 0:
                return
            try:
                os.write(self._wpipe, b"!")
            except OSError:
                pass

    def _main(self) -> None:
        waiter = self.engine.store.waiter()
        try:
            self._loop(waiter)
        except BaseException as exc:  # pragma: no cover - reported via run_until_idle
            self._error = exc
            log.exception("worker %s loop crashed", self.id)
        finally:
            self.engine.group.unregister(self._wake)
            if self._unwatch is not None:
                self._unwatch()
            self._registry(self.engine.worker_left, self.id)
            waiter.close()
            self._stopped.set()

    def _registry(self, command: Callable[..., None], *args: Any) -> None:
        """Register or leave; a store that fails here is told at the next heartbeat (or
        finds the worker gone when its heartbeats stop)."""
        try:
            command(*args)
        except Exception as exc:
            log.warning("worker %s: worker registry: %s", self.id, exc)

    def _loop(self, waiter: Waiter) -> None:
        """Turn, renew if due, sleep until the earliest timer or a wake-up; until stopped."""
        timers = self._timers = Timers(
            self.lease_seconds, self.engine.clock, clock_driven=self._unwatch is not None
        )
        while self._turn(timers):
            if self._check_timeouts() or self._freed:
                self._freed = False
                timers.slots_freed()
                self._report_suspended()
            if timers.renew_due(time.monotonic(), bool(self._renew_now)):
                timers.renewing()
                if self._renew():
                    timers.slots_freed()
                timers.renewed()
            with self._lock:
                pending = bool(self._done) or self.engine.group.pending > 0
                free = self._capacity - len(self._inflight)
            if not timers.must_turn(pending, free):
                self._sleep(waiter, timers)
        self._report_suspended()  # (those of the last handlers, as it stopped)

    def _turn(self, timers: Timers) -> bool:
        """One turn: gather finished attempts (group commit), then in one transaction record
        them, housekeep when due, and lease as many runs as there are free slots; start the
        leased runs' handlers. False once the worker has stopped (its handlers finished or
        were released)."""
        now = time.monotonic()
        if self._stop.is_set():
            timers.stop(now, self.grace_seconds)
        if self._clock_moved:  # (cleared before the clock is read: no move is missed)
            self._clock_moved = False
            timers.clock_moved()
        self._gather()
        with self._lock:
            finished = list(self._done)
            self._done.clear()
            free = self._capacity - len(self._inflight)
            start_now = self._slots.idle  # (the rest of ``want`` waits for a slot)
        stopping = timers.stopping
        if stopping and not finished:
            with self._lock:
                remaining = [rid for rid, it in self._inflight.items() if not it.abandoned]
            if not remaining or timers.grace_over(now):
                if remaining:
                    self.engine.release(
                        self.id, remaining, "worker stopped before the handler finished"
                    )
                return False
        # slots of finished attempts are free once this cycle commits their results
        want = 0 if stopping else free + len(finished)
        commands = self.engine.group.pending  # (workflows' steps, sleeps, waits: engine/group.py)
        if not timers.turn_wanted(now, len(finished) + commands, want):
            return True
        housekeep = timers.housekeep
        held: list[str] = []
        if housekeep:
            done_ids = {item.leased.run_id for item, _ in finished}
            with self._lock:
                held = [
                    r for r, it in self._inflight.items() if not it.abandoned and r not in done_ids
                ]
        try:
            res = self.engine.cycle(
                self.id,
                self.names,
                self.queues,
                [f for _, f in finished],
                want,
                self.lease_seconds,
                housekeeping=housekeep,
                held=held,
                next_due=timers.refresh_due,
                commands=commands > 0,
                start_now=start_now,
            )
        except Exception as exc:
            if timers.grace_over(time.monotonic()):
                # stopping, and the grace period is over: what could not be recorded is
                # left to lease expiry (the attempts close as lost)
                log.error(
                    "worker %s: stopped with %d result(s) the store did not take: %s",
                    self.id,
                    len(finished),
                    exc,
                )
                return False
            # (a StoreError says what failed; anything else is named by its type too)
            what = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
            log.warning("worker %s: its turn failed, will retry: %s", self.id, what)
            with self._lock:
                self._done.extendleft(reversed(finished))
            time.sleep(timers.turn_failed())
            return True
        self.cycles += 1
        with self._lock:
            for item, _ in finished:
                if self._inflight.get(item.leased.run_id) is item:
                    del self._inflight[item.leased.run_id]
        if self.on_attempt is not None and res.accepted:
            self._report(finished, res.accepted)
        freed = bool(res.lost) and self._forget(res.lost)
        for lz in res.leased:
            self._dispatch(lz)
        timers.turned(want, len(res.leased), res.next_due)
        if freed:
            timers.slots_freed()
        return True

    def _sleep(self, waiter: Waiter, timers: Timers) -> None:
        """Sleep until the earliest timer, a result or heartbeat of a handler (the loop's
        pipe), a clock move, a stop, or a commit elsewhere (the store's wake-up channel)."""
        timeout = timers.sleep_for(
            heartbeat=bool(self._renew_now),
            busy=bool(self._inflight),
            deadline=self._nearest_deadline(),
        )
        fds = [self._rpipe, waiter.fileno()]
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except (OSError, ValueError):
            ready = []
        if self._rpipe in ready:
            self._drain_pipe()
        store = any(fd != self._rpipe for fd in ready)
        if store:
            waiter.wait(0)  # consume the wake-up
        timers.woke(timer=not ready, store=store, stop_asked=self._stop.is_set())

    def _gather(self) -> None:
        """Group commit: when some attempts just finished (or workflows queued commands:
        their steps, sleeps, waits) and others are still running, wait while more keep
        coming, so that one transaction records them together.

        The wait ends when every running attempt has finished, when none finished for
        GATHER_QUIET_SECONDS (the rest are busy: their results will not come at once), or
        at GATHER_SECONDS in all; while runs started ahead (``prefetch``) still wait for a
        slot, no slot is idle for want of a turn, so only the last two end it. Handlers
        that do I/O release the GIL, so the loop often wakes at the first of a burst of
        completions; without this, it would record them a few at a time, one commit (and
        at synchronous=FULL one sync) for each few.
        While the loop waits here, a finishing handler wakes it only if it is the last:
        the loop looks again after each quiet period rather than at every result."""
        group = self.engine.group
        with self._lock:
            count, running = len(self._done) + group.pending, self._begun
        if count == 0 or count >= running:
            return
        deadline = time.monotonic() + GATHER_SECONDS
        while True:
            with self._lock:
                if len(self._done) + group.pending >= self._begun:
                    return
                self._waiting = True
            try:
                left = deadline - time.monotonic()
                select.select([self._rpipe], [], [], max(0.0, min(GATHER_QUIET_SECONDS, left)))
            finally:
                self._waiting = False
            self._drain_pipe()
            with self._lock:
                finished = len(self._done) + group.pending
                fed = self._slots.waiting > 0  # every slot has a run to go on with meanwhile
            if (finished == count and not fed) or time.monotonic() >= deadline:
                return  # none came in a quiet period (or the time is up)
            count = finished

    def _drain_pipe(self) -> None:
        try:
            while os.read(self._rpipe, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _nearest_deadline(self) -> float | None:
        with self._lock:
            dls = [
                it.deadline
                for it in self._inflight.values()
                if it.deadline is not None and not it.abandoned
            ]
        return min(dls) if dls else None

    def _check_timeouts(self) -> bool:
        """Abandon attempts whose lease could not be renewed in time, and end those that
        overran their timeout (reported as ``timeout``). True when slots were freed."""
        now_m = time.monotonic()
        expired: list[Attempt] = []
        with self._lock:
            # leases we could not renew in time (store unreachable): another worker may
            # already hold the run, so the handler is told and its outcome discarded
            unrenewed = [r for r, it in self._inflight.items() if now_m > it.lease_until]
        freed = False
        if unrenewed:
            log.warning(
                "worker %s: %d lease(s) expired before they could be renewed; abandoning them",
                self.id,
                len(unrenewed),
            )
            freed = self._forget(unrenewed)
        with self._lock:
            for it in self._inflight.values():
                if not it.abandoned and it.deadline is not None and now_m > it.deadline:
                    it.abandoned = True
                    expired.append(it)
        for it in expired:
            it.ctx.cancel()
            fin = timed_out(it)
            with self._lock:
                self._done.append((it, fin))
            self._slots.interrupt(it)
        return freed

    def _report(
        self, finished: Sequence[tuple[Attempt, Finished]], accepted: Sequence[str]
    ) -> None:
        assert self.on_attempt is not None
        recorded, now = set(accepted), time.monotonic()
        for item, fin in finished:
            if fin.run_id not in recorded:
                continue
            lz = item.leased
            self._tell(
                AttemptDone(
                    lz.task_name, lz.run_id, lz.attempt, fin.result, now - item.started, fin.error
                )
            )

    def _report_suspended(self) -> None:
        """Tell ``on_attempt`` of the attempts workflows ended themselves (suspended)."""
        if self.on_attempt is None:
            return
        with self._lock:
            ended, self._suspended = self._suspended, []
        for item, at in ended:
            lz = item.leased
            suspended = AttemptResult.SUSPENDED
            self._tell(
                AttemptDone(lz.task_name, lz.run_id, lz.attempt, suspended, at - item.started, None)
            )

    def _tell(self, done: AttemptDone) -> None:
        assert self.on_attempt is not None
        try:
            self.on_attempt(done)
        except Exception:
            log.exception("worker %s: on_attempt raised", self.id)

    def _renew(self) -> bool:
        """Renew this worker's leases, and heartbeat in the worker registry. True when
        some turned out lost (their slots are free)."""
        with self._lock:
            ids = [rid for rid, it in self._inflight.items() if not it.abandoned]
            self._renew_now.clear()
        began = time.monotonic()
        snapshots: dict[str, bytes] = {}
        fences: dict[str, Fence] = {}
        try:
            lost = self.engine.renew(
                self.id, ids, self.lease_seconds, snapshots, self.registration, fences
            )
        except Exception as exc:
            log.warning("worker %s: could not renew leases: %s", self.id, exc)
            return False
        freed = bool(lost) and self._forget(lost)
        with self._lock:
            for rid in ids:
                it = self._inflight.get(rid)
                if it is not None and rid not in lost:
                    it.lease_until = max(it.lease_until, began + self.lease_seconds)
                    # the run as renewed: its result is still decided ahead of the lock
                    if rid in snapshots:
                        it.leased.snapshot = snapshots[rid]
                        it.leased.fence = fences.get(rid)
        return freed

    def _forget(self, lost: Sequence[str] | set[str]) -> bool:
        """These runs are no longer ours (canceled, lease expired): tell their handlers,
        discard their outcomes, and free their slots (the store already closed them).
        True when any was still in flight here."""
        with self._lock:
            items = [self._inflight.pop(rid) for rid in lost if rid in self._inflight]
        for it in items:
            self._abandon(it)
        return bool(items)

    def _abandon(self, att: Attempt) -> None:
        """Tell a handler its attempt is over and discard its outcome; a thread stuck in it
        is replaced, so the pool keeps its capacity. (One started ahead never runs.)"""
        att.abandoned = True
        att.ctx.cancel()
        self._slots.interrupt(att)

    def heartbeat(self, run_id: str) -> None:
        with self._lock:
            self._renew_now.add(run_id)
        self._wake()

    # -- handing runs to the slots (worker/slots.py) ----------------------------------------
    @property
    def _capacity(self) -> int:
        """How many runs this worker holds at most: its handlers and those started ahead."""
        return self.concurrency + self.prefetch

    @property
    def _begun(self) -> int:
        """Attempts whose handlers run or ended, not yet recorded (under ``_lock``)."""
        return len(self._inflight) - self._slots.waiting

    def _dispatch(self, lz: Leased) -> None:
        """A run this turn leased and started: hold it, and hand it to the slots."""
        ctx = make_context(lz, functools.partial(self.heartbeat, lz.run_id), self.id)
        lease_until = time.monotonic() + (lz.lease_expires_at - self.engine.clock.now())
        att = Attempt(lz, self.handlers[lz.task_name], ctx, None, lease_until)
        att.retry_on, att.never_retry = self.failure_overrides.get(lz.task_name, ((), ()))
        with self._lock:
            previous = self._inflight.get(lz.run_id)
            self._inflight[lz.run_id] = att
        if previous is not None:
            # this worker held the run before: its lease expired (the worker stalled, or a
            # ManualClock jumped past it) and the same turn gave the run back to it
            self._abandon(previous)
        self._slots.place(att)

    def _complete(self, att: Attempt, fin: Finished | None) -> None:
        """A handler ended (its slot went on already): queue its report for the loop's next
        turn (and wake the loop). ``fin`` None: a workflow recorded its attempt's end
        itself (it suspended to sleep or wait), so its run is no longer held at once."""
        with self._lock:
            self.executed += 1  # (under the lock: handler threads end at once)
            if att.abandoned or self._inflight.get(att.leased.run_id) is not att:
                return  # timed out or lease lost: this late outcome is discarded
            if fin is None:
                del self._inflight[att.leased.run_id]
                self._freed = True
                if self.on_attempt is not None:
                    self._suspended.append((att, time.monotonic()))
        if fin is None:
            self._wake()
            return
        with self._lock:
            if att.deadline is not None and time.monotonic() > att.deadline:
                att.abandoned = True
                fin = timed_out(att)
            self._done.append((att, fin))
            # the first result wakes the loop; while it gathers, only the last one does
            wake = len(self._done) == 1 or (self._waiting and len(self._done) >= self._begun)
        if wake:
            self._wake()
