"""Fixtures of the command-line tests: a store of each kind and ways to run `mainspring`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mainspring.cli import main as cli_main


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the caller's MAINSPRING_STORE or writes into the working directory."""
    for name in ("MAINSPRING_STORE", "MAINSPRING_DEBUG"):
        monkeypatch.setenv(name, "")  # records the caller's value; restored afterwards
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # `worker` puts the cwd on sys.path
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("cli_tasks"):
            del sys.modules[name]


@pytest.fixture
def store(store_url: str) -> str:
    """A new store of each kind (tests/conftest.py): these tests run once per store."""
    return store_url


Invoke = Callable[..., Result]


@pytest.fixture
def cli() -> Invoke:
    """Invoke the typer app in-process (CliRunner); stdout and stderr kept apart."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli_main.app, list(args), catch_exceptions=False)

    return invoke


Spawn = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def spawn(tmp_path: Path) -> Spawn:
    """Run ``python -m mainspring.cli.main ...`` as a real process in tmp_path."""

    def run(
        *args: str, timeout: float = 120.0, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "MAINSPRING_STORE"}
        return subprocess.run(
            [sys.executable, "-m", "mainspring.cli.main", *args],
            cwd=cwd or tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
