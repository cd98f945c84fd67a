"""Executing handlers: a thread pool for ``def``, an event loop for ``async def``.

One loop thread per worker talks to the engine: each turn it reports finished attempts,
and leases and starts as many new runs as it has free slots, in one transaction
(``Engine.cycle``). It renews its leases, enforces per-attempt timeouts, and sleeps on the
store's wake-up channel when there is nothing to do. A slot becomes free only after the
engine has durably recorded its attempt's result.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import logging
import os
import queue
import select
import socket
import threading
import time
import traceback as tb
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.codec import to_plain
from ..core.errors import MainspringError
from ..core.ids import uuid7
from ..core.outcomes import Fail, Retry, Suspend
from ..core.states import AttemptResult
from ..engine import Engine, Finished, Leased, Registration
from .context import Context, reset_current, set_current

if TYPE_CHECKING:
    from ..store.base import Waiter

log = logging.getLogger("mainspring.worker")

POLL_SECONDS = 1.0  # the slowest a worker ever looks for work without a wake-up
GATHER_SECONDS = 0.002  # longest a finished attempt waits for others to share its commit
GATHER_QUIET_SECONDS = 0.0003  # ... and how long it waits for the next one to finish
HOUSEKEEPING_SECONDS = 0.25  # lease expiry / promotion / cron at least this often while busy


@dataclass(frozen=True)
class AttemptDone:
    """An attempt whose end the store recorded (``on_attempt`` of a worker)."""

    task_name: str
    run_id: str
    attempt: int
    result: AttemptResult
    duration: float  # seconds, as the worker measured it
    error: str | None


@dataclass
class _Item:
    leased: Leased
    fn: Callable[..., Any]
    ctx: Context
    deadline: float | None  # monotonic
    lease_until: float  # monotonic: past it, without a renewal, the lease is not ours
    started: float = field(default_factory=time.monotonic)
    abandoned: bool = False  # timed out or lease lost: its outcome is discarded
    future: Any = None  # the asyncio future of an async handler


def _fin(item: _Item, result: AttemptResult, **kw: Any) -> Finished:
    lz = item.leased
    return Finished(
        lz.run_id, lz.attempt_id, result, options=lz.options, snapshot=lz.snapshot, **kw
    )


class _ThreadPool:
    """A fixed pool of handler threads that grows by one per abandoned (hung) handler."""

    def __init__(self, size: int, name: str) -> None:
        self._q: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._excess = 0
        self._name = name
        self._threads: list[threading.Thread] = []
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> None:
        t = threading.Thread(
            target=self._run, name=f"{self._name}-h{len(self._threads)}", daemon=True
        )
        self._threads.append(t)
        t.start()

    def _run(self) -> None:
        get = self._q.get
        while True:
            job = get()
            if job is None:
                return
            job()
            if self._excess > 0:
                with self._lock:
                    if self._excess > 0:
                        self._excess -= 1
                        return

    def submit(self, job: Callable[[], None]) -> None:
        self._q.put(job)

    def grow(self) -> None:
        """A handler thread is stuck in an abandoned attempt: add one to keep capacity."""
        with self._lock:
            self._excess += 1
        self._spawn()

    def shutdown(self) -> None:
        for _ in self._threads:
            self._q.put(None)


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
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.engine = engine
        self.handlers = dict(handlers)
        self._is_async = {n: inspect.iscoroutinefunction(fn) for n, fn in self.handlers.items()}
        self.names = sorted(self.handlers)
        self.queues = list(queues) if queues is not None else None
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.grace_seconds = grace_seconds
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid7()[-12:]}"
        self.on_attempt = on_attempt
        self.registration = Registration(
            worker_id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            tasks=self.names,
            concurrency=concurrency,
        )
        self._inflight: dict[str, _Item] = {}
        self._done: collections.deque[tuple[_Item, Finished]] = collections.deque()
        self._renew_now: set[str] = set()
        self._lock = threading.Lock()
        self._rpipe, self._wpipe = os.pipe()
        self._pipe_lock = threading.Lock()
        os.set_blocking(self._rpipe, False)
        os.set_blocking(self._wpipe, False)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._pool = _ThreadPool(concurrency, "mainspring")
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._waiting = False
        self.cycles = 0
        self.executed = 0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Worker:
        """Register in the store's worker registry, then run the loop in a thread."""
        self._registry(self.engine.register_worker, self.registration, self.lease_seconds)
        self._thread = threading.Thread(
            target=self._main, name=f"mainspring-worker-{self.id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop leasing; let running handlers finish within the grace period; release the rest."""
        if grace_seconds is not None:
            self.grace_seconds = grace_seconds
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join()
        self._pool.shutdown()
        if self._aloop is not None:
            self._aloop.call_soon_threadsafe(self._aloop.stop)
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
        not serve do not keep it waiting, as they do ``run_until_idle``."""
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
        renew_every = max(self.lease_seconds / 3.0, 0.05)
        next_renew = time.monotonic() + renew_every
        # heartbeats renew at once, but not more often than this (each renewal is a
        # transaction and a lease.renewed event per run)
        heartbeat_gap = min(1.0, renew_every / 10)
        last_renew = 0.0
        need_cycle = True
        housekeep = True
        refresh_due = False
        next_housekeeping = 0.0
        next_due: float | None = None
        stop_deadline: float | None = None
        backoff = 0.0
        while True:
            now_m = time.monotonic()
            if self._stop.is_set() and stop_deadline is None:
                stop_deadline = now_m + self.grace_seconds
            self._gather()
            with self._lock:
                finished = list(self._done)
                self._done.clear()
                free = self.concurrency - len(self._inflight)
            stopping = stop_deadline is not None
            if stopping and not finished:
                with self._lock:
                    remaining = [rid for rid, it in self._inflight.items() if not it.abandoned]
                if not remaining or now_m >= (stop_deadline or 0):
                    if remaining:
                        self.engine.release(
                            self.id, remaining, "worker stopped before the handler finished"
                        )
                    return
            # slots of finished attempts are free once this cycle commits their results
            want = 0 if stopping else free + len(finished)
            if now_m >= next_housekeeping:
                housekeep = True
            if finished or housekeep or refresh_due or (need_cycle and want > 0):
                held: list[str] = []
                if housekeep:
                    done_ids = {item.leased.run_id for item, _ in finished}
                    with self._lock:
                        held = [
                            r
                            for r, it in self._inflight.items()
                            if not it.abandoned and r not in done_ids
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
                        next_due=refresh_due,
                    )
                    backoff = 0.0
                except Exception as exc:
                    if stop_deadline is not None and time.monotonic() >= stop_deadline:
                        # stopping, and the grace period is over: what could not be
                        # recorded is left to lease expiry (the attempts close as lost)
                        log.error(
                            "worker %s: stopped with %d result(s) the store did not take: %s",
                            self.id,
                            len(finished),
                            exc,
                        )
                        return
                    log.warning("worker %s: store error, will retry: %s", self.id, exc)
                    with self._lock:
                        self._done.extendleft(reversed(finished))
                    backoff = min(max(backoff * 2, 0.05), 2.0)
                    time.sleep(backoff)
                    continue
                self.cycles += 1
                with self._lock:
                    for item, _ in finished:
                        if self._inflight.get(item.leased.run_id) is item:
                            del self._inflight[item.leased.run_id]
                if self.on_attempt is not None and res.accepted:
                    self._report(finished, res.accepted)
                if res.lost:
                    self._forget(res.lost)
                for lz in res.leased:
                    self._dispatch(lz)
                need_cycle = want > 0 and len(res.leased) == want
                if housekeep or refresh_due:
                    next_due = res.next_due
                    refresh_due = False
                if housekeep:
                    housekeep = False
                    next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
                elif res.next_due is not None:  # a retry decided in this turn
                    next_due = res.next_due if next_due is None else min(next_due, res.next_due)
            self._check_timeouts()
            now_m = time.monotonic()
            if now_m >= next_renew or (self._renew_now and now_m >= last_renew + heartbeat_gap):
                self._renew()
                last_renew = time.monotonic()
                next_renew = last_renew + renew_every
            with self._lock:
                pending = bool(self._done)
                free = self.concurrency - len(self._inflight)
            if pending or (need_cycle and free > 0 and not stopping):
                continue
            timeout = min(POLL_SECONDS, max(0.0, next_renew - time.monotonic()))
            if self._renew_now:  # a heartbeat held back by heartbeat_gap
                timeout = min(timeout, max(0.0, last_renew + heartbeat_gap - time.monotonic()))
            if self._inflight:
                timeout = min(timeout, max(0.0, next_housekeeping - time.monotonic()))
            if next_due is not None:
                timeout = min(timeout, max(0.001, next_due - self.engine.clock.now()))
            dl = self._nearest_deadline()
            if dl is not None:
                timeout = min(timeout, max(0.0, dl - time.monotonic()))
            if stop_deadline is not None:
                timeout = min(timeout, max(0.0, stop_deadline - time.monotonic()), 0.05)
            fds = [self._rpipe, waiter.fileno()]
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):
                ready = []
            if self._rpipe in ready:
                self._drain_pipe()
            if not ready:  # a timer (poll, due run, lease expiry): housekeeping, then work
                housekeep = True
                need_cycle = True
            elif any(fd != self._rpipe for fd in ready):
                # a commit elsewhere made runs ready (or moved the next due time): lease,
                # and learn the next due time; promotion and expiry keep to their timers
                waiter.wait(0)  # consume the wake-up
                need_cycle = True
                refresh_due = True
            if self._stop.is_set():
                need_cycle = False

    def _gather(self) -> None:
        """Group commit: when some attempts just finished and others are still running,
        wait while more keep finishing, so that one transaction records them together.

        The wait ends when every running attempt has finished, when none finished for
        GATHER_QUIET_SECONDS (the rest are busy: their results will not come at once), or
        at GATHER_SECONDS in all. Handlers that do I/O release the GIL, so the loop often
        wakes at the first of a burst of completions; without this, it would record them
        a few at a time, one commit (and at synchronous=FULL one sync) for each few.
        While the loop waits here, a finishing handler wakes it only if it is the last:
        the loop looks again after each quiet period rather than at every result."""
        with self._lock:
            count, running = len(self._done), len(self._inflight)
        if count == 0 or count >= running:
            return
        deadline = time.monotonic() + GATHER_SECONDS
        while True:
            with self._lock:
                if len(self._done) >= len(self._inflight):
                    return
                self._waiting = True
            try:
                left = deadline - time.monotonic()
                select.select([self._rpipe], [], [], max(0.0, min(GATHER_QUIET_SECONDS, left)))
            finally:
                self._waiting = False
            self._drain_pipe()
            with self._lock:
                finished = len(self._done)
            if finished == count or time.monotonic() >= deadline:
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

    def _check_timeouts(self) -> None:
        now_m = time.monotonic()
        expired: list[_Item] = []
        with self._lock:
            # leases we could not renew in time (store unreachable): another worker may
            # already hold the run, so the handler is told and its outcome discarded
            unrenewed = [r for r, it in self._inflight.items() if now_m > it.lease_until]
        if unrenewed:
            log.warning(
                "worker %s: %d lease(s) expired before they could be renewed; abandoning them",
                self.id,
                len(unrenewed),
            )
            self._forget(unrenewed)
        with self._lock:
            for it in self._inflight.values():
                if not it.abandoned and it.deadline is not None and now_m > it.deadline:
                    it.abandoned = True
                    expired.append(it)
        for it in expired:
            it.ctx.cancel()
            timeout = it.leased.timeout
            fin = _fin(
                it,
                AttemptResult.TIMEOUT,
                error=f"TimeoutError: the attempt overran its timeout of {timeout} s",
            )
            with self._lock:
                self._done.append((it, fin))
            fut = it.future
            if fut is not None:
                fut.cancel()
            else:
                self._pool.grow()

    def _report(self, finished: Sequence[tuple[_Item, Finished]], accepted: Sequence[str]) -> None:
        assert self.on_attempt is not None
        recorded, now = set(accepted), time.monotonic()
        for item, fin in finished:
            if fin.run_id not in recorded:
                continue
            lz = item.leased
            done = AttemptDone(
                lz.task_name, lz.run_id, lz.attempt, fin.result, now - item.started, fin.error
            )
            try:
                self.on_attempt(done)
            except Exception:
                log.exception("worker %s: on_attempt raised", self.id)

    def _renew(self) -> None:
        """Renew this worker's leases, and heartbeat in the worker registry."""
        with self._lock:
            ids = [rid for rid, it in self._inflight.items() if not it.abandoned]
            self._renew_now.clear()
        began = time.monotonic()
        snapshots: dict[str, bytes] = {}
        try:
            lost = self.engine.renew(
                self.id, ids, self.lease_seconds, snapshots, heartbeat=self.registration
            )
        except Exception as exc:
            log.warning("worker %s: could not renew leases: %s", self.id, exc)
            return
        if lost:
            self._forget(lost)
        with self._lock:
            for rid in ids:
                it = self._inflight.get(rid)
                if it is not None and rid not in lost:
                    it.lease_until = max(it.lease_until, began + self.lease_seconds)
                    # the run as renewed: its result is still decided ahead of the lock
                    it.leased.snapshot = snapshots.get(rid, it.leased.snapshot)

    def _forget(self, lost: Sequence[str] | set[str]) -> None:
        """These runs are no longer ours (canceled, lease expired): tell their handlers,
        discard their outcomes, and free their slots (the store already closed them)."""
        with self._lock:
            items = [self._inflight.pop(rid) for rid in lost if rid in self._inflight]
        for it in items:
            it.abandoned = True
            it.ctx.cancel()
            if it.future is not None:
                it.future.cancel()
            else:
                self._pool.grow()

    def heartbeat(self, run_id: str) -> None:
        with self._lock:
            self._renew_now.add(run_id)
        self._wake()

    # -- executing handlers ------------------------------------------------------------------
    def _dispatch(self, lz: Leased) -> None:
        fn = self.handlers[lz.task_name]
        ctx = Context(
            run_id=lz.run_id,
            task_id=lz.task_id,
            task_name=lz.task_name,
            attempt_id=lz.attempt_id,
            attempt=lz.attempt,
            execution_id=lz.execution_id,
            correlation_id=lz.correlation_id,
            idempotency_key=lz.idempotency_key,
            heartbeat=functools.partial(self.heartbeat, lz.run_id),
        )
        deadline = time.monotonic() + lz.timeout if lz.timeout is not None else None
        lease_until = time.monotonic() + (lz.lease_expires_at - self.engine.clock.now())
        item = _Item(lz, fn, ctx, deadline, lease_until)
        with self._lock:
            self._inflight[lz.run_id] = item
        if self._is_async[lz.task_name]:
            loop = self._async_loop()
            item.future = asyncio.run_coroutine_threadsafe(self._run_async(item), loop)
        else:
            self._pool.submit(lambda: self._run_sync(item))

    def _async_loop(self) -> asyncio.AbstractEventLoop:
        if self._aloop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="mainspring-async", daemon=True).start()
            self._aloop = loop
        return self._aloop

    def _run_sync(self, item: _Item) -> None:
        token = set_current(item.ctx)
        try:
            value = item.fn(*item.leased.args, **item.leased.kwargs)
            fin = self._success(item, value)
        except BaseException as exc:
            fin = self._failure(item, exc)
        finally:
            reset_current(token)
        self._complete(item, fin)

    async def _run_async(self, item: _Item) -> None:
        token = set_current(item.ctx)
        try:
            value = await item.fn(*item.leased.args, **item.leased.kwargs)
            fin = self._success(item, value)
        except asyncio.CancelledError:
            if item.abandoned:
                return
            fin = self._failure(item, MainspringError("the attempt was cancelled"))
        except BaseException as exc:
            fin = self._failure(item, exc)
        finally:
            reset_current(token)
        self._complete(item, fin)

    def _success(self, item: _Item, value: Any) -> Finished:
        try:
            output = to_plain(value, f"the return value of {item.leased.task_name}")
        except MainspringError as exc:
            return _fin(item, AttemptResult.TERMINAL, error=f"SerializationError: {exc}")
        return _fin(item, AttemptResult.SUCCESS, output=output)

    def _failure(self, item: _Item, exc: BaseException) -> Finished:
        if isinstance(exc, Retry):
            return _fin(
                item,
                AttemptResult.RETRYABLE,
                error=f"Retry: {exc.reason or 'retry requested'}",
                retry_delay=exc.delay,  # (checked when the Retry was made)
            )
        if isinstance(exc, Fail):
            return _fin(item, AttemptResult.TERMINAL, error=f"Fail: {exc.reason}")
        if isinstance(exc, Suspend):
            return _fin(item, AttemptResult.SUSPENDED, error=f"Suspend: {exc.reason}")
        return _fin(
            item,
            AttemptResult.RETRYABLE,
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(tb.format_exception(exc)),
        )

    def _complete(self, item: _Item, fin: Finished) -> None:
        self.executed += 1
        with self._lock:
            if item.abandoned or self._inflight.get(item.leased.run_id) is not item:
                return  # timed out or lease lost: this late outcome is discarded
            if item.deadline is not None and time.monotonic() > item.deadline:
                item.abandoned = True
                fin = _fin(
                    item,
                    AttemptResult.TIMEOUT,
                    error=f"TimeoutError: the attempt overran its timeout of {item.leased.timeout} s",
                )
            self._done.append((item, fin))
            # the first result wakes the loop; while it gathers, only the last one does
            wake = len(self._done) == 1 or (
                self._waiting and len(self._done) >= len(self._inflight)
            )
        if wake:
            self._wake()
