"""The commands of the command line: output shapes, exit codes, one-line errors."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
import typer

import mainspring as ms
from mainspring.cli import main as cli_main

from .conftest import Invoke, Spawn

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RUN_FIELDS = {
    "run_id", "task_id", "task_name", "state", "scheduled_at", "priority", "queue",
    "concurrency_key", "idempotency_key", "execution_id", "correlation_id", "output",
    "error", "attempts", "rerun_of", "parent_run_id", "caused_by", "failure_class",
    "retry_class",
}  # fmt: skip
EVENT_FIELDS = {
    "seq", "event_id", "type", "at", "task_id", "run_id", "attempt_id", "correlation_id",
    "execution_id", "data",
}  # fmt: skip
STATES = {
    "scheduled", "ready", "leased", "running", "retry_wait", "suspended", "completed",
    "failed", "canceled",
}  # fmt: skip


def has_offset(text: str) -> bool:
    return (
        datetime.fromisoformat(text).utcoffset() is not None
        and re.search(r"[+-]\d\d:\d\d$", text) is not None
    )


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def submit(cli: Invoke, store: str, *args: str) -> str:
    r = cli("submit", *args, "--store", store)
    assert r.exit_code == 0, r.stderr
    run_id = r.stdout.strip()
    assert UUID.match(run_id), r.stdout
    return run_id


# -- submit / runs / run -----------------------------------------------------------------------
def test_submit_prints_run_id_and_runs_json_lists_it(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "mail.send", "--args", '["a@b.c"]', "--kwargs", '{"body": "hi"}')
    r = cli("runs", "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    runs = json.loads(r.stdout)
    assert isinstance(runs, list) and len(runs) == 1
    run = runs[0]
    assert set(run) == RUN_FIELDS
    assert run["run_id"] == run_id
    assert run["task_name"] == "mail.send"
    assert run["state"] == "ready"
    assert run["attempts"] == []
    assert has_offset(run["scheduled_at"])


def test_submit_json_prints_the_run(cli: Invoke, store: str) -> None:
    r = cli(
        "submit", "report.build", "--args", "[1, 2]", "--execution-id", "ex-1",
        "--idempotency-key", "k-1", "--delay", "60", "--json", "--store", store,
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    run = json.loads(r.stdout)
    assert set(run) == RUN_FIELDS
    assert UUID.match(run["run_id"])
    assert run["state"] == "scheduled"  # delayed a minute
    assert run["execution_id"] == "ex-1"
    assert run["idempotency_key"] == "k-1"
    assert has_offset(run["scheduled_at"])


def test_runs_filters_and_table(cli: Invoke, store: str) -> None:
    a = submit(cli, store, "t.a")
    submit(cli, store, "t.b")
    submit(cli, store, "t.b")
    r = cli("runs", "--task", "t.a", "--json", "--store", store)
    assert [x["run_id"] for x in json.loads(r.stdout)] == [a]
    r = cli("runs", "--state", "ready", "--limit", "2", "--json", "--store", store)
    assert len(json.loads(r.stdout)) == 2
    r = cli("runs", "--state", "completed", "--json", "--store", store)
    assert json.loads(r.stdout) == []
    r = cli("runs", "--store", store)
    assert r.exit_code == 0
    assert a in r.stdout and "t.b" in r.stdout
    r = cli("runs", "--state", "nonsense", "--store", store)
    assert r.exit_code == 2
    every = [x["run_id"] for x in json.loads(cli("runs", "--json", "--store", store).stdout)]
    r = cli("runs", "--latest", "--limit", "2", "--json", "--store", store)
    assert [x["run_id"] for x in json.loads(r.stdout)] == every[::-1][:2]


def test_run_json_has_history(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "t.one", "--execution-id", "ex-9")
    r = cli("run", run_id, "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == RUN_FIELDS | {"history", "steps", "waits", "children", "message", "receipt"}
    assert doc["steps"] == doc["waits"] == doc["children"] == []  # not a workflow
    assert doc["message"] is None and doc["receipt"] is None  # not a delivery
    history = doc["history"]
    assert history[0]["type"] == "run.created"
    assert all(set(e) == EVENT_FIELDS for e in history)
    assert all(e["run_id"] == run_id and e["execution_id"] == "ex-9" for e in history)
    assert [e["seq"] for e in history] == sorted(e["seq"] for e in history)
    assert history[-1]["type"] == "run.state_changed"
    assert history[-1]["data"]["to"] == "ready"
    human = cli("run", run_id, "--store", store)
    assert human.exit_code == 0
    assert run_id in human.stdout and "run.created" in human.stdout


def test_stats_json(cli: Invoke, store: str) -> None:
    submit(cli, store, "t.s")
    submit(cli, store, "t.s")
    r = cli("stats", "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    counts = json.loads(r.stdout)
    assert set(counts) == STATES
    assert counts["ready"] == 2 and sum(counts.values()) == 2
    assert cli("stats", "--store", store).exit_code == 0


def test_log_json_lines(cli: Invoke, store: str) -> None:
    first = submit(cli, store, "t.log")
    second = submit(cli, store, "t.log")
    r = cli("log", "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events and all(set(e) == EVENT_FIELDS for e in events)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(has_offset(e["at"]) for e in events)
    created = [e["data"]["scheduled_at"] for e in events if e["type"] == "run.created"]
    assert len(created) == 2 and all(has_offset(t) for t in created)  # times in data too
    assert {e["run_id"] for e in events} >= {first, second}
    mid = seqs[len(seqs) // 2]
    r = cli("log", "--json", "--since", str(mid), "--store", store)
    assert [json.loads(x)["seq"] for x in r.stdout.splitlines()] == [s for s in seqs if s > mid]
    r = cli("log", "--json", "--run", second, "--store", store)
    assert {json.loads(x)["run_id"] for x in r.stdout.splitlines()} == {second}
    r = cli("log", "--json", "--limit", "2", "--store", store)
    assert len(r.stdout.splitlines()) == 2
    human = cli("log", "--store", store)
    assert human.exit_code == 0 and "run.created" in human.stdout


def test_cancel_twice(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "t.cancel")
    r = cli("cancel", run_id, "--store", store)
    assert r.exit_code == 0, r.stderr
    assert run_id in r.stdout
    r = cli("cancel", run_id, "--store", store)
    assert r.exit_code == 1
    assert "canceled" in one_error_line(r.stderr)
    r = cli("run", run_id, "--json", "--store", store)
    assert json.loads(r.stdout)["state"] == "canceled"


def test_verify_ok(cli: Invoke, store: str) -> None:
    submit(cli, store, "t.v")
    r = cli("verify", "--store", store)
    assert r.exit_code == 0, r.stdout + r.stderr
    r = cli("verify", "--json", "--store", store)
    assert r.exit_code == 0
    assert json.loads(r.stdout) == {"ok": True, "problems": []}


def test_pause_resume_and_migrate(cli: Invoke, store: str) -> None:
    r = cli("pause", "--json", "--store", store)
    assert r.exit_code == 0 and json.loads(r.stdout) == {"paused": True, "changed": True}
    r = cli("pause", "--store", store)
    assert r.exit_code == 0 and "already" in r.stdout
    r = cli("resume", "--json", "--store", store)
    assert r.exit_code == 0 and json.loads(r.stdout) == {"paused": False, "changed": True}
    r = cli("migrate", "--json", "--store", store)
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["store"] == store and isinstance(doc["schema_version"], int)
    assert doc["schema_version"] >= 1


# -- errors and exit codes -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["run", "01900000-0000-7000-8000-000000000000"],
        ["cancel", "01900000-0000-7000-8000-000000000000"],
        ["log", "--run", "no-such-run"],
        ["run", "not-even-a-uuid", "--json"],
    ],
)
def test_unknown_run_id_exits_2(cli: Invoke, store: str, argv: list[str]) -> None:
    assert cli("migrate", "--store", store).exit_code == 0  # the store exists; the run does not
    r = cli(*argv, "--store", store)
    assert r.exit_code == 2
    assert "no run" in one_error_line(r.stderr)
    assert r.stdout == ""


@pytest.mark.parametrize(
    "content",
    [None, b"this is not a database at all\n"],
    ids=["foreign-sqlite", "garbage-file"],
)
def test_foreign_store_refused_untouched(
    cli: Invoke, tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "other.db"
    if content is None:
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO customers (name) VALUES ('ada')")
        con.commit()
        con.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    siblings = sorted(p.name for p in tmp_path.iterdir())
    for argv in (["runs"], ["stats", "--json"], ["submit", "t.x"], ["verify"], ["migrate"]):
        r = cli(*argv, "--store", f"sqlite:///{path}")
        assert r.exit_code == 2, (argv, r.stdout, r.stderr)
        assert "not a mainspring store" in one_error_line(r.stderr)
        assert r.stdout == ""
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings  # no -wal / -shm left behind


def test_unsupported_store_url_exits_2(cli: Invoke) -> None:
    r = cli("runs", "--store", "mysql://nope")
    assert r.exit_code == 2
    one_error_line(r.stderr)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--args", "[1, 2"),
        ("--args", "{nope}"),
        ("--args", '{"a": 1}'),
        ("--kwargs", "[1]"),
        ("--kwargs", "not json"),
    ],
)
def test_bad_json_arguments_exit_2(cli: Invoke, store: str, option: str, value: str) -> None:
    assert cli("migrate", "--store", store).exit_code == 0
    r = cli("submit", "t.bad", option, value, "--store", store)
    assert r.exit_code == 2
    assert option in one_error_line(r.stderr)
    counts = json.loads(cli("stats", "--json", "--store", store).stdout)
    assert sum(counts.values()) == 0  # nothing was written


def test_negative_delay_exits_2(cli: Invoke, store: str) -> None:
    r = cli("submit", "t.bad", "--delay", "-1", "--store", store)
    assert r.exit_code == 2
    one_error_line(r.stderr)


@pytest.mark.parametrize("name", ["", "   "])
def test_blank_task_name_exits_2_and_writes_nothing(cli: Invoke, store: str, name: str) -> None:
    r = cli("submit", name, "--store", store)
    assert r.exit_code == 2
    assert "task name" in one_error_line(r.stderr)
    assert cli("log", "--json", "--store", store).stdout.strip() == ""


def _declare_keyed_tasks(store: str) -> None:
    """An App with handler code records its keyed tasks in the store, then goes away."""
    app = ms.App(store=store)

    @app.task(name="k.template", concurrency_key="acct-{acct}")
    def template(acct: str, amount: int = 0) -> None: ...

    @app.task(name="k.callable", concurrency_key=lambda acct: f"acct-{acct}")
    def computed(acct: str) -> None: ...

    app.open()  # declaring does no I/O: opening the store records the definitions
    app.close()


def test_submit_by_name_says_when_no_app_declared_the_task(cli: Invoke, store: str) -> None:
    r = cli("submit", "k.typo", "--store", store)
    assert r.exit_code == 0 and UUID.match(r.stdout.strip())  # it waits; it is not refused
    assert "no App has declared 'k.typo'" in one_error_line(r.stderr)
    _declare_keyed_tasks(store)
    r = cli("submit", "k.template", "--args", '["a"]', "--store", store)
    assert r.exit_code == 0 and r.stderr == ""


@pytest.mark.parametrize("given", [("--args", '["a"]'), ("--kwargs", '{"acct": "a"}')])
def test_submit_by_name_fills_the_recorded_key_template(
    cli: Invoke, store: str, given: tuple[str, str]
) -> None:
    _declare_keyed_tasks(store)
    r = cli("submit", "k.template", *given, "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["concurrency_key"] == "acct-a"


def test_submit_by_name_of_a_task_whose_key_is_computed_needs_the_key(
    cli: Invoke, store: str
) -> None:
    _declare_keyed_tasks(store)
    before = cli("log", "--json", "--store", store).stdout
    r = cli("submit", "k.callable", "--args", '["a"]', "--store", store)
    assert r.exit_code == 2
    assert "--concurrency-key" in one_error_line(r.stderr)
    assert cli("log", "--json", "--store", store).stdout == before  # nothing written
    r = cli(
        "submit", "k.callable", "--args", '["a"]', "--concurrency-key", "acct-a",
        "--json", "--store", store,
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["concurrency_key"] == "acct-a"


def test_idempotency(cli: Invoke, store: str) -> None:
    first = submit(cli, store, "t.idem", "--args", "[1]", "--idempotency-key", "order-7")
    again = submit(cli, store, "t.idem", "--args", "[1]", "--idempotency-key", "order-7")
    assert again == first
    r = cli("submit", "t.idem", "--args", "[2]", "--idempotency-key", "order-7", "--store", store)
    assert r.exit_code == 1
    assert "order-7" in one_error_line(r.stderr)
    assert len(json.loads(cli("runs", "--json", "--store", store).stdout)) == 1


# -- where --store and --json go -----------------------------------------------------------------
def test_store_and_json_before_or_after_the_subcommand(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "t.where")
    for argv in (
        ["--store", store, "--json", "runs"],
        ["--json", "runs", "--store", store],
        ["runs", "--json", f"--store={store}"],
        ["--store", store, "runs", "--json"],
    ):
        r = cli(*argv)
        assert r.exit_code == 0, (argv, r.stderr)
        assert [x["run_id"] for x in json.loads(r.stdout)] == [run_id], argv


def test_split_globals_moves_them_to_the_front() -> None:
    split = cli_main.split_globals
    assert split(["runs", "--limit", "3", "--store", "sqlite:///a.db", "--json"]) == [
        "--store", "sqlite:///a.db", "--json", "runs", "--limit", "3",
    ]  # fmt: skip
    assert split(["run", "X", "--store=sqlite:///a.db"]) == ["--store=sqlite:///a.db", "run", "X"]
    assert split(["--json", "stats", "--json"]) == ["--json", "stats"]
    assert split(["log", "--", "--json"]) == ["log", "--", "--json"]
    assert split(["runs", "--store"]) == ["runs", "--store"]  # left for the parser to report


def test_real_process_store_after_subcommand(spawn: Spawn, store: str, tmp_path: Path) -> None:
    r = spawn("submit", "t.proc", "--args", '["x"]', "--json", "--store", store)
    assert r.returncode == 0, r.stderr
    run_id = json.loads(r.stdout)["run_id"]
    r = spawn("run", run_id, f"--store={store}", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["history"][0]["type"] == "run.created"
    r = spawn("run", "nope", "--store", store)
    assert r.returncode == 2 and r.stdout == ""
    one_error_line(r.stderr)
    r = spawn("runs", "--limit", "zero", "--store", store)  # a usage error: one line, exit 2
    assert r.returncode == 2
    one_error_line(r.stderr)
    assert not (tmp_path / "mainspring.db").exists()  # --store was honoured everywhere


def test_default_store_and_env(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit_default = cli("submit", "t.default")
    assert submit_default.exit_code == 0
    assert (tmp_path / "mainspring.db").exists()  # the default: sqlite:///mainspring.db here
    monkeypatch.setenv("MAINSPRING_STORE", f"sqlite:///{tmp_path}/env.db")
    assert cli("submit", "t.env").exit_code == 0
    assert (tmp_path / "env.db").exists()
    r = cli("runs", "--json")
    assert [x["task_name"] for x in json.loads(r.stdout)] == ["t.env"]


# -- help ---------------------------------------------------------------------------------------
def test_every_command_and_option_has_help(cli: Invoke) -> None:
    group = typer.main.get_command(cli_main.app)
    commands = group.commands  # type: ignore[attr-defined]
    assert set(commands) >= {
        "demo", "worker", "submit", "runs", "run", "cancel", "resume", "rerun", "tasks",
        "why", "workers", "log", "stats", "pause", "verify", "migrate", "signal", "publish",
        "messages", "receipts",
    }  # fmt: skip
    for name, command in commands.items():
        assert command.help, name
        for param in command.params:
            assert getattr(param, "help", None), (name, param.name)
        r = cli(name, "--help")
        assert r.exit_code == 0, name
        assert "--store" in r.stdout and "--json" in r.stdout, name
        assert "<bool>" not in r.stdout, name  # flags read as flags, not as taking a value
    r = cli("--help")
    assert r.exit_code == 0 and "<bool>" not in r.stdout
