"""Worker processes for the crash tests: start them on one store, signal them, kill them all.

A test writes an app module into tmp_path and starts it with ``sys.executable`` (the module
calls ``app.run_worker``), so nothing here depends on the CLI. Handlers append one line per
event to a file (O_APPEND, one ``write`` per line, so lines from concurrent processes never
interleave) and the test reads them back to see what really ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: The start of every crash-test app module: the App on the test's store and ``record``,
#: which appends one line per call to the executions file.
APP_PRELUDE = """
import os
import signal
import sys
import time

import mainspring as ms

app = ms.App(os.environ["MS_STORE"], lease_seconds=float(os.environ["MS_LEASE"]))
EXEC_FILE = os.environ["MS_EXEC_FILE"]


def record(*fields):
    line = " ".join(str(f) for f in fields) + "\\n"
    fd = os.open(EXEC_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
"""


class Workers:
    """Starts worker processes of ``module`` (app source) on one store; ``close`` kills
    every one of them (SIGKILL ends a stopped process too)."""

    def __init__(
        self,
        tmp_path: Path,
        store: str,
        module: str,
        *,
        lease: float,
        name: str = "crashapp",
    ) -> None:
        self.tmp_path = tmp_path
        self.store = store
        self.lease = lease
        self.name = name
        self.exec_file = tmp_path / "executions.txt"
        (tmp_path / f"{name}.py").write_text(module)
        self.procs: list[subprocess.Popen[bytes]] = []
        #: pid -> time.monotonic() when it was started / just after it died of SIGKILL
        #: (the clock the handlers use)
        self.started_at: dict[int, float] = {}
        self.killed_at: dict[int, float] = {}

    def start(self, concurrency: int = 8, *args: str, **env: str) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        full_env = dict(
            os.environ,
            MS_STORE=self.store,
            MS_LEASE=str(self.lease),
            MS_EXEC_FILE=str(self.exec_file),
            MS_CONCURRENCY=str(concurrency),
            **env,
        )
        with open(self.tmp_path / f"worker{n}.log", "wb") as log:
            p = subprocess.Popen(
                [sys.executable, f"{self.name}.py", *args],
                cwd=self.tmp_path,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(p)
        self.started_at[p.pid] = time.monotonic()
        return p

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill9(self, p: subprocess.Popen[bytes]) -> None:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        self.killed_at[p.pid] = time.monotonic()
        assert p.returncode == -signal.SIGKILL, (p.pid, p.returncode)

    def executions(self) -> list[list[str]]:
        if not self.exec_file.exists():
            return []
        return [line.split() for line in self.exec_file.read_text().splitlines() if line]

    def logs(self) -> str:
        """The end (last 4000 characters) of each worker's output, for failure messages."""
        return "\n".join(
            f"--- worker{i}.log (pid {p.pid}, returncode {p.poll()}) ---\n"
            f"{(self.tmp_path / f'worker{i}.log').read_text()[-4000:]}"
            for i, p in enumerate(self.procs)
        )

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
