"""Commands that change the store: cancel (runs and tasks), resume, rerun, and submit
checked against a declared handler's parameters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import mainspring as ms
from mainspring.cli import _errors

from .conftest import Invoke
from .test_commands import RUN_FIELDS, UUID, one_error_line, submit

NO_SUCH_ID = "01900000-0000-7000-8000-000000000000"


@pytest.fixture
def app(store: str) -> Iterator[ms.App]:
    """An App with handler code on the test's store (opened: its definitions recorded)."""
    app = ms.App(store=store)

    @app.task(name="mail.send")
    def send(to: str, body: str = "") -> dict[str, str]:
        return {"to": to}

    @app.task(name="wait.approval")
    def approval(order: int) -> None:
        raise ms.Suspend("waiting for approval")

    app.open()
    try:
        yield app
    finally:
        app.close()


def log_of(cli: Invoke, store: str) -> str:
    r = cli("log", "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    return r.stdout


# -- submit: arguments checked against the recorded parameters ---------------------------------
@pytest.mark.parametrize(
    "given",
    [
        (),  # `to` is required
        ("--kwargs", '{"to": "a@b.c", "cc": "x"}'),  # no parameter `cc`
        ("--args", '["a@b.c", "hi", "extra"]'),  # one positional too many
    ],
    ids=["missing", "unexpected-kwarg", "too-many-args"],
)
def test_submit_arguments_that_do_not_fit_exit_2_and_write_nothing(
    cli: Invoke, store: str, app: ms.App, given: tuple[str, ...]
) -> None:
    before = log_of(cli, store)
    r = cli("submit", "mail.send", *given, "--store", store)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "mail.send" in one_error_line(r.stderr)
    assert r.stdout == ""
    assert log_of(cli, store) == before  # nothing written


@pytest.mark.parametrize(
    "given",
    [("--delay", "-1"), ("--idempotency-key", ""), ("--priority", str(2**31)), ("--queue", " ")],
    ids=["delay", "idempotency-key", "priority", "queue"],
)
def test_a_refused_submit_creates_no_store(
    cli: Invoke, tmp_path: Path, given: tuple[str, ...]
) -> None:
    """(The store was created, then the submit refused.)"""
    path = tmp_path / "new.db"
    r = cli("submit", "mail.send", "--args", '["a@b.c"]', *given, "--store", f"sqlite:///{path}")
    assert r.exit_code == 2, r.stdout + r.stderr
    one_error_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


def test_submit_arguments_that_fit_a_declared_task_give_no_warning(
    cli: Invoke, store: str, app: ms.App
) -> None:
    r = cli("submit", "mail.send", "--args", '["a@b.c"]', "--store", store)
    assert r.exit_code == 0, r.stderr
    assert UUID.match(r.stdout.strip()) and r.stderr == ""


def test_exit_codes_of_errors() -> None:
    code = _errors.exit_code_for
    assert code(ms.InvalidArgument("x")) == 2
    assert code(ms.InvalidSchedule("x")) == 2
    assert code(ms.UnknownRun("x")) == 2
    assert code(ms.UnknownTask("x")) == 2
    assert code(ms.StoreError("x")) == 2
    assert code(ms.SerializationError("x")) == 2
    assert code(ms.IdempotencyConflict("x")) == 1
    assert code(ms.InvalidTransition("x")) == 1


# -- cancel --------------------------------------------------------------------------------------
def test_cancel_a_run_json_is_the_run(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "t.cancel")
    r = cli("cancel", run_id, "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == RUN_FIELDS
    assert doc["run_id"] == run_id and doc["state"] == "canceled"
    r = cli("cancel", run_id, "--json", "--store", store)  # already ended: could not be done
    assert r.exit_code == 1 and r.stdout == ""
    assert "already canceled" in one_error_line(r.stderr)


def test_cancel_a_completed_run_exits_1(cli: Invoke, store: str, app: ms.App) -> None:
    h = app.declared["mail.send"].submit("a@b.c")
    with app.worker(concurrency=1) as w:
        w.run_until_idle(timeout=30)
    r = cli("cancel", h.run_id, "--store", store)
    assert r.exit_code == 1
    assert "already completed" in one_error_line(r.stderr)
    assert app.get_run(h.run_id).state == "completed"


def test_cancel_a_task_cancels_it_and_its_runs(cli: Invoke, store: str, app: ms.App) -> None:
    t = app.declared["mail.send"].repeat(count=3, every=3600.0, args=("a@b.c",))
    r = cli("cancel", t.task_id, "--store", store)
    assert r.exit_code == 0, r.stderr
    assert t.task_id in r.stdout
    assert {x.state for x in t.runs()} == {"canceled"}
    r = cli("cancel", t.task_id, "--store", store)  # already canceled
    assert r.exit_code == 1
    assert "already canceled" in one_error_line(r.stderr)
    assert app.get_task(t.task_id).state == "canceled"


def test_cancel_a_task_json_is_the_task(cli: Invoke, store: str, app: ms.App) -> None:
    t = app.declared["mail.send"].repeat(count=2, every=60.0, args=("a@b.c",))
    r = cli("cancel", t.task_id, "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["task_id"] == t.task_id and doc["state"] == "canceled"
    assert doc["run_counts"] == {"canceled": 2}


@pytest.mark.parametrize("ident", [NO_SUCH_ID, "not-an-id"])
def test_cancel_an_unknown_id_exits_2(cli: Invoke, store: str, ident: str) -> None:
    submit(cli, store, "t.x")
    r = cli("cancel", ident, "--store", store)
    assert r.exit_code == 2 and r.stdout == ""
    line = one_error_line(r.stderr)
    assert "no run or task" in line and ident in line


# -- resume --------------------------------------------------------------------------------------
def test_resume_a_suspended_run(cli: Invoke, store: str, app: ms.App) -> None:
    h = app.declared["wait.approval"].submit(7)
    with app.worker(concurrency=1) as w:
        w.run_until_idle(timeout=30)
    assert h.status() == "suspended"
    r = cli("resume", h.run_id, "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == RUN_FIELDS
    assert doc["run_id"] == h.run_id and doc["state"] == "ready"
    r = cli("resume", h.run_id, "--store", store)  # ready now: not suspended
    assert r.exit_code == 1 and r.stdout == ""
    assert "not suspended" in one_error_line(r.stderr)


def test_resume_a_run_that_is_not_suspended_exits_1(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "t.ready")
    r = cli("resume", run_id, "--store", store)
    assert r.exit_code == 1
    assert "ready, not suspended" in one_error_line(r.stderr)
    r = cli("run", run_id, "--json", "--store", store)
    assert json.loads(r.stdout)["state"] == "ready"  # untouched


def test_resume_of_a_run_with_a_queue_exits_2(cli: Invoke, store: str, app: ms.App) -> None:
    """(``--queue`` was left unread: a user who meant the queue got "not suspended".)"""
    h = app.declared["wait.approval"].submit(7)
    with app.worker(concurrency=1) as w:
        w.run_until_idle(timeout=30)
    r = cli("resume", h.run_id, "--queue", "default", "--store", store)
    assert r.exit_code == 2 and r.stdout == ""
    assert "not both" in one_error_line(r.stderr)
    assert h.status() == "suspended"


def test_resume_an_unknown_run_exits_2(cli: Invoke, store: str) -> None:
    submit(cli, store, "t.x")
    r = cli("resume", NO_SUCH_ID, "--store", store)
    assert r.exit_code == 2 and r.stdout == ""
    assert "no run" in one_error_line(r.stderr)


def test_resume_without_an_id_resumes_the_engine(cli: Invoke, store: str) -> None:
    assert cli("pause", "--store", store).exit_code == 0
    r = cli("resume", "--store", store)
    assert r.exit_code == 0 and "engine resumed" in r.stdout
    r = cli("resume", "--json", "--store", store)
    assert r.exit_code == 0 and json.loads(r.stdout) == {"paused": False, "changed": False}


# -- rerun ---------------------------------------------------------------------------------------
def test_rerun_prints_the_new_run_id(cli: Invoke, store: str) -> None:
    old = submit(cli, store, "t.again", "--args", "[1, 2]")
    assert cli("cancel", old, "--store", store).exit_code == 0
    r = cli("rerun", old, "--store", store)
    assert r.exit_code == 0, r.stderr
    new = r.stdout.strip()
    assert UUID.match(new) and new != old
    doc = json.loads(cli("run", new, "--json", "--store", store).stdout)
    assert doc["rerun_of"] == old and doc["state"] == "ready"
    assert json.loads(cli("run", old, "--json", "--store", store).stdout)["state"] == "canceled"


def test_rerun_json_is_the_new_run(cli: Invoke, store: str) -> None:
    old = submit(cli, store, "t.again", "--kwargs", '{"n": 3}')
    r = cli("rerun", old, "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == RUN_FIELDS
    assert doc["rerun_of"] == old and doc["run_id"] != old
    assert doc["task_name"] == "t.again"


def test_rerun_an_unknown_run_exits_2(cli: Invoke, store: str) -> None:
    submit(cli, store, "t.x")
    r = cli("rerun", NO_SUCH_ID, "--store", store)
    assert r.exit_code == 2 and r.stdout == ""
    assert "no run" in one_error_line(r.stderr)


@pytest.mark.parametrize("command", ["cancel", "resume", "rerun"])
def test_commands_naming_an_id_do_not_create_a_store(
    cli: Invoke, tmp_path: Path, command: str
) -> None:
    r = cli(command, NO_SUCH_ID, "--store", "sqlite:///typo.db")
    assert r.exit_code == 2 and r.stdout == ""
    assert str(tmp_path / "typo.db") in one_error_line(r.stderr)
    assert list(tmp_path.iterdir()) == []
