"""`mainspring worker` with a real app module, and `mainspring demo`."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import Invoke, Spawn

APP_MODULE = textwrap.dedent(
    """
    import mainspring as ms

    app = ms.App(lease_seconds=5)

    @app.task(name="calc.add", max_attempts=2)
    def add(a, b):
        return {"sum": a + b}

    not_an_app = 42
    """
)


@pytest.fixture
def app_module(tmp_path: Path) -> str:
    (tmp_path / "cli_tasks.py").write_text(APP_MODULE)
    return "cli_tasks:app"


def test_worker_burst_completes_a_submitted_run(spawn: Spawn, store: str, app_module: str) -> None:
    r = spawn("submit", "calc.add", "--args", "[2, 3]", "--store", store)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.strip()
    r = spawn("worker", app_module, "--burst", "--concurrency", "2", "--store", store, timeout=60)
    assert r.returncode == 0, r.stderr
    r = spawn("run", run_id, "--json", "--store", store)
    run = json.loads(r.stdout)
    assert run["state"] == "completed"
    assert run["output"] == {"sum": 5}
    assert [a["result"] for a in run["attempts"]] == ["success"]
    assert spawn("verify", "--store", store).returncode == 0


def test_burst_stops_when_what_is_left_is_not_for_it(
    spawn: Spawn, store: str, app_module: str
) -> None:
    mine = spawn("submit", "calc.add", "--args", "[1, 2]", "--store", store).stdout.strip()
    other = spawn("submit", "not.declared", "--store", store).stdout.strip()
    queued = spawn(
        "submit", "calc.add", "--args", "[3, 4]", "--queue", "elsewhere", "--store", store
    ).stdout.strip()
    r = spawn("worker", app_module, "--burst", "--queue", "default", "--store", store, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "tasks or queues it does not serve" in r.stderr
    states = {
        rid: json.loads(spawn("run", rid, "--json", "--store", store).stdout)["state"]
        for rid in (mine, other, queued)
    }
    # its own run is done; the others wait, never failed or dropped
    assert states == {mine: "completed", other: "ready", queued: "ready"}


def test_burst_on_a_paused_engine_stops_and_leases_nothing(
    spawn: Spawn, store: str, app_module: str
) -> None:
    run_id = spawn("submit", "calc.add", "--args", "[1, 2]", "--store", store).stdout.strip()
    assert spawn("pause", "--store", store).returncode == 0
    r = spawn("worker", app_module, "--burst", "--store", store, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "the engine is paused" in r.stderr
    assert json.loads(spawn("run", run_id, "--json", "--store", store).stdout)["state"] == "ready"


def test_worker_store_overrides_a_hard_coded_store(
    spawn: Spawn, store: str, tmp_path: Path
) -> None:
    (tmp_path / "pinned.py").write_text(
        APP_MODULE.replace("ms.App(lease_seconds=5)", f"ms.App('sqlite:///{tmp_path}/pinned.db')")
    )
    run_id = spawn("submit", "calc.add", "--args", "[1, 1]", "--store", store).stdout.strip()
    r = spawn("--store", store, "worker", "pinned:app", "--burst", "--queue", "default", timeout=60)
    assert r.returncode == 0, r.stderr
    run = json.loads(spawn("run", run_id, "--json", "--store", store).stdout)
    assert run["state"] == "completed" and run["output"] == {"sum": 2}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("no_such_module_xyz:app", "cannot import"),
        ("cli_tasks:missing", "no attribute"),
        ("cli_tasks:not_an_app", "not an ms.App"),
        ("cli_tasks", "module:attribute"),
        ("cli_tasks_exits:app", "SystemExit: not today"),
    ],
)
def test_worker_bad_app_exits_2(
    cli: Invoke, store: str, app_module: str, spec: str, words: str, tmp_path: Path
) -> None:
    (tmp_path / "cli_tasks_exits.py").write_text("import sys\nsys.exit('not today')\n")
    r = cli("worker", spec, "--burst", "--store", store)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_demo_exits_0(spawn: Spawn, tmp_path: Path) -> None:
    r = spawn("demo", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for word in ("retries", "crash and recover", "keyed task", "schedule", "lost", "success"):
        assert word in out, word
    assert "every scenario behaved as promised" in out
    assert list(tmp_path.iterdir()) == []  # a fresh temporary store, nothing in the cwd


def test_log_follow_prints_new_events_until_interrupted(
    spawn: Spawn, store: str, tmp_path: Path
) -> None:
    first = spawn("submit", "t.follow", "--store", store).stdout.strip()
    argv = [sys.executable, "-m", "mainspring.cli.main", "log", "--follow", "--json"]
    proc = subprocess.Popen(
        [*argv, "--store", store],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        bufsize=0,
        # a shell without job control starts background commands with SIGINT ignored, and
        # a child inherits that: give it the default, as a terminal's Ctrl-C would find it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""

    def read_until(run_id: str) -> list[dict[str, object]]:
        nonlocal pending
        seen: list[dict[str, object]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                seen.append(json.loads(line))
                if seen[-1]["run_id"] == run_id and seen[-1]["type"] == "run.state_changed":
                    return seen
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 65536)
                assert chunk, f"log --follow exited with {proc.wait()}"
                pending += chunk
        raise AssertionError(f"no events of {run_id} within 20 s; saw {seen}")

    try:
        read_until(first)
        second = spawn("submit", "t.follow", "--store", store).stdout.strip()
        later = read_until(second)
        assert all(e["run_id"] != first for e in later)  # only new events
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
