"""Wake-ups across processes on one machine, without polling the database.

Each waiting worker binds a Unix datagram socket in a directory named after the store.
After a commit that made work available, the committer sends one byte to every socket
there (a few microseconds each). A dead worker's socket refuses the datagram and is
removed. Workers still wake on a slow timer, so a missed datagram costs latency, never
correctness.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import select
import socket
import tempfile
import threading
import time

from .base import EndedWaiter, Waiter

#: A wake-up names at most this many ended runs; a longer list is sent as ``*`` (any run).
MAX_NAMED = 100


def notify_dir(key: str) -> str:
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    base = os.path.join(tempfile.gettempdir(), f"mainspring-{os.getuid()}")
    return os.path.join(base, digest)


class SocketWaiter(Waiter):
    def __init__(self, directory: str) -> None:
        self.created = time.monotonic()
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, f"{os.getpid()}-{os.urandom(4).hex()}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)

    def wait(self, timeout: float) -> bool:
        return self._receive(timeout) is not None

    def _receive(self, timeout: float) -> list[bytes] | None:
        """Wait up to ``timeout`` s for datagrams; all of them that came, or None."""
        try:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        except (OSError, ValueError):
            return None
        if not ready:
            return None
        messages: list[bytes] = []
        with contextlib.suppress(OSError):
            while True:
                messages.append(self.sock.recv(65536))
        return messages

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class SocketEndedWaiter(SocketWaiter, EndedWaiter):
    """A ``SocketWaiter`` in the ``ended`` directory: its datagrams name the runs that
    ended (comma-separated ids, or ``*`` for too many to name)."""

    @property
    def heard(self) -> bool:
        """Old enough that every committer's listing of the directory includes it."""
        return time.monotonic() - self.created > 2 * Notifier.REFRESH

    def clear(self) -> None:
        self.wait(0)

    def wait_for(self, run_id: str, timeout: float) -> bool:
        key = run_id.encode()
        deadline = time.monotonic() + max(0.0, timeout)
        while (messages := self._receive(deadline - time.monotonic())) is not None:
            if any(m == b"*" or key in m.split(b",") for m in messages):
                return True
        return False


class Notifier:
    """Sends wake-ups to every waiter of one store."""

    REFRESH = 0.5  # seconds between directory listings

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._targets: list[str] = []
        self._listed = 0.0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def _list(self) -> list[str]:
        now = time.monotonic()
        if now - self._listed > self.REFRESH:
            try:
                names = os.listdir(self.directory)
            except OSError:
                names = []
            self._targets = [os.path.join(self.directory, n) for n in names if n.endswith(".sock")]
            self._listed = now
        return self._targets

    def notify(self, message: bytes = b"!") -> None:
        with self._lock:
            for path in list(self._list()):
                try:
                    self._sock.sendto(message, path)
                except BlockingIOError:
                    pass  # its buffer is full: it has wake-ups pending already
                except OSError as exc:
                    if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                        with contextlib.suppress(ValueError):
                            self._targets.remove(path)

    def refresh(self) -> None:
        with self._lock:
            self._listed = 0.0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
