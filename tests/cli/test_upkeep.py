"""`mainspring export` and `mainspring compact` (with `log` after a compaction), on both
stores: export writes the log as JSON lines, compact leaves a store that verifies, and
asking for what compaction removed is one error line naming where the log starts."""

from __future__ import annotations

import json

from .conftest import Invoke
from .test_commands import one_error_line, submit


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_export_writes_the_log_as_json_lines_then_compact_removes_it(
    cli: Invoke, store: str
) -> None:
    ids = [submit(cli, store, "t.exported", "--args", f"[{i}]") for i in range(3)]
    r = cli("export", "--store", store)
    assert r.exit_code == 0, r.stderr
    events = _lines(r.stdout)
    assert events == _lines(cli("log", "--json", "--store", store).stdout)  # log --json's objects
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["run_id"] for e in events if e["type"] == "run.created"} == set(ids)
    last = int(str(events[-1]["seq"]))
    r = cli("export", "--since", "1", "--until", str(last - 1), "--store", store)
    assert [e["seq"] for e in _lines(r.stdout)] == list(range(2, last))

    r = cli("compact", "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == {"snapshot_seq": last, "first_seq": last + 1}
    assert cli("verify", "--store", store).exit_code == 0
    r = cli("log", "--json", "--store", store)  # without --since: from the first event kept
    assert r.exit_code == 0, r.stderr
    assert [e["type"] for e in _lines(r.stdout)] == ["log.compacted"]
    r = cli("log", "--since", "0", "--store", store)
    assert r.exit_code == 1 and r.stdout == ""
    assert "removed from the log by compaction" in one_error_line(r.stderr)
    assert f"starts at seq {last + 1}" in r.stderr
    r = cli("log", "--since", str(last), "--json", "--store", store)
    assert [e["type"] for e in _lines(r.stdout)] == ["log.compacted"]
    r = cli("log", "--run", ids[0], "--store", store)  # its events are all gone
    assert r.exit_code == 0 and r.stdout == "", r.stderr
    r = cli("export", "--store", store)  # without --since: from the first event kept
    assert [e["seq"] for e in _lines(r.stdout)] == [last + 1]
    r = cli("export", "--since", "0", "--store", store)
    assert r.exit_code == 1 and "compaction" in one_error_line(r.stderr)
    r = cli("export", "--until", str(last - 1), "--store", store)  # all of it removed
    assert r.exit_code == 1 and r.stdout == "" and "compaction" in one_error_line(r.stderr)
    r = cli("compact", "--store", store)
    assert r.exit_code == 0 and f"snapshot at seq {last + 1}" in r.stdout
    assert cli("runs", "--store", store).exit_code == 0
    assert cli("run", ids[0], "--store", store).exit_code == 0  # (its history is gone)
    assert cli("verify", "--store", store).exit_code == 0


def test_export_of_an_empty_range_exits_2(cli: Invoke, store: str) -> None:
    """(It printed nothing and exited 0: an archive that looked complete.)"""
    assert cli("pause", "--store", store).exit_code == 0
    r = cli("export", "--since", "20", "--until", "10", "--store", store)
    assert r.exit_code == 2 and r.stdout == ""
    assert "not after --since" in one_error_line(r.stderr)


def test_export_and_compact_never_create_a_store(cli: Invoke, tmp_path: object) -> None:
    for command in ("export", "compact"):
        r = cli(command, "--store", "sqlite:///nothing-here.db")
        assert r.exit_code == 2 and "no mainspring store" in one_error_line(r.stderr)
