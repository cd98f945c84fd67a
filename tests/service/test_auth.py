"""Tokens and roles, and the loopback rule (CONTRACT.md section 11, "Auth")."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mainspring.service import TokenFileError, is_loopback, parse_tokens

from .conftest import Served, serve

API = "/api/v1"
TOKENS = {"v-secret": "viewer", "o-secret": "operator"}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """Auth does not depend on the store: these tests run on SQLite only."""
    return f"sqlite:///{tmp_path}/auth.db"


@pytest.fixture
def guarded(store_url: str) -> Iterator[Served]:
    yield from serve(store_url, tokens=dict(TOKENS))  # type: ignore[arg-type]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_api_request_needs_a_valid_token(guarded: Served) -> None:
    c = guarded.client
    for method, path in [
        ("GET", "/runs"),
        ("GET", "/stats"),
        ("GET", "/openapi.json"),
        ("GET", "/log"),
        ("POST", "/tasks/svc.add/runs"),
        ("POST", "/engine/pause"),
        ("GET", "/no-such-route"),  # before routing: a caller without a token learns nothing
        ("DELETE", "/runs"),
    ]:
        for headers in ({}, bearer("wrong"), {"Authorization": "Basic dj1zZWNyZXQ="}):
            r = c.request(method, API + path, headers=headers)
            assert r.status_code == 401, (method, path, headers)
            assert set(r.json()["error"]) == {"code", "message"}
            assert r.headers["www-authenticate"].startswith("Bearer")
    assert not guarded.app.paused()
    assert c.get(f"{API}/no-such-route", headers=bearer("v-secret")).status_code == 404
    assert c.get("/api/other", headers={}).status_code == 401


def test_a_viewer_reads_and_an_operator_writes(guarded: Served) -> None:
    c = guarded.client
    assert c.get(f"{API}/runs", headers=bearer("v-secret")).status_code == 200
    assert c.get(f"{API}/openapi.json", headers=bearer("v-secret")).status_code == 200
    before = guarded.head()
    for path in ("/tasks/svc.add/runs", "/engine/pause"):
        r = c.post(API + path, headers=bearer("v-secret"), json={"args": [1, 2]})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert guarded.head() == before
    r = c.post(f"{API}/tasks/svc.add/runs", headers=bearer("o-secret"), json={"args": [1, 2]})
    assert r.status_code == 201
    run_id = r.json()["run_id"]
    assert c.get(f"{API}/runs/{run_id}", headers=bearer("o-secret")).status_code == 200
    assert c.post(f"{API}/runs/{run_id}/cancel", headers=bearer("v-secret")).status_code == 403
    assert c.post(f"{API}/runs/{run_id}/cancel", headers=bearer("o-secret")).status_code == 200


def test_health_docs_and_the_stream_token_in_the_query(guarded: Served) -> None:
    c = guarded.client
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 200
    assert c.get("/api/docs").status_code == 200  # the page holds no data
    assert c.get(f"{API}/log/stream").status_code == 401
    assert c.get(f"{API}/log/stream", params={"token": "wrong"}).status_code == 401
    # ?token= is for the stream only (EventSource cannot set headers)
    assert c.get(f"{API}/runs", params={"token": "v-secret"}).status_code == 401
    with c.stream("GET", f"{API}/log/stream", params={"token": "v-secret"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert next(r.iter_lines()).startswith("retry:")
    with c.stream("GET", f"{API}/log/stream", headers=bearer("o-secret")) as r:
        assert r.status_code == 200


def test_token_files() -> None:
    assert parse_tokens("# a comment\n\nabc viewer\n  def operator  \n") == {
        "abc": "viewer",
        "def": "operator",
    }
    bad_files = ("", "# only\n", "abc\n", "abc admin\n", "abc viewer extra\n")
    for bad in (*bad_files, "abc viewer\nabc operator\n", "abc viewer\nabc viewer\n"):
        with pytest.raises(TokenFileError):
            parse_tokens(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.3.4.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("::")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve_cli(store_url: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, MAINSPRING_STORE=store_url)
    return subprocess.Popen(
        [sys.executable, "-m", "mainspring.cli.main", "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_cli_refuses_a_non_loopback_host_without_tokens(store_url: str) -> None:
    for host in ("0.0.0.0", "::"):
        proc = _serve_cli(store_url, "--host", host, "--port", str(_free_port()))
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2, err
        assert len(err.strip().splitlines()) == 1 and "--token-file" in err
    proc = _serve_cli(store_url, "--token-file", "/nonexistent/tokens")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "token file" in err


def test_the_cli_serves_with_tokens_and_an_apps_workers(store_url: str, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("op operator\n")
    port = _free_port()
    env = dict(os.environ, MAINSPRING_STORE=store_url)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mainspring.cli.main",
            "serve",
            "svc_tasks:app",
            "--port",
            str(port),
            "--token-file",
            str(tokens),
            "--concurrency",
            "2",
        ],
        cwd=Path(__file__).parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        h = bearer("op")
        r = httpx.post(f"{base}{API}/tasks/svc.add/runs", json={"args": [20, 22]}, headers=h)
        assert r.status_code == 201
        run_id = r.json()["run_id"]
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}{API}/runs/{run_id}", headers=h).json()["state"] != "completed":
            assert time.monotonic() < deadline, "the served App's workers did not run it"
            time.sleep(0.1)
        assert httpx.get(f"{base}{API}/runs/{run_id}", headers=h).json()["output"] == 42
        assert len(httpx.get(f"{base}{API}/workers", headers=h).json()) == 1
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode in (0, -15), proc.stderr.read() if proc.stderr else ""
