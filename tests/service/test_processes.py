"""``mainspring serve`` as a process: with ``--processes N`` several server processes
share one port and one store and stop with the first, even when it is killed; the first
replaces another that stops; a SIGTERM ends the open log streams rather than leave them to
be cancelled."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import mainspring as ms

API = "/api/v1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def _sockets(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def served(store_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``serve --processes 2`` with an operator token, and its base URL."""
    tokens = tmp_path / "tokens"
    tokens.write_text("op operator\n")
    port = _free_port()
    env = dict(os.environ, MAINSPRING_STORE=store_url)
    cmd = [sys.executable, "-m", "mainspring.cli.main", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--processes", "2", "--token-file", str(tokens)],
        env=env,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # serving once it says so: the first process listens before its peers are up
        assert proc.stderr is not None
        said = b""
        deadline = time.monotonic() + 60
        while not said.startswith(b"mainspring serve: http"):
            assert select.select([proc.stderr], [], [], deadline - time.monotonic())[0], (
                "serve --processes 2 did not start"
            )
            said = proc.stderr.readline()
            assert said or proc.poll() is None, "serve --processes 2 stopped"
        assert len(_children(proc.pid)) == 1 and _ready(base)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def _stop_both(proc: subprocess.Popen[bytes], peer: int) -> None:
    """SIGTERM to the first process: it stops, and its peer ``peer`` with it."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) in (0, -15)
    deadline = time.monotonic() + 20
    while _alive(peer):
        assert time.monotonic() < deadline, "the peer outlived the first process"
        time.sleep(0.1)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_both_processes_take_connections_and_submit_to_one_store(
    served: tuple[subprocess.Popen[bytes], str], store_url: str
) -> None:
    proc, base = served
    (peer,) = _children(proc.pid)
    before = {pid: _sockets(pid) for pid in (proc.pid, peer)}
    h = {"Authorization": "Bearer op"}
    clients = [httpx.Client(base_url=base, headers=h, timeout=30) for _ in range(16)]
    try:

        def submit(i: int) -> int:
            body = {"args": [i], "idempotency_key": f"k{i}"}
            r = clients[i].post(f"{API}/tasks/t.proc/runs", json=body)
            assert r.status_code == 201, r.text
            run_id: str = r.json()["run_id"]
            # the run as the other connection (often the other process) sees it
            seen = clients[(i + 1) % 16].get(f"{API}/runs/{run_id}").json()
            assert seen["idempotency_key"] == f"k{i}"
            return i

        with ThreadPoolExecutor(16) as pool:
            assert sorted(pool.map(submit, range(16))) == list(range(16))
        # each process holds some of the 16 keep-alive connections
        opened = {pid: len(_sockets(pid) - before[pid]) for pid in before}
        assert all(n >= 1 for n in opened.values()), opened
        assert sum(opened.values()) >= 16, opened
    finally:
        for c in clients:
            c.close()
    app = ms.App(store_url)
    try:
        runs = app.runs(task="t.proc", limit=100)
        assert sorted(r.idempotency_key or "" for r in runs) == sorted(f"k{i}" for i in range(16))
    finally:
        app.close()
    _stop_both(proc, peer)


def test_a_peer_stops_by_itself_when_the_first_process_is_killed(
    served: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, _ = served
    (peer,) = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 20
    while _alive(peer):
        assert time.monotonic() < deadline, "the peer served on after the first process died"
        time.sleep(0.1)


def test_a_peer_that_stops_is_replaced_and_the_new_one_serves(
    served: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, base = served
    (peer,) = _children(proc.pid)
    shared = _sockets(proc.pid) & _sockets(peer)  # the listening socket, inherited
    os.kill(peer, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        new = [c for c in _children(proc.pid) if c != peer and _alive(c)]
        if new and _sockets(new[0]) & shared:
            break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        assert time.monotonic() < deadline, "no process replaced the one killed"
        time.sleep(0.1)
    (replacement,) = new
    # the replacement takes connections on the shared socket, as the one killed did
    while True:
        before = _sockets(replacement)
        clients = [httpx.Client(base_url=base, timeout=30) for _ in range(16)]
        try:
            for c in clients:
                assert c.get("/healthz").status_code == 200
            took = len(_sockets(replacement) - before)
        finally:
            for c in clients:
                c.close()
        if took:
            break
        assert time.monotonic() < deadline, "the replacement took no connection"
    _stop_both(proc, replacement)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert f"server process {peer} stopped (signal 9)" in err, err
    assert "Traceback" not in err, err


def test_sigterm_ends_open_log_streams_cleanly(store_url: str) -> None:
    port = _free_port()
    env = dict(os.environ, MAINSPRING_STORE=store_url)
    cmd = [sys.executable, "-m", "mainspring.cli.main", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(base):
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        ended: list[bool] = []

        def follow() -> None:  # a dashboard's stream, open when the service is stopped
            with httpx.stream("GET", f"{base}{API}/log/stream", timeout=60) as r:
                for _ in r.iter_bytes():
                    pass
            ended.append(True)

        with ThreadPoolExecutor(1) as pool:
            reading = pool.submit(follow)
            time.sleep(0.5)  # (the stream is open)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) in (0, -15)
            reading.result(30)
        assert ended == [True]  # the stream ended, rather than broke off
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "Traceback" not in err and "Cancel" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def test_sigterm_to_serve_app_stops_its_workers_cleanly(store_url: str, tmp_path: Path) -> None:
    """The handlers under way finish in the grace period and their results are recorded;
    the worker leaves the registry. (uvicorn raised SIGTERM again once it stopped serving:
    the process died there, its runs left `running` until their leases expired, to run
    again.)"""
    (tmp_path / "naps.py").write_text(
        "import time\nimport mainspring as ms\napp = ms.App()\n\n"
        "@app.task(name='naps.nap')\ndef nap(i: int) -> int:\n    time.sleep(1.0)\n    return i\n"
    )
    port = _free_port()
    env = dict(os.environ, MAINSPRING_STORE=store_url, PYTHONPATH=str(tmp_path))
    cmd = [sys.executable, "-m", "mainspring.cli.main", "serve", "naps:app", "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--concurrency", "2"], env=env, stderr=subprocess.PIPE)
    app = ms.App(store_url)
    try:
        deadline = time.monotonic() + 60
        while not _ready(f"http://127.0.0.1:{port}"):
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        handles = [app.submit("naps.nap", args=[i]) for i in range(4)]
        while app.stats()["running"] < 2:
            assert time.monotonic() < deadline, "no handler started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        states = [h.status() for h in handles]
        assert ms.RunState.RUNNING not in states and ms.RunState.LEASED not in states, states
        assert states.count(ms.RunState.COMPLETED) >= 2, states
        assert app.workers() == []
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "Traceback" not in err, err
    finally:
        app.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
