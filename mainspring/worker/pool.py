"""The handler threads of a worker: a fixed pool that grows by one per hung handler."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class ThreadPool:
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
