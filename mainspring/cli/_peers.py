"""The other server processes of ``mainspring serve --processes N``, seen from the first:
started together on its listening socket, each replaced when it exits (a crash, an OOM
kill, a signal from outside), and stopped with it.

A peer serves the socket it inherited (commands_serve.py ``_serve_as_peer``) and stops by
itself once the first process is gone; so N processes serve for as long as the first one
does, and none serves on unsupervised.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from ._errors import CliError

#: How long ``--processes`` waits for the other server processes to accept requests.
PEER_START_SECONDS = 60.0
PEER_COMMAND = (sys.executable, "-m", "mainspring.cli.main", "serve")
#: How often the first process looks for a peer that exited.
WATCH_SECONDS = 0.5
#: A peer that exits sooner than this after it started is replaced only after a pause,
#: doubled at each such exit up to ``MAX_PAUSE_SECONDS``: one that cannot run (a bad
#: import, a store it cannot reach) is not restarted in a tight loop.
SHORT_LIFE_SECONDS = 10.0
MAX_PAUSE_SECONDS = 30.0


class Peers:
    """``n`` more processes serving ``sock`` over the store ``store``, kept at ``n``."""

    def __init__(
        self,
        n: int,
        sock: socket.socket,
        args: list[str],
        store: str,
        say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    ) -> None:
        self._peer = (sock, args, store)
        self._say = say
        self.procs = start_peers(n, *self._peer)
        self._born = [time.monotonic()] * n
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        if n:
            self._thread = threading.Thread(
                target=self._watch, name="mainspring-serve-peers", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        pause = 1.0
        while not self._stopping.wait(WATCH_SECONDS):
            for i, p in enumerate(self.procs):
                code = p.poll()
                if code is None:
                    continue
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                if time.monotonic() - self._born[i] < SHORT_LIFE_SECONDS:
                    self._say(
                        f"mainspring serve: server process {p.pid} stopped ({how}) soon after "
                        f"it started; starting another in {pause:g} s"
                    )
                    if self._stopping.wait(pause):
                        return
                    pause = min(pause * 2, MAX_PAUSE_SECONDS)
                else:
                    self._say(
                        f"mainspring serve: server process {p.pid} stopped ({how}); "
                        "starting another"
                    )
                    pause = 1.0
                self._born[i] = time.monotonic()  # (a failed start counts as a short life)
                try:
                    (self.procs[i],) = start_peers(1, *self._peer)
                except (CliError, OSError) as exc:
                    self._say(f"mainspring serve: {exc}")

    def stop(self) -> None:
        """Stop replacing peers, then stop them (SIGTERM, then SIGKILL after 15 s)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        stop_peers(self.procs)


def start_peers(
    n: int, sock: socket.socket, args: list[str], store: str
) -> list[subprocess.Popen[bytes]]:
    """``n`` more processes serving the same listening socket (its descriptor inherited)
    over the same store (its URL in the environment, where no other user can read it);
    returns once each of them accepts requests."""
    if n == 0:
        return []
    fd = sock.fileno()
    ready_r, ready_w = os.pipe()
    peers: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            peers.append(
                subprocess.Popen(
                    [*PEER_COMMAND, *args, "--listen-fd", str(fd), "--ready-fd", str(ready_w)],
                    pass_fds=[fd, ready_w],
                    env=dict(os.environ, MAINSPRING_STORE=store),
                )
            )
        os.close(ready_w)
        ready_w = -1
        started = 0
        deadline = time.monotonic() + PEER_START_SECONDS
        while started < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([ready_r], [], [], left)[0]:
                raise CliError(
                    f"the other server processes did not start in {PEER_START_SECONDS:g} s"
                )
            got = os.read(ready_r, n)
            if not got:
                raise CliError("a server process stopped as it started (its error is above)")
            started += len(got)
        return peers
    except BaseException:
        stop_peers(peers)
        raise
    finally:
        os.close(ready_r)
        if ready_w >= 0:
            os.close(ready_w)


def stop_peers(peers: list[subprocess.Popen[bytes]]) -> None:
    for p in peers:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in peers:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
