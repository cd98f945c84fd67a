"""Bad input over HTTP: a 4xx in the error shape, never a 500, and nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Served

API = "/api/v1"
UNKNOWN = "01a246ec-0000-7000-8000-000000000000"

# (method, path, request keyword arguments, status)
CASES: list[tuple[str, str, dict[str, Any], int]] = [
    # malformed JSON, a body of the wrong shape or types
    ("POST", "/tasks/svc.add/runs", {"content": b"{not json"}, 400),
    ("POST", "/tasks/svc.add/runs", {"content": b"[1, 2]"}, 400),
    ("POST", "/tasks/svc.add/runs", {"content": b"\xff\xfe"}, 400),
    ("POST", "/tasks/svc.add/runs", {"json": {"args": "1, 2"}}, 400),
    ("POST", "/tasks/svc.add/runs", {"json": {"kwargs": [1]}}, 400),
    ("POST", "/tasks/svc.add/runs", {"json": {"args": [1, 2], "delay": "soon"}}, 400),
    ("POST", "/tasks/svc.add/runs", {"json": {"args": [1, 2], "delay": -5}}, 400),
    ("POST", "/tasks/svc.add/runs", {"json": {"args": [1, 2], "priority": 1.5}}, 400),
    ("POST", "/tasks/svc.add/runs", {"json": {"args": [1, 2], "idempotency_key": ""}}, 400),
    ("POST", "/tasks/svc.add/runs", {"json": {"args": [1, 2], "run_at": "yesterday"}}, 400),
    ("POST", "/tasks/svc.add/runs", {"json": {"args": [1, 2], "surprise": 1}}, 400),
    ("POST", "/tasks/svc.add/runs", {"json": {"args": [1]}}, 400),  # misses y
    ("POST", "/tasks/svc.add/runs", {"json": {"args": [1, 2, 3]}}, 400),
    ("POST", "/topics/orders.created/messages", {"content": b"{"}, 400),
    ("POST", "/topics/orders.created/messages", {"json": {"payload": 1, "event_id": 5}}, 400),
    ("POST", "/topics/bad topic!/messages", {"json": {"payload": 1}}, 400),
    ("POST", f"/executions/{UNKNOWN}/signals/go", {"content": b"nope"}, 400),
    # JSON nested deeper than the decoder goes
    (
        "POST",
        "/tasks/svc.add/runs",
        {"content": b'{"args": ' + b"[" * 3000 + b"]" * 3000 + b"}"},
        400,
    ),
    (
        "POST",
        "/topics/deep/messages",
        {"content": b'{"payload": ' + b"[" * 3000 + b"]" * 3000 + b"}"},
        400,
    ),
    # unknown query parameters, wrong types in the query
    ("GET", "/runs", {"params": {"sort": "desc"}}, 400),
    ("GET", "/runs", {"params": {"limit": "many"}}, 400),
    ("GET", "/runs", {"params": {"limit": 0}}, 400),
    ("GET", "/runs", {"params": {"limit": 100000}}, 400),
    ("GET", "/runs", {"params": {"state": "sleeping"}}, 400),
    ("GET", "/runs", {"params": {"cursor": "not-a-cursor"}}, 400),
    ("GET", "/log", {"params": {"since": -1}}, 400),
    ("GET", "/log", {"params": {"since": "x"}}, 400),
    ("GET", "/log", {"params": {"follow": "1"}}, 400),
    ("GET", "/tasks", {"params": {"active": "maybe"}}, 400),
    ("GET", "/stats", {"params": {"x": "1"}}, 400),
    ("GET", f"/runs/{UNKNOWN}", {"params": {"verbose": "1"}}, 400),
    ("POST", "/engine/pause", {"params": {"everything": "1"}}, 400),
    ("GET", "/log/stream", {"params": {"since": "x"}}, 400),
    ("GET", "/log/stream", {"headers": {"Last-Event-ID": "abc"}}, 400),
    # unknown ids
    ("GET", f"/runs/{UNKNOWN}", {}, 404),
    ("GET", f"/runs/{UNKNOWN}/why", {}, 404),
    ("POST", f"/runs/{UNKNOWN}/cancel", {}, 404),
    ("POST", f"/runs/{UNKNOWN}/rerun", {}, 404),
    ("GET", f"/tasks/{UNKNOWN}", {}, 404),
    ("POST", f"/tasks/{UNKNOWN}/cancel", {}, 404),
    ("GET", "/executions/nobody", {}, 404),
    ("POST", "/executions/nobody/signals/go", {"json": {"payload": 1}}, 404),
    # oversized bodies: over the body limit, and a payload over max_payload_bytes
    ("POST", "/tasks/svc.add/runs", {"content": b'{"args": ["' + b"x" * 2_000_000 + b'"]}'}, 413),
    ("POST", "/topics/orders.created/messages", {"json": {"payload": "x" * 1_048_600}}, 413),
]


@pytest.mark.parametrize("store_kind", ["sqlite"], indirect=True)
def test_bad_input_is_a_4xx_in_the_error_shape_and_writes_nothing(served: Served) -> None:
    s = served
    s.client.post(f"{API}/tasks/svc.add/runs", json={"args": [1, 2]})  # (the task exists)
    for method, path, kwargs, status in CASES:
        before = s.head()
        r = s.client.request(method, API + path, **kwargs)
        assert r.status_code == status, (method, path, r.status_code, r.text[:300])
        body = r.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        assert isinstance(body["error"]["code"], str) and body["error"]["message"]
        assert s.head() == before, (method, path, "wrote something")


def test_bad_input_writes_nothing_on_either_store(served: Served) -> None:
    s = served
    for method, path, kwargs, status in [c for c in CASES if c[0] == "POST"][:8]:
        before = s.head()
        r = s.client.request(method, API + path, **kwargs)
        assert r.status_code == status, (path, r.text[:300])
        assert s.head() == before
