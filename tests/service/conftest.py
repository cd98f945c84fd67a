"""A served store for the service tests: uvicorn in a thread of the test process on a free
loopback port, over an App of each store (``store_url``), and an httpx client for it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("litestar")
httpx = pytest.importorskip("httpx")

import mainspring as ms  # noqa: E402
from mainspring.service import BackgroundServer, create_app  # noqa: E402
from mainspring.service._auth import Role  # noqa: E402

from .svc_tasks import declare  # noqa: E402

HERE = Path(__file__).parent


@dataclass
class Served:
    """A running service: its App (in this process), base URL and a client."""

    app: ms.App
    url: str
    client: httpx.Client
    tasks: dict[str, Any]

    def head(self) -> int:
        """The seq of the log's last event (to see that nothing was written)."""
        last = 0
        while True:
            found = self.app.log(since=last, limit=1000)
            if not found:
                return last
            last = found[-1].seq


def serve(store_url: str, tokens: dict[str, Role] | None = None, **kwargs: Any) -> Iterator[Served]:
    """Serve an App on ``store_url`` (with the test tasks declared) until the block ends."""
    app = ms.App(store_url, lease_seconds=5.0, **kwargs)
    tasks = declare(app)
    app.open()
    server = BackgroundServer(create_app(app, tokens)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            yield Served(app, server.url, client, tasks)
    finally:
        server.stop()
        app.close()


@pytest.fixture
def served(store_url: str) -> Iterator[Served]:
    """The service over a new store of each kind, without tokens."""
    yield from serve(store_url)


def worker_process(store_url: str) -> subprocess.Popen[bytes]:
    """A worker for the test tasks in another process (stop it with ``stop_process``)."""
    env = dict(os.environ, MAINSPRING_STORE=store_url)
    code = "import svc_tasks; svc_tasks.app.run_worker(concurrency=4, grace_seconds=1)"
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=HERE, env=env, stdout=subprocess.DEVNULL
    )


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not end in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print how many requests the OpenAPI fuzzing tried (and how many 5xx it found)."""
    for name, module in list(sys.modules.items()):
        tried = getattr(module, "TRIED", None) if name.endswith("test_fuzz") else None
        if tried and tried["requests"]:
            terminalreporter.write_line(
                f"fuzzing the OpenAPI document: {tried['requests']} requests tried, "
                f"{tried['5xx']} 5xx"
            )
