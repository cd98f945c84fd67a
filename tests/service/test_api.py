"""Every REST endpoint of CONTRACT.md section 11 over real HTTP, on both stores."""

from __future__ import annotations

from typing import Any

import pytest
from e2e.helpers import wait_for  # tests/ is on sys.path (rootdir import)

import mainspring as ms
from mainspring._records import plain

from .conftest import Served

API = "/api/v1"


def submit(s: Served, name: str = "svc.add", **body: Any) -> Any:
    r = s.client.post(f"{API}/tasks/{name}/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_a_submit_by_a_name_no_app_declared_is_accepted_with_a_warning(served: Served) -> None:
    run = submit(served, "svc.nobody.declared", args=[1])
    assert run["state"] == "ready"
    (warning,) = run["warnings"]
    assert "no App has declared 'svc.nobody.declared'" in warning


def test_bodies_write_times_as_the_cli_and_the_log_stream_do(served: Served) -> None:
    run = submit(served, args=[1, 2])
    stored = served.app.get_run(run["run_id"])
    assert run["scheduled_at"] == plain(stored)["scheduled_at"]  # the CLI's --json form
    assert run["scheduled_at"].endswith("+00:00")
    (event,) = [e for e in served.client.get(f"{API}/log").json() if e["seq"] == 1]
    assert event == plain(served.app.log(limit=1)[0])


def test_submit_replay_conflict_and_the_run_with_its_history(served: Served) -> None:
    s = served
    run = submit(s, args=[2, 3], idempotency_key="k1", correlation_id="c1")
    assert run["task_name"] == "svc.add" and run["state"] == "ready"
    assert run["idempotency_key"] == "k1" and run["correlation_id"] == "c1"
    stored = s.client.get(f"{API}/runs/{run['run_id']}").json()
    assert run.pop("warnings") == []  # (a declared task)
    assert run == {k: v for k, v in stored.items() if k in run}  # the 201 is the run as stored
    again = s.client.post(
        f"{API}/tasks/svc.add/runs", json={"args": [2, 3], "idempotency_key": "k1"}
    )
    assert again.status_code == 200 and again.json()["run_id"] == run["run_id"]
    other = s.client.post(
        f"{API}/tasks/svc.add/runs", json={"args": [9, 9], "idempotency_key": "k1"}
    )
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    with s.app.worker(concurrency=2) as w:
        w.run_until_idle(timeout=30)
    detail = s.client.get(f"{API}/runs/{run['run_id']}").json()
    assert detail["state"] == "completed" and detail["output"] == 5
    assert [a["result"] for a in detail["attempts"]] == ["success"]
    assert detail["steps"] == []
    assert detail["history"][0]["type"] == "run.created"
    assert [e["seq"] for e in detail["history"]] == sorted(e["seq"] for e in detail["history"])
    why = s.client.get(f"{API}/runs/{run['run_id']}/why").json()
    assert why["state"] == "completed" and why["reasons"][0]["code"] == "terminal"
    delayed = submit(s, args=[1, 1], delay=3600)
    assert delayed["state"] == "scheduled"


def test_runs_are_paged_by_an_opaque_cursor_with_their_filters(served: Served) -> None:
    s = served
    s.app.submit_many("svc.add", [((i, i), {}) for i in range(23)])
    boom = submit(s, "svc.boom")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = s.client.get(f"{API}/runs", params=params).json()
        seen += [r["run_id"] for r in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 5 and len(seen) == 24 == len(set(seen))
    assert seen == [r.run_id for r in s.app.runs(limit=100)]
    # the latest first: the same runs, reversed, page by page too
    latest: list[str] = []
    cursor = None
    while True:
        params = {"limit": 7, "order": "desc", **({"cursor": cursor} if cursor else {})}
        page = s.client.get(f"{API}/runs", params=params).json()
        latest += [r["run_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert latest == seen[::-1]
    assert latest == [r.run_id for r in s.app.runs(limit=100, order="desc")]
    first_desc = s.client.get(f"{API}/runs", params={"limit": 5, "order": "desc"}).json()
    mixed = s.client.get(f"{API}/runs", params={"cursor": first_desc["next_cursor"]})
    assert mixed.status_code == 400 and mixed.json()["error"]["code"] == "invalid_cursor"
    wrong = s.client.get(f"{API}/runs", params={"order": "newest"})
    assert wrong.status_code == 400 and "error" in wrong.json()
    # filters: state, task, queue; a cursor belongs to its filters
    ready = s.client.get(f"{API}/runs", params={"state": "ready", "task": "svc.add", "limit": 20})
    body = ready.json()
    assert len(body["items"]) == 20 and body["next_cursor"]
    assert {r["task_name"] for r in body["items"]} == {"svc.add"}
    other = s.client.get(f"{API}/runs", params={"limit": 20, "cursor": body["next_cursor"]})
    assert other.status_code == 400 and other.json()["error"]["code"] == "invalid_cursor"
    only = s.client.get(f"{API}/runs", params={"task": "svc.boom"}).json()
    assert [r["run_id"] for r in only["items"]] == [boom["run_id"]] and only["next_cursor"] is None
    assert s.client.get(f"{API}/runs", params={"queue": "nope"}).json()["items"] == []
    for bad in ("garbage", "AAAA", "", "x" * 300):
        r = s.client.get(f"{API}/runs", params={"cursor": bad})
        assert r.status_code == 400, bad
        assert r.json()["error"]["code"] == "invalid_cursor"


def test_cancel_resume_and_rerun_a_run(served: Served) -> None:
    s = served
    run = submit(s, args=[1, 2])
    r = s.client.post(f"{API}/runs/{run['run_id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "canceled"
    r = s.client.post(f"{API}/runs/{run['run_id']}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_ended"
    r = s.client.post(f"{API}/runs/{run['run_id']}/resume")
    assert r.status_code == 409
    r = s.client.post(f"{API}/runs/{run['run_id']}/rerun")
    assert r.status_code == 201 and r.json()["rerun_of"] == run["run_id"]
    paused = submit(s, "svc.pause")
    with s.app.worker(concurrency=1) as w:
        wait_for(lambda: s.app.get_run(paused["run_id"]).state == ms.RunState.SUSPENDED)
        r = s.client.post(f"{API}/runs/{paused['run_id']}/resume")
        assert r.status_code == 200 and r.json()["state"] in (
            "ready",
            "leased",
            "running",
            "suspended",
        )
        w.stop()
    for action in ("cancel", "resume", "rerun"):
        r = s.client.post(f"{API}/runs/01a246ec-0000-7000-8000-000000000000/{action}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_run"


def test_tasks_list_get_and_cancel(served: Served) -> None:
    s = served
    run = submit(s, args=[1, 2])
    tasks = s.client.get(f"{API}/tasks").json()
    assert run["task_id"] in [t["task_id"] for t in tasks]
    task = s.client.get(f"{API}/tasks/{run['task_id']}").json()
    assert task["name"] == "svc.add" and task["args"] == [1, 2] and task["state"] == "active"
    r = s.client.post(f"{API}/tasks/{run['task_id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "canceled"
    assert s.client.post(f"{API}/tasks/{run['task_id']}/cancel").status_code == 409
    assert s.client.get(f"{API}/tasks", params={"active": "false"}).json()[0]["state"] == "canceled"
    assert s.app.get_run(run["run_id"]).state == ms.RunState.CANCELED
    assert s.client.get(f"{API}/tasks/nope").status_code == 404
    assert s.client.post(f"{API}/tasks/nope/cancel").status_code == 404


def test_a_workflow_by_execution_id_and_its_signal(served: Served) -> None:
    s = served
    run = submit(s, "svc.approve", args=[7], execution_id="order-7")
    again = s.client.post(
        f"{API}/tasks/svc.approve/runs", json={"args": [7], "execution_id": "order-7"}
    )
    assert again.status_code == 200 and again.json()["run_id"] == run["run_id"]
    with s.app.worker(concurrency=2):
        wait_for(lambda: s.app.get_run(run["run_id"]).state == ms.RunState.SUSPENDED)
        ex = s.client.get(f"{API}/executions/order-7").json()
        assert ex["run_id"] == run["run_id"] and ex["execution_id"] == "order-7"
        r = s.client.post(f"{API}/executions/order-7/signals/approval", json={"payload": "yes"})
        assert r.status_code == 202 and r.json() == {"execution_id": "order-7", "name": "approval"}
        assert s.app.run(run["run_id"]).result(timeout=30) == "order 7: yes"
    assert s.client.get(f"{API}/executions/nope").status_code == 404
    r = s.client.post(f"{API}/executions/nope/signals/approval", json={})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_execution"


def test_publish_messages_and_receipts(served: Served) -> None:
    s = served
    r = s.client.post(f"{API}/topics/orders.created/messages", json={"payload": {"order": 1}})
    assert r.status_code == 201
    m = r.json()
    assert m["topic"] == "orders.created" and m["sequence"] == 1 and m["payload"] == {"order": 1}
    r = s.client.post(
        f"{API}/topics/orders.created/messages", json={"payload": 2, "event_id": "e-2"}
    )
    assert r.status_code == 201 and r.json()["event_id"] == "e-2"
    r = s.client.post(
        f"{API}/topics/orders.created/messages", json={"payload": 3, "event_id": "e-2"}
    )
    assert r.status_code == 409
    listed = s.client.get(f"{API}/topics/orders.created/messages").json()
    assert [x["sequence"] for x in listed] == [1, 2]
    assert (
        s.client.get(f"{API}/topics/orders.created/messages", params={"since": 1}).json()[0][
            "event_id"
        ]
        == "e-2"
    )
    with s.app.worker(concurrency=2) as w:
        w.run_until_idle(timeout=30)
    receipts = s.client.get(f"{API}/receipts", params={"subscriber": "svc.billing"}).json()
    assert sorted(x["status"] for x in receipts) == ["delivered", "delivered"]
    one = s.client.get(f"{API}/receipts", params={"event_id": "e-2"}).json()
    assert [x["output"] for x in one] == ["billed 2"]


def test_log_stats_workers_queues_and_the_engine(served: Served) -> None:
    s = served
    run = submit(s, args=[1, 2])
    events = s.client.get(f"{API}/log", params={"since": 0, "limit": 1000}).json()
    assert [e["seq"] for e in events] == [e.seq for e in s.app.log(limit=1000)]
    mine = s.client.get(f"{API}/log", params={"run_id": run["run_id"]}).json()
    assert {e["run_id"] for e in mine} == {run["run_id"]}
    two = s.client.get(f"{API}/log", params={"since": events[0]["seq"], "limit": 2}).json()
    assert [e["seq"] for e in two] == [e["seq"] for e in events[1:3]]
    stats = s.client.get(f"{API}/stats").json()
    assert stats["ready"] == 1 and set(stats) == {st.value for st in ms.RunState}
    assert s.client.get(f"{API}/workers").json() == []
    with s.app.worker(concurrency=3) as w:
        workers = wait_for(lambda: s.client.get(f"{API}/workers").json())
        assert workers[0]["worker_id"] == w.id and workers[0]["concurrency"] == 3
        w.run_until_idle(timeout=30)
    assert [q["name"] for q in s.client.get(f"{API}/queues").json()] == ["default"]
    r = s.client.post(f"{API}/engine/pause")
    assert r.json() == {"paused": True, "changed": True, "queue": None} and s.app.paused()
    assert s.client.post(f"{API}/engine/pause").json()["changed"] is False
    assert s.client.post(f"{API}/engine/resume").json()["changed"] is True
    assert not s.app.paused()
    r = s.client.post(f"{API}/engine/pause", params={"queue": "default"})
    assert r.json() == {"paused": True, "changed": True, "queue": "default"}
    assert s.client.post(f"{API}/engine/resume", params={"queue": "default"}).json()["changed"]


def test_health_openapi_and_the_docs_page(served: Served) -> None:
    s = served
    assert s.client.get("/healthz").json() == {"status": "ok"}
    assert s.client.get("/readyz").json() == {"status": "ok"}
    doc = s.client.get(f"{API}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    paths = set(doc["paths"])
    for p in (
        "/tasks", "/tasks/{task_id}", "/tasks/{name}/runs", "/tasks/{task_id}/cancel", "/runs",
        "/runs/{run_id}", "/runs/{run_id}/cancel", "/runs/{run_id}/resume",
        "/runs/{run_id}/rerun", "/runs/{run_id}/why", "/executions/{execution_id}",
        "/executions/{execution_id}/signals/{name}", "/topics/{topic}/messages", "/receipts",
        "/log", "/log/stream", "/stats", "/workers", "/engine/pause", "/engine/resume",
    ):  # fmt: skip
        assert API + p in paths, p
    schemas = doc["components"]["schemas"]
    assert {
        "RunInfo",
        "TaskInfo",
        "LogEvent",
        "Explanation",
        "WorkerInfo",
        "Message",
        "Receipt",
    } <= set(schemas)
    page = s.client.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/api/v1/openapi.json" in page.text
    assert 'src="http' not in page.text and 'href="http' not in page.text  # nothing from a CDN


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v1/runs/x/y/z"])
def test_an_unknown_path_is_a_404_in_the_error_shape(served: Served, path: str) -> None:
    r = served.client.get(path)
    assert r.status_code == 404 and set(r.json()["error"]) == {"code", "message"}


def test_head_answers_as_get_without_the_body(served: Served) -> None:
    """Uptime checks and proxies probe with HEAD (RFC 9110: what answers GET answers HEAD)."""
    c = served.client
    for path in ("/healthz", "/readyz", f"{API}/runs", f"{API}/stats", "/metrics"):
        got, head = c.get(path), c.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
    assert c.head(f"{API}/runs/nope").status_code == 404
    assert c.head(f"{API}/log/stream").status_code == 405  # (a stream never ends)


def test_a_task_whose_key_is_a_function_is_submitted_with_the_key_given(served: Served) -> None:
    """(the body had no ``concurrency_key``: a service without the task's code, which
    cannot make the key, could not submit such a task at all)"""

    @served.app.task(name="svc.keyed", concurrency_key=lambda account: f"acct:{account}")
    def keyed(account: int) -> int:
        return account

    run = submit(served, "svc.keyed", args=[1], concurrency_key="acct:1")
    assert run["concurrency_key"] == "acct:1"
