"""`mainspring worker` with a real app module, and `mainspring demo`."""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import mainspring as ms
from mainspring.cli.commands_worker import attempt_printer

from .conftest import Invoke, Spawn

APP_MODULE = textwrap.dedent(
    """
    import mainspring as ms

    app = ms.App(lease_seconds=5)

    @app.task(name="calc.add", max_attempts=2)
    def add(a, b):
        return {"sum": a + b}

    @app.task(name="calc.boom", max_attempts=2, backoff=ms.Backoff.fixed(0.05))
    def boom():
        raise ValueError("no\\nluck")

    not_an_app = 42
    nothing = None
    label = "x"
    app_class = ms.App
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


ATTEMPT_LINE = re.compile(
    r"^(?P<task>\S+)  (?P<run>[0-9a-f-]{36})  (?P<result>[a-z]+)  (?P<duration>\d+\.\d{3})s  "
    r"attempt (?P<attempt>\d+)(?:  (?P<error>.+))?$"
)


def test_worker_prefetch_runs_each_once_and_refuses_a_negative_count(
    spawn: Spawn, cli: Invoke, store: str, app_module: str
) -> None:
    ids = []
    for i in range(6):
        r = spawn("submit", "calc.add", "--args", f"[{i}, 1]", "--store", store)
        assert r.returncode == 0, r.stderr
        ids.append(r.stdout.strip())
    r = spawn("worker", app_module, "--burst", "-c", "2", "--prefetch", "3", "--store", store)
    assert r.returncode == 0, r.stderr
    assert "concurrency 2, prefetch 3" in r.stderr
    assert len(r.stdout.strip().splitlines()) == 6  # one attempt line per run
    for i, run_id in enumerate(ids):
        run = json.loads(spawn("run", run_id, "--json", "--store", store).stdout)
        assert run["state"] == "completed" and run["output"] == {"sum": i + 1}
        assert len(run["attempts"]) == 1
    r = cli("worker", app_module, "--burst", "--prefetch", "-1", "--store", store)
    assert r.exit_code == 2 and "prefetch" in r.output


def test_worker_prints_one_line_per_finished_attempt(
    spawn: Spawn, store: str, app_module: str
) -> None:
    ok = spawn("submit", "calc.add", "--args", "[2, 3]", "--store", store).stdout.strip()
    bad = spawn("submit", "calc.boom", "--store", store).stdout.strip()
    r = spawn("worker", app_module, "--burst", "--concurrency", "1", "--store", store)
    assert r.returncode == 0, r.stderr
    lines = [ATTEMPT_LINE.match(line) for line in r.stdout.splitlines()]
    assert all(lines), r.stdout
    seen = sorted(
        (m["task"], m["run"], m["result"], int(m["attempt"]), m["error"])
        for m in lines
        if m is not None
    )
    assert seen == sorted(
        [
            ("calc.add", ok, "success", 1, None),
            # submitted by name before any App recorded calc.boom: the default max_attempts=1
            ("calc.boom", bad, "retryable", 1, "ValueError: no luck"),
        ]
    )
    assert "mainspring worker: 2 task(s)" in r.stderr  # the start line


def test_worker_quiet_prints_no_attempt_lines(cli: Invoke, store: str, app_module: str) -> None:
    run_id = cli("submit", "calc.add", "--args", "[1, 1]", "--store", store).stdout.strip()
    r = cli("worker", app_module, "--burst", "--quiet", "--store", store)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    doc = json.loads(cli("run", run_id, "--json", "--store", store).stdout)
    assert doc["state"] == "completed"


def test_worker_json_prints_one_object_per_attempt(
    cli: Invoke, store: str, app_module: str
) -> None:
    run_id = cli("submit", "calc.add", "--args", "[1, 1]", "--store", store).stdout.strip()
    r = cli("worker", app_module, "--burst", "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    [doc] = [json.loads(line) for line in r.stdout.splitlines()]
    assert set(doc) == {"task_name", "run_id", "attempt", "result", "duration", "error"}
    assert doc["task_name"] == "calc.add" and doc["run_id"] == run_id
    assert doc["attempt"] == 1 and doc["result"] == "success" and doc["error"] is None
    assert isinstance(doc["duration"], float) and doc["duration"] >= 0


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


def test_burst_stops_when_what_is_left_is_in_a_paused_queue(
    spawn: Spawn, store: str, app_module: str
) -> None:
    """A queue it serves is paused. (It waited for ever, as if a worker would come.)"""
    mine = spawn(
        "submit", "calc.add", "--args", "[1, 2]", "--queue", "open", "--store", store
    ).stdout.strip()
    held = spawn("submit", "calc.add", "--args", "[3, 4]", "--store", store).stdout.strip()
    assert spawn("pause", "--queue", "default", "--store", store).returncode == 0
    r = spawn(
        "worker", app_module, "--burst", "--queue", "default", "--queue", "open",
        "--store", store, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "paused queues" in r.stderr
    states = {
        rid: json.loads(spawn("run", rid, "--json", "--store", store).stdout)["state"]
        for rid in (mine, held)
    }
    assert states == {mine: "completed", held: "ready"}


def test_a_store_given_in_the_code_comes_before_the_store_option(
    spawn: Spawn, store: str, tmp_path: Path
) -> None:
    pinned = f"sqlite:///{tmp_path}/pinned.db"
    (tmp_path / "pinned.py").write_text(
        APP_MODULE.replace("ms.App(lease_seconds=5)", f"ms.App('{pinned}')")
    )
    there = spawn("submit", "calc.add", "--args", "[1, 1]", "--store", pinned).stdout.strip()
    here = spawn("submit", "calc.add", "--args", "[2, 2]", "--store", store).stdout.strip()
    r = spawn("--store", store, "worker", "pinned:app", "--burst", "--queue", "default", timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"--store {store} is not used" in r.stderr  # (said, not silently ignored)
    done = json.loads(spawn("run", there, "--json", "--store", pinned).stdout)
    assert done["state"] == "completed" and done["output"] == {"sum": 2}
    waiting = json.loads(spawn("run", here, "--json", "--store", store).stdout)
    assert waiting["state"] == "ready"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("no_such_module_xyz:app", "cannot import"),
        ("cli_tasks:missing", "no attribute"),
        ("cli_tasks:not_an_app", "is an int, not an ms.App"),
        ("cli_tasks:nothing", "is None, not an ms.App"),
        ("cli_tasks:label", "is a str, not an ms.App"),
        ("cli_tasks:app_class", "is the class App, not an ms.App instance"),
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


def test_attempt_lines_stop_quietly_when_stdout_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Gone(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            Gone.writes += 1
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Gone())
    printer = attempt_printer(json_lines=False)
    done = ms.AttemptDone(
        task_name="t", run_id="r", attempt=1, result=ms.AttemptResult.SUCCESS,
        duration=0.5, error=None,
    )  # fmt: skip
    printer(done)  # never raises on the worker's loop thread
    printer(done)
    assert Gone.writes == 1  # and stops trying once stdout is gone


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
    """It prints new events as they come, only new ones; a compaction that passes it is
    said on stderr and it goes on (as the log stream does), until Ctrl-C."""
    first = spawn("submit", "t.follow", "--store", store).stdout.strip()
    argv = [sys.executable, "-m", "mainspring.cli.main", "log", "--follow", "--json"]
    proc = subprocess.Popen(
        [*argv, "--store", store],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        # a shell without job control starts background commands with SIGINT ignored, and
        # a child inherits that: give it the default, as a terminal's Ctrl-C would find it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""

    def read_until(run_id: str | None) -> list[dict[str, object]]:
        """Events up to one of ``run_id`` (None: up to the compaction's)."""
        nonlocal pending
        seen: list[dict[str, object]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                seen.append(json.loads(line))
                if run_id is None and seen[-1]["type"] == "log.compacted":
                    return seen
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
        proc.send_signal(signal.SIGSTOP)  # behind, while events are written and compacted
        gone = spawn("submit", "t.follow", "--store", store).stdout.strip()
        assert spawn("compact", "--store", store).returncode == 0
        proc.send_signal(signal.SIGCONT)
        after = read_until(None)
        assert all(e["run_id"] != gone for e in after)  # (compacted away before it read them)
        third = spawn("submit", "t.follow", "--store", store).stdout.strip()
        read_until(third)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        assert b"compacted away while following" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
