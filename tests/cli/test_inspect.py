"""Commands that only read: tasks, why, workers, and what every read-only command does
on a store that does not exist (exit 2, nothing created)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mainspring as ms

from .conftest import Invoke, Spawn
from .test_commands import has_offset, one_error_line, submit

NO_SUCH_ID = "01900000-0000-7000-8000-000000000000"
TASK_FIELDS = {
    "task_id", "name", "policy", "state", "created_at", "next_at", "run_counts", "args",
    "kwargs", "idempotency_key", "queue",
}  # fmt: skip
WORKER_FIELDS = {
    "worker_id", "host", "pid", "queues", "tasks", "concurrency", "started_at",
    "last_seen_at", "running",
}  # fmt: skip
READ_ONLY = [
    ["runs"],
    ["run", NO_SUCH_ID],
    ["log"],
    ["log", "--follow"],
    ["stats"],
    ["verify"],
    ["why", NO_SUCH_ID],
    ["tasks"],
    ["workers"],
]


@pytest.fixture
def app(store: str) -> Iterator[ms.App]:
    app = ms.App(store=store)

    @app.task(name="report.build")
    def build(day: str) -> str:
        return day

    app.open()
    try:
        yield app
    finally:
        app.close()


# -- read-only commands never create a store -----------------------------------------------------
@pytest.mark.parametrize("argv", READ_ONLY, ids=lambda a: "-".join(a[:1] + a[1:2]).strip("-"))
@pytest.mark.parametrize("json_out", [False, True], ids=["table", "json"])
def test_read_only_command_on_a_missing_sqlite_file_exits_2_and_creates_nothing(
    cli: Invoke, tmp_path: Path, argv: list[str], json_out: bool
) -> None:
    before = sorted(tmp_path.iterdir())
    extra = ["--json"] if json_out else []
    r = cli("--store", "sqlite:///typo.db", *argv, *extra)
    assert r.exit_code == 2, (argv, r.stdout, r.stderr)
    assert str(tmp_path / "typo.db") in one_error_line(r.stderr)
    assert r.stdout == ""
    assert sorted(tmp_path.iterdir()) == before  # no file, no -wal, no notify directory


@pytest.mark.parametrize("argv", READ_ONLY, ids=lambda a: "-".join(a[:1] + a[1:2]).strip("-"))
def test_read_only_command_on_an_empty_file_exits_2_and_leaves_it_empty(
    cli: Invoke, tmp_path: Path, argv: list[str]
) -> None:
    (tmp_path / "empty.db").touch()
    r = cli("--store", "sqlite:///empty.db", *argv)
    assert r.exit_code == 2, (argv, r.stdout, r.stderr)
    assert "the file is empty" in one_error_line(r.stderr)
    assert [(p.name, p.stat().st_size) for p in tmp_path.iterdir()] == [("empty.db", 0)]


def test_read_only_commands_do_not_create_the_default_store(cli: Invoke, tmp_path: Path) -> None:
    for argv in (["runs"], ["stats"], ["verify"]):
        r = cli(*argv)
        assert r.exit_code == 2, argv
        assert "mainspring.db" in one_error_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


def test_real_process_verify_on_a_typo_store(spawn: Spawn, tmp_path: Path) -> None:
    r = spawn("--store", "sqlite:///typo.db", "verify")
    assert r.returncode == 2 and r.stdout == ""
    assert "typo.db" in one_error_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_directory_is_refused_by_writing_commands_too(
    cli: Invoke, tmp_path: Path
) -> None:
    r = cli("submit", "t.x", "--store", f"sqlite:///{tmp_path}/no/such/dir/s.db")
    assert r.exit_code == 2
    assert "does not exist" in one_error_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_store_is_a_store_error(cli: Invoke, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    for n in range(20):
        assert cli("submit", "t.x", "--args", f"[{n}]", "--store", url).exit_code == 0
    data = bytearray((tmp_path / "s.db").read_bytes())
    assert len(data) > 4096 * 4
    data[4096 * 2 :] = b"\xff" * (len(data) - 4096 * 2)  # pages after the schema are garbage
    (tmp_path / "s.db").write_bytes(bytes(data))
    r = cli("verify", "--store", url)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "malformed" in one_error_line(r.stderr)


# -- tasks ---------------------------------------------------------------------------------------
def test_tasks_lists_active_tasks_with_policy_and_next_occurrence(
    cli: Invoke, store: str, app: ms.App
) -> None:
    build = app.declared["report.build"]
    once = build.submit("mon")
    rep = build.repeat(count=3, every=3600.0, args=("tue",))
    cron = build.schedule(cron="*/5 * * * *", tz="UTC", kwargs={"day": "wed"})
    r = cli("tasks", "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    docs = json.loads(r.stdout)
    assert [d["task_id"] for d in docs] == [once.task_id, rep.task_id, cron.task_id]
    assert all(set(d) == TASK_FIELDS for d in docs)
    by_id = {d["task_id"]: d for d in docs}
    assert by_id[once.task_id]["policy"]["kind"] == "once"
    assert by_id[once.task_id]["next_at"] is None
    assert by_id[rep.task_id]["policy"] == {
        "kind": "repeat", "count": 3, "every": 3600.0, "start_at": None,
    }  # fmt: skip
    assert by_id[rep.task_id]["args"] == ["tue"]
    assert by_id[cron.task_id]["policy"]["cron"] == "*/5 * * * *"
    assert by_id[cron.task_id]["kwargs"] == {"day": "wed"}
    for d in (by_id[rep.task_id], by_id[cron.task_id]):
        assert has_offset(d["next_at"]) and has_offset(d["created_at"])
    assert all(d["state"] == "active" for d in docs)
    assert sum(by_id[rep.task_id]["run_counts"].values()) == 3
    human = cli("tasks", "--store", store)
    assert human.exit_code == 0
    for word in (once.task_id, rep.task_id, "repeat 3 x every 3600s", "cron */5 * * * *"):
        assert word in human.stdout, word


def test_tasks_all_shows_canceled_tasks(cli: Invoke, store: str, app: ms.App) -> None:
    t = app.declared["report.build"].repeat(count=2, every=60.0, args=("x",))
    assert cli("cancel", t.task_id, "--store", store).exit_code == 0
    r = cli("tasks", "--json", "--store", store)
    assert json.loads(r.stdout) == []
    r = cli("tasks", "--all", "--json", "--store", store)
    [doc] = json.loads(r.stdout)
    assert doc["task_id"] == t.task_id and doc["state"] == "canceled"
    assert "canceled" in cli("tasks", "--all", "--store", store).stdout
    assert "no active tasks" in cli("tasks", "--store", store).stdout


def test_tasks_limit(cli: Invoke, store: str) -> None:
    for _ in range(3):
        submit(cli, store, "t.many")
    r = cli("tasks", "--limit", "2", "--json", "--store", store)
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 2
    r = cli("tasks", "--limit", "0", "--store", store)
    assert r.exit_code == 2


# -- why -----------------------------------------------------------------------------------------
def test_why_says_no_worker_serves_it(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "t.lonely")
    r = cli("why", run_id, "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"run_id", "state", "reasons"}
    assert doc["run_id"] == run_id and doc["state"] == "ready"
    assert doc["reasons"] and all(set(x) == {"code", "text", "data"} for x in doc["reasons"])
    assert "no_worker" in [x["code"] for x in doc["reasons"]]
    human = cli("why", run_id, "--store", store)
    assert human.exit_code == 0
    assert f"run {run_id} is ready" in human.stdout
    for reason in doc["reasons"]:
        assert " ".join(reason["text"].split()[:4]) in " ".join(human.stdout.split())


def test_why_a_paused_engine(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "t.paused")
    assert cli("pause", "--store", store).exit_code == 0
    doc = json.loads(cli("why", run_id, "--json", "--store", store).stdout)
    assert "engine_paused" in [x["code"] for x in doc["reasons"]]


def test_why_a_delayed_run_has_its_due_time(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "t.later", "--delay", "3600")
    doc = json.loads(cli("why", run_id, "--json", "--store", store).stdout)
    assert doc["state"] == "scheduled"
    [not_due] = [x for x in doc["reasons"] if x["code"] == "not_due"]
    assert has_offset(not_due["data"]["due_at"])


def test_why_an_unknown_run_exits_2(cli: Invoke, store: str) -> None:
    submit(cli, store, "t.x")
    r = cli("why", NO_SUCH_ID, "--store", store)
    assert r.exit_code == 2 and r.stdout == ""
    assert "no run" in one_error_line(r.stderr)


# -- workers -------------------------------------------------------------------------------------
def test_workers_lists_live_workers(cli: Invoke, store: str, app: ms.App) -> None:
    r = cli("workers", "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == []
    assert "no live workers" in cli("workers", "--store", store).stdout
    with app.worker(concurrency=3, queues=["default"]):
        docs: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while not docs and time.monotonic() < deadline:  # it registers from its own thread
            r = cli("workers", "--json", "--store", store)
            assert r.exit_code == 0, r.stderr
            docs = json.loads(r.stdout)
            time.sleep(0.02)
        [doc] = docs
        assert set(doc) == WORKER_FIELDS
        assert doc["concurrency"] == 3 and doc["queues"] == ["default"]
        assert doc["tasks"] == ["report.build"] and doc["running"] == []
        assert has_offset(doc["started_at"]) and has_offset(doc["last_seen_at"])
        human = cli("workers", "--store", store)
        assert human.exit_code == 0 and doc["worker_id"] in human.stdout
    assert json.loads(cli("workers", "--json", "--store", store).stdout) == []  # left cleanly


# -- migrate -------------------------------------------------------------------------------------
def test_migrate_a_store_that_does_not_migrate_itself(cli: Invoke, store: str) -> None:
    url = f"{store}{'&' if '?' in store else '?'}auto_migrate=false"
    r = cli("submit", "t.x", "--store", url)
    assert r.exit_code == 2
    assert "mainspring migrate" in one_error_line(r.stderr)
    r = cli("runs", "--store", store)  # nothing was created
    assert r.exit_code == 2 and "no mainspring store" in one_error_line(r.stderr)
    r = cli("migrate", "--json", "--store", url)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["schema_version"] >= 1
    assert cli("submit", "t.x", "--store", url).exit_code == 0


def test_pause_a_queue_and_list_the_queues(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "t.queued", "--queue", "mail")
    r = cli("pause", "--queue", "mail", "--json", "--store", store)
    assert json.loads(r.stdout) == {"paused": True, "changed": True, "queue": "mail"}
    assert "already paused" in cli("pause", "--queue", "mail", "--store", store).stdout
    doc = json.loads(cli("why", run_id, "--json", "--store", store).stdout)
    assert "queue_paused" in [x["code"] for x in doc["reasons"]]
    queues = json.loads(cli("queues", "--json", "--store", store).stdout)
    mail = [q for q in queues if q["name"] == "mail"]
    assert mail[0]["paused"] is True and mail[0]["counts"] == {"ready": 1}
    table = cli("queues", "--store", store).stdout
    assert "mail" in table and "paused" in table
    r = cli("resume", "--queue", "mail", "--store", store)
    assert r.exit_code == 0 and "queue 'mail' resumed" in r.stdout
    queues = json.loads(cli("queues", "--json", "--store", store).stdout)
    assert [q["paused"] for q in queues if q["name"] == "mail"] == [False]


def test_bulk_cancel_and_rerun_dry_run_then_yes(cli: Invoke, store: str) -> None:
    ids = [submit(cli, store, "t.bulk", "--queue", "q1") for _ in range(3)]
    submit(cli, store, "t.other")
    r = cli("cancel", "--state", "ready", "--queue", "q1", "--store", store)
    assert r.exit_code == 0 and "would cancel 3 run(s)" in r.stdout
    assert (
        json.loads(cli("runs", "--json", "--state", "ready", "--store", store).stdout).__len__()
        == 4
    )
    r = cli("cancel", "--state", "ready", "--queue", "q1", "--yes", "--json", "--store", store)
    assert json.loads(r.stdout) == {"canceled": 3}
    states = {
        x["run_id"]: x["state"] for x in json.loads(cli("runs", "--json", "--store", store).stdout)
    }
    assert [states[i] for i in ids] == ["canceled"] * 3
    r = cli("rerun", "--state", "canceled", "--json", "--store", store)
    assert json.loads(r.stdout)["would_rerun"] == 3
    r = cli("rerun", "--state", "canceled", "--yes", "--json", "--store", store)
    assert json.loads(r.stdout)["rerun"] == 3
    assert cli("cancel", "--store", store).exit_code == 2  # nothing selects runs
    assert cli("cancel", ids[0], "--state", "ready", "--store", store).exit_code == 2
    # ended runs: the dry run refuses as --yes does (it listed what --yes then refused)
    assert cli("cancel", "--state", "canceled", "--store", store).exit_code == 2


def test_prune_dry_run_then_prune(cli: Invoke, store: str) -> None:
    run_id = submit(cli, store, "t.prunable")
    assert cli("cancel", run_id, "--store", store).exit_code == 0
    r = cli("prune", "--older-than", "0s", "--dry-run", "--json", "--store", store)
    assert json.loads(r.stdout) == {"would_prune": 1}
    assert cli("run", run_id, "--store", store).exit_code == 0  # still there
    r = cli("prune", "--older-than", "0", "--store", store)
    assert r.exit_code == 0 and "pruned 1 run(s)" in r.stdout
    assert cli("run", run_id, "--store", store).exit_code == 2  # gone
    assert cli("prune", "--older-than", "soon", "--store", store).exit_code == 2
    assert cli("prune", "--older-than", "-5", "--store", store).exit_code == 2
    assert cli("verify", "--store", store).exit_code == 0
