"""The command line for workflows: `signal`, the steps, waits and children `run` shows,
and what `why` says of a suspended workflow."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mainspring as ms

from .conftest import Invoke
from .test_commands import has_offset, one_error_line, submit

NO_SUCH_ID = "01900000-0000-7000-8000-000000000000"


@pytest.fixture
def app(store: str) -> Iterator[ms.App]:
    """An App with a workflow: a step, a step that fails (caught), a signal wait and a
    child run."""
    app = ms.App(store=store)

    @app.step(name="wf.fetch")
    def fetch(x: int) -> dict[str, int]:
        return {"v": x * 2}

    @app.step(name="wf.broken", max_attempts=1)
    def broken() -> None:
        raise ValueError("no such thing")

    @app.task(name="wf.child")
    def child(x: int) -> int:
        # long enough that the workflow asks for its result before it ends, and so waits
        # (a child that ended already is returned without a wait)
        time.sleep(0.3)
        return x + 1

    @app.workflow(name="wf.flow")
    def flow(x: int) -> list[Any]:
        a = fetch(x)
        try:
            broken()
        except ValueError:
            pass
        sig = ms.wait_for("go", timeout=3600)
        c = child.submit(x)
        return [a, sig, c.result()]

    @app.workflow(name="wf.impatient")
    def impatient() -> Any:
        return ms.wait_for("never", timeout=0.01)

    app.open()
    try:
        yield app
    finally:
        app.close()


def suspended_flow(app: ms.App, execution_id: str = "order-1") -> ms.RunHandle:
    """A wf.flow run suspended in its wait for the signal 'go'."""
    h = app.submit("wf.flow", [5], execution_id=execution_id)
    with app.worker() as w:
        w.run_until_idle()
    assert h.status() == "suspended"
    return h


def finish(app: ms.App, h: ms.RunHandle) -> Any:
    with app.worker() as w:
        w.run_until_idle()
    return h.result(timeout=0)


def events_of(app: ms.App, h: ms.RunHandle, kind: str) -> list[ms.LogEvent]:
    return [e for e in h.history() if e.type == kind]


# -- signal ---------------------------------------------------------------------------------------
def test_signal_by_execution_id_wakes_the_workflow_with_the_payload(
    cli: Invoke, store: str, app: ms.App
) -> None:
    h = suspended_flow(app)
    r = cli("signal", "order-1", "go", "--payload", '{"ok": [1, 2]}', "--store", store)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == (
        f"sent signal 'go' to {h.run_id} (execution order-1); the run is ready"
    )
    assert h.status() == "ready"
    assert finish(app, h) == [{"v": 10}, {"ok": [1, 2]}, 6]
    (sent,) = events_of(app, h, "signal.sent")
    assert sent.data["name"] == "go" and sent.data["payload"] == {"ok": [1, 2]}


def test_signal_by_run_id_with_json_prints_the_run_and_defaults_the_payload_to_null(
    cli: Invoke, store: str, app: ms.App
) -> None:
    h = suspended_flow(app)
    r = cli("signal", h.run_id, "go", "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["run_id"] == h.run_id and doc["state"] == "ready"
    assert doc["execution_id"] == "order-1"
    assert finish(app, h)[1] is None


def test_a_signal_sent_before_the_workflow_waits_is_kept_for_it(
    cli: Invoke, store: str, app: ms.App
) -> None:
    h = app.submit("wf.flow", [1], execution_id="early")
    r = cli("signal", "early", "go", "--payload", '"first"', "--store", store)
    assert r.exit_code == 0, r.stderr
    assert "the run is ready" in r.stdout  # not started yet: nothing to wake
    assert finish(app, h) == [{"v": 2}, "first", 2]


def test_signal_with_an_idempotency_key_is_sent_once(cli: Invoke, store: str, app: ms.App) -> None:
    h = suspended_flow(app)
    said = []
    for payload in ("1", "2"):
        r = cli(
            "signal", "order-1", "go", "--payload", payload, "--idempotency-key", "k1",
            "--store", store,
        )  # fmt: skip
        assert r.exit_code == 0, r.stderr
        said.append(r.stdout)
    assert said[0].startswith("sent signal 'go'")
    assert "with idempotency key 'k1' was sent to" in said[1] and "not sent again" in said[1]
    (sent,) = events_of(app, h, "signal.sent")
    assert sent.data["payload"] == 1 and sent.data["idempotency_key"] == "k1"
    assert finish(app, h)[1] == 1


@pytest.mark.parametrize("payload", ['{"ok": ', "not json", ""])
def test_signal_with_a_payload_that_is_not_json_exits_2_and_writes_nothing(
    cli: Invoke, store: str, app: ms.App, payload: str
) -> None:
    h = suspended_flow(app)
    before = app.log(limit=100_000)
    r = cli("signal", "order-1", "go", "--payload", payload, "--store", store)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "--payload is not valid JSON" in one_error_line(r.stderr)
    assert r.stdout == ""
    assert app.log(limit=100_000) == before
    assert h.status() == "suspended"


def test_signal_to_an_unknown_id_exits_2(cli: Invoke, store: str, app: ms.App) -> None:
    suspended_flow(app)
    before = app.log(limit=100_000)
    for target in ("order-2", NO_SUCH_ID):
        r = cli("signal", target, "go", "--store", store)
        assert r.exit_code == 2, r.stdout + r.stderr
        assert f"no workflow execution or run {target!r}" in one_error_line(r.stderr)
        assert r.stdout == ""
    assert app.log(limit=100_000) == before


def test_signal_never_creates_a_store(cli: Invoke, tmp_path: Path) -> None:
    r = cli("signal", "order-1", "go", "--store", "sqlite:///typo.db")
    assert r.exit_code == 2
    assert str(tmp_path / "typo.db") in one_error_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


# -- run: steps, waits, parent and children ------------------------------------------------------
def test_run_shows_the_steps_waits_and_children_of_a_workflow(
    cli: Invoke, store: str, app: ms.App
) -> None:
    h = suspended_flow(app)
    app.signal("order-1", "go", {"by": "ops"})
    finish(app, h)
    child_id = h.steps()[-1].output

    r = cli("run", h.run_id, "--store", store)
    assert r.exit_code == 0, r.stderr
    text = r.stdout
    steps = text[text.index("steps") : text.index("waits")]
    lines = [line for line in steps.splitlines() if "│" in line]
    assert [line.split("│")[1].strip() for line in lines] == [
        "wf.fetch",
        "wf.broken",
        "submit:wf.child",
    ]
    assert "completed" in lines[0] and '{"v":10}' in lines[0]
    assert "failed" in lines[1] and "ValueError: no such thing" in lines[1]
    assert child_id in lines[2]
    waits = text[text.index("waits") : text.index("history")]
    signal_line = next(line for line in waits.splitlines() if "signal" in line)
    assert "'go'" in signal_line and "completed" in signal_line and '{"by":"ops"}' in signal_line
    child_line = next(line for line in waits.splitlines() if "child" in line)
    assert child_id in child_line
    details = text[: text.index("attempts")]
    assert "children" in details and child_id in details

    r = cli("run", child_id, "--store", store)
    assert r.exit_code == 0, r.stderr
    parent = next(line for line in r.stdout.splitlines() if line.startswith("parent run"))
    assert parent.split()[-1] == h.run_id
    assert "steps" not in r.stdout and "waits" not in r.stdout  # a plain task's run


def test_run_json_has_steps_waits_and_children(cli: Invoke, store: str, app: ms.App) -> None:
    h = suspended_flow(app)
    r = cli("run", h.run_id, "--json", "--store", store)
    doc = json.loads(r.stdout)
    assert [s["name"] for s in doc["steps"]] == ["wf.fetch", "wf.broken"]
    fetched, broken = doc["steps"]
    assert fetched["number"] == 1 and fetched["state"] == "completed"
    assert fetched["output"] == {"v": 10} and fetched["attempts"] == 1
    assert has_offset(fetched["started_at"]) and has_offset(fetched["finished_at"])
    assert broken["state"] == "failed" and broken["error"] == "ValueError: no such thing"
    (wait,) = doc["waits"]
    assert wait["kind"] == "signal" and wait["name"] == "go" and wait["state"] == "waiting"
    assert wait["timed_out"] is False and has_offset(wait["until"])
    assert doc["children"] == []

    app.signal("order-1", "go")
    finish(app, h)
    doc = json.loads(cli("run", h.run_id, "--json", "--store", store).stdout)
    child_id = doc["steps"][-1]["output"]
    assert [w["kind"] for w in doc["waits"]] == ["signal", "child"]
    assert doc["waits"][1]["children"] == [child_id] and doc["waits"][1]["until"] is None
    assert all(w["state"] == "completed" for w in doc["waits"])
    assert doc["children"] == [child_id]
    child = json.loads(cli("run", child_id, "--json", "--store", store).stdout)
    assert child["parent_run_id"] == h.run_id
    assert child["steps"] == child["waits"] == child["children"] == []


def test_run_shows_a_wait_that_timed_out(cli: Invoke, store: str, app: ms.App) -> None:
    h = app.submit("wf.impatient")
    with app.worker():
        # (not run_until_idle: the store looks idle until the timeout comes due)
        assert h.result(timeout=20) is None
    doc = json.loads(cli("run", h.run_id, "--json", "--store", store).stdout)
    (wait,) = doc["waits"]
    assert wait["timed_out"] is True and wait["payload"] is None
    r = cli("run", h.run_id, "--store", store)
    line = next(x for x in r.stdout.splitlines() if "'never'" in x)
    assert line.split("│")[5].strip() == "yes"  # the "timed out" column


def test_run_of_a_plain_task_shows_no_workflow_tables(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "mail.send")
    r = cli("run", run_id, "--store", store)
    assert r.exit_code == 0, r.stderr
    assert "steps" not in r.stdout and "waits" not in r.stdout
    assert "parent run" not in r.stdout and "children" not in r.stdout


# -- why ------------------------------------------------------------------------------------------
def test_why_names_the_signal_a_workflow_waits_for(cli: Invoke, store: str, app: ms.App) -> None:
    h = suspended_flow(app)
    r = cli("why", h.run_id, "--store", store)
    assert r.exit_code == 0, r.stderr
    assert "waiting for signal 'go' (timeout at " in r.stdout
    assert "`mainspring signal order-1 go`" in r.stdout
    doc = json.loads(cli("why", h.run_id, "--json", "--store", store).stdout)
    (reason,) = doc["reasons"]
    assert reason["code"] == "suspended"
    assert reason["data"]["reason"] == "signal" and reason["data"]["waiting_for"] == "go"
    assert has_offset(reason["data"]["until"])
