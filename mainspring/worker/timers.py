"""The worker loop's timers and flags, in one place: what is due now, how long to sleep.

Two clocks meet here (see the worker module's docstring for why each is used where):

- the **monotonic** clock (``monotonic``, real time): lease renewals, the heartbeat gap,
  housekeeping while busy, the poll, the stop deadline and the store-error backoff;
- the **engine's clock** (``clock``, the App's: ``SystemClock`` or a ``ManualClock``): the
  next due run, retry or cron occurrence (``next_due``, as the store reports it).

With a clock that follows real time, the loop sleeps until ``next_due`` comes. With a clock
that is moved by hand (``clock_driven``: it tells the worker of every move), a due time in
the future is reached only by an ``advance``, which wakes the loop itself
(``clock_moved``): the loop sets no timer for it.

Nothing here touches a thread, a lock or a descriptor: the loop asks, and tells what
happened. Methods take the loop's own reading of the monotonic clock (``now``) where the
loop shares one reading between several decisions; the others read ``monotonic`` when, and
only when, they need it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..core.clock import Clock

POLL_SECONDS = 1.0  # the slowest a worker ever looks for work without a wake-up
HOUSEKEEPING_SECONDS = 0.25  # lease expiry / promotion / cron at least this often while busy
STOP_POLL_SECONDS = 0.05  # while stopping, how often the loop looks at its handlers
MIN_RENEW_SECONDS = 0.05  # renewals never come closer together than this
DUE_MARGIN_SECONDS = 0.001  # a due time already reached: look again this soon (not in 0 s)
MAX_BACKOFF_SECONDS = 2.0  # longest wait after a store error before the turn is tried again


class Timers:
    """What the worker loop owes, and when.

    Flags: ``housekeep`` (expire leases, derive cron occurrences, promote due runs in the
    next turn), ``need_cycle`` (look for work to lease), ``refresh_due`` (a commit elsewhere:
    learn the store's next due time), ``renew_soon`` (the clock moved a renewal period).
    Times (monotonic): ``next_renew``, ``last_renew``, ``next_housekeeping``,
    ``stop_deadline``; (engine clock): ``next_due``, ``renewed_at``, ``moved_to`` (a move
    no housekeeping turn has seen yet), ``caught_up`` (the latest move one has seen).
    """

    def __init__(
        self,
        lease_seconds: float,
        clock: Clock,
        *,
        clock_driven: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.clock_driven = clock_driven
        self.monotonic = monotonic
        self.renew_every = max(lease_seconds / 3.0, MIN_RENEW_SECONDS)
        # heartbeats renew at once, but not more often than this (each renewal is a
        # transaction and a lease.renewed event per run)
        self.heartbeat_gap = min(1.0, self.renew_every / 10)
        self.next_renew = monotonic() + self.renew_every
        self.last_renew = 0.0
        # the engine-clock time the latest renewal covered (a worker registers as it starts)
        self.renewed_at: float | None = clock.now() if clock_driven else None
        self.renew_soon = False
        self.housekeep = True
        self.next_housekeeping = 0.0
        self.need_cycle = True
        self.refresh_due = False
        self.next_due: float | None = None  # engine clock
        self.stop_deadline: float | None = None
        self.backoff = 0.0
        self.retry_now = False
        # clock moved by hand: the time it was moved to, until a housekeeping turn saw it;
        # then the time the latest such turn saw (``Worker.clock_seen``)
        self.moved_to: float | None = None
        self.caught_up: float | None = None

    # -- stopping ---------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.stop_deadline is not None

    def stop(self, now: float, grace_seconds: float) -> None:
        """A stop was asked for: running handlers have until ``now + grace_seconds``."""
        if self.stop_deadline is None:
            self.stop_deadline = now + grace_seconds

    def grace_over(self, now: float) -> bool:
        return self.stop_deadline is not None and now >= self.stop_deadline

    # -- the clock moved by hand -------------------------------------------------------------
    def clock_moved(self) -> float:
        """The engine's clock was advanced: housekeep and look for work in the next turn
        (runs, retries and cron occurrences may have come due, leases may have expired), and
        renew this worker's leases if the clock moved a renewal period since the last
        renewal, as the worker would have in that much real time. Returns the clock's time."""
        t = self.moved_to = self.clock.now()
        self.housekeep = True
        self.need_cycle = True
        if self.renewed_at is not None and t - self.renewed_at >= self.renew_every:
            self.renew_soon = True
        return t

    # -- the turn ------------------------------------------------------------------------------
    def turn_wanted(self, now: float, finished: int, want: int) -> bool:
        """Whether this turn needs the engine: results to record, housekeeping due, the next
        due time to learn, or room for runs that may be waiting."""
        if now >= self.next_housekeeping:
            self.housekeep = True
        return (
            bool(finished) or self.housekeep or self.refresh_due or (self.need_cycle and want > 0)
        )

    def turned(self, want: int, leased: int, next_due: float | None) -> None:
        """The turn committed: it leased ``leased`` of the ``want`` runs it asked for, and
        the store said ``next_due`` (with housekeeping or a refresh: the store's next due
        time; otherwise: the first retry decided in this turn, or None)."""
        self.backoff = 0.0
        # as many as it asked for: there may be more ready runs, so turn again at once
        self.need_cycle = want > 0 and leased == want
        if self.housekeep or self.refresh_due:
            self.next_due = next_due
            self.refresh_due = False
        elif next_due is not None:  # a retry decided in this turn
            self.next_due = next_due if self.next_due is None else min(self.next_due, next_due)
        if self.housekeep:
            self.housekeep = False
            self.next_housekeeping = self.monotonic() + HOUSEKEEPING_SECONDS
            if self.moved_to is not None:
                self.caught_up, self.moved_to = self.moved_to, None

    def slots_freed(self) -> None:
        """Attempts this worker ran were taken from it (canceled, lease lost): their slots
        are free, so look for work in the next turn rather than at the next timer."""
        self.need_cycle = True

    def turn_failed(self) -> float:
        """The turn's transaction failed (the store is unreachable): how long to wait before
        the loop tries again (doubling from 50 ms up to 2 s). The flags stay as they were,
        so the next turn does what this one could not."""
        self.backoff = min(max(self.backoff * 2, 0.05), MAX_BACKOFF_SECONDS)
        self.retry_now = True
        return self.backoff

    def must_turn(self, pending: bool, free: int) -> bool:
        """Turn again without sleeping: results are waiting to be recorded, the last turn
        failed (after its backoff), or it filled every slot it asked for and more runs may be
        ready."""
        if self.retry_now:
            self.retry_now = False
            return True
        return pending or (self.need_cycle and free > 0 and not self.stopping)

    # -- renewals --------------------------------------------------------------------------------
    def renew_due(self, now: float, heartbeat: bool) -> bool:
        """A renewal (of the leases and the registry heartbeat) is due: its period passed,
        the clock moved that much, or a handler heartbeated and the gap since the last
        renewal allows another."""
        return (
            now >= self.next_renew
            or self.renew_soon
            or (heartbeat and now >= self.last_renew + self.heartbeat_gap)
        )

    def renewing(self) -> None:
        """A renewal starts (call before it, so a clock move during it is not missed)."""
        self.renew_soon = False
        if self.clock_driven:
            self.renewed_at = self.clock.now()

    def renewed(self) -> None:
        """The renewal ended (done or failed: either way, the next is a period away)."""
        self.last_renew = self.monotonic()
        self.next_renew = self.last_renew + self.renew_every

    # -- sleeping ----------------------------------------------------------------------------------
    def sleep_for(self, *, heartbeat: bool, busy: bool, deadline: float | None) -> float:
        """How long the loop may sleep (unless woken): until the earliest of the poll, the
        next renewal (or a held-back heartbeat's), housekeeping while handlers run (``busy``),
        the next due time, the nearest attempt ``deadline`` (monotonic), and, while stopping,
        a short look at the handlers."""
        now = self.monotonic()
        timeout = min(POLL_SECONDS, max(0.0, self.next_renew - now))
        if heartbeat:  # a heartbeat held back by heartbeat_gap
            timeout = min(timeout, max(0.0, self.last_renew + self.heartbeat_gap - now))
        if busy:
            timeout = min(timeout, max(0.0, self.next_housekeeping - now))
        if self.next_due is not None:
            left = self.next_due - self.clock.now()
            # a clock moved by hand reaches a future due time only by an advance, which
            # wakes the loop: no timer for it (one already reached is looked at now)
            if left <= 0 or not self.clock_driven:
                timeout = min(timeout, max(DUE_MARGIN_SECONDS, left))
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - now))
        if self.stop_deadline is not None:
            timeout = min(timeout, max(0.0, self.stop_deadline - now), STOP_POLL_SECONDS)
        return timeout

    def woke(self, *, timer: bool, store: bool, stop_asked: bool) -> None:
        """The sleep ended. ``timer``: nothing woke it (the poll, a due run, a renewal, a
        deadline): housekeep, then look for work. ``store``: a commit elsewhere made runs
        ready (or moved the next due time): look for work and learn the next due time;
        promotion and expiry keep to their timers. A wake-up of the loop's own pipe (a
        result, a heartbeat, a clock move, a stop) changes nothing here."""
        if timer:
            self.housekeep = True
            self.need_cycle = True
        elif store:
            self.need_cycle = True
            self.refresh_due = True
        if stop_asked:
            self.need_cycle = False
