"""The App's log feed: every log event the App commits, published on ``app.bus`` as an
event of topic ``log.<type>`` after the commit, in commit order (docs/api.md, "The bus")."""

from __future__ import annotations

import queue
import threading

from ._records import log_event
from .bus import Bus
from .core.model import Event


class LogFeed:
    """Hands committed events to one thread that publishes them on the bus, so that
    subscribers run outside the committing thread (and its store locks), in commit order.
    Active only while some subscriber's pattern can match a ``log.`` topic."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._queue: queue.SimpleQueue[list[Event]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.bus.log_subscribed

    def put(self, events: list[Event]) -> None:
        self._queue.put(events)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._publish, name="mainspring-log-feed", daemon=True
                    )
                    self._thread.start()

    def _publish(self) -> None:
        while True:
            events = self._queue.get()
            self.bus.publish_log([log_event(e) for e in events])  # (never raises)
