"""The command line for durable messages: `publish`, `messages`, `receipts`, and what
`run` shows of a delivery run (its message and receipt) and of failures (their failure
and retry classes) and lineage (`caused_by`). Every test runs on both stores."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import mainspring as ms
from mainspring.cli import main as cli_main

from .conftest import Invoke
from .test_commands import UUID, has_offset, one_error_line

MESSAGE_FIELDS = {
    "event_id", "topic", "sequence", "correlation_id", "causation_id", "published_at",
    "payload",
}  # fmt: skip
RECEIPT_FIELDS = {
    "receipt_id", "subscriber", "event_id", "topic", "sequence", "status", "run_id",
    "attempt", "output", "failure_class", "retry_class", "recorded_at",
}  # fmt: skip
MINTED = re.compile(r"^evt:([0-9a-f-]{36}):(.+)$")


class Unavailable(Exception):
    failure_class = "adapter_unavailable"


@pytest.fixture
def app(store: str) -> Iterator[ms.App]:
    """An App with subscribers: billing (orders.*) fails a message whose payload says
    "bad" for good, and fails once with a connection error on one that says "flaky";
    audit (audit.#) just returns; parent submits a child and publishes."""
    app = ms.App(store=store)

    @app.subscriber("orders.*", name="billing", max_attempts=2, backoff=ms.Backoff.fixed(0))
    def billing(msg: ms.Message) -> dict[str, Any]:
        if msg.payload.get("bad"):
            raise ms.Fail("bad order", failure_class="invalid_request")
        if msg.payload.get("flaky") and ms.context().attempt == 1:
            raise ConnectionError("reset by peer")
        return {"billed": msg.payload.get("n")}

    @app.subscriber("audit.#", name="audit")
    def audit(msg: ms.Message) -> str:
        return f"audited {msg.topic}"

    @app.task(name="child")
    def child() -> str:
        return "child"

    @app.task(name="parent")
    def parent() -> str:
        child.submit()
        app.publish("audit.parent", {"from": "parent"})
        return "parent"

    app.open()
    try:
        yield app
    finally:
        app.close()


def publish(cli: Invoke, store: str, topic: str, *args: str) -> dict[str, Any]:
    r = cli("publish", topic, *args, "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def drain(app: ms.App) -> None:
    with app.worker() as w:
        w.run_until_idle()


def run_json(cli: Invoke, store: str, run_id: str) -> dict[str, Any]:
    r = cli("run", run_id, "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def blocks(text: str) -> dict[str, dict[str, str]]:
    """The ``label  value`` blocks of `mainspring run`'s output, by their first line's
    label ("run" for the details; "message" and "receipt" are titles of their own)."""
    out: dict[str, dict[str, str]] = {}
    for block in text.split("\n\n"):
        lines = [line.strip() for line in block.strip("\n").splitlines() if line.strip()]
        if not lines:
            continue
        titled = lines[0] in ("message", "receipt")
        rows: dict[str, str] = {}
        for line in lines[1:] if titled else lines:
            label, _, value = line.partition("  ")
            rows[label.strip()] = value.strip()
        out.setdefault(lines[0] if titled else lines[0].split()[0], rows)
    return out


def attempt_rows(text: str) -> list[str]:
    """The rows of `mainspring run`'s attempts table, each with its wrapped lines joined
    (cell by cell) and the attempt id left out."""
    table = text[text.index("\nattempts") : text.index("\nhistory")].splitlines()[4:]
    rows: list[list[str]] = []
    for line in table:
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split("│")][:-1]
        if cells[0]:
            rows.append(cells)
        else:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return [" | ".join(r) for r in rows]


# -- publish --------------------------------------------------------------------------------------
def test_publish_prints_the_topic_sequence_and_event_id(
    cli: Invoke, store: str, app: ms.App
) -> None:
    r = cli("publish", "orders.created", "--payload", '{"n": 1}', "--store", store)
    assert r.exit_code == 0, r.stderr
    line = r.stdout.strip()
    m = re.fullmatch(r"published orders\.created #1  event id (\S+)  correlation id (\S+)", line)
    assert m is not None, line
    event_id, correlation = m.groups()
    stored = app.messages("orders.created")
    assert [(s.event_id, s.correlation_id, s.payload) for s in stored] == [
        (event_id, correlation, {"n": 1})
    ]
    minted = MINTED.match(event_id)
    assert minted is not None and minted.group(2) == "orders.created"
    assert UUID.match(minted.group(1)) and UUID.match(correlation)  # a fresh correlation id

    doc = publish(cli, store, "orders.created", "--payload", "[1, 2]", "--correlation-id", "c-7")
    assert set(doc) == MESSAGE_FIELDS
    assert doc["topic"] == "orders.created" and doc["sequence"] == 2
    assert doc["payload"] == [1, 2] and doc["correlation_id"] == "c-7"
    assert doc["causation_id"] is None and has_offset(doc["published_at"])
    other = publish(cli, store, "orders.paid")  # each topic counts from 1; payload null
    assert other["sequence"] == 1 and other["payload"] is None
    assert [s.sequence for s in app.messages("orders.created")] == [1, 2]


def test_publish_creates_a_delivery_for_every_subscriber_of_the_topic(
    cli: Invoke, store: str, app: ms.App
) -> None:
    doc = publish(cli, store, "orders.created", "--payload", '{"n": 5}')
    publish(cli, store, "nobody.listens", "--payload", "1")
    deliveries = app.runs()
    assert [(r.task_name, r.idempotency_key) for r in deliveries] == [("billing", doc["event_id"])]
    assert deliveries[0].correlation_id == doc["correlation_id"]
    drain(app)
    (receipt,) = app.receipts(event_id=doc["event_id"])
    assert (receipt.subscriber, receipt.status, receipt.output) == (
        "billing",
        "delivered",
        {"billed": 5},
    )


def test_publish_with_an_event_id_replays_or_conflicts(
    cli: Invoke, store: str, app: ms.App
) -> None:
    first = publish(cli, store, "orders.created", "--event-id", "ext-1", "--payload", '{"n": 1}')
    assert first["event_id"] == "ext-1" and first["sequence"] == 1
    before = app.log()
    again = publish(cli, store, "orders.created", "--event-id", "ext-1", "--payload", '{"n": 1}')
    assert again == first  # the first message, nothing written
    assert app.log() == before
    r = cli(
        "publish", "orders.created", "--event-id", "ext-1", "--payload", '{"n": 2}',
        "--store", store,
    )  # fmt: skip
    assert r.exit_code == 1 and r.stdout == ""
    assert "ext-1" in one_error_line(r.stderr) and "another payload" in r.stderr
    assert app.log() == before


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["orders.created", "--payload", '{"n": '], "--payload is not valid JSON"),
        (["orders.created", "--payload", "{'n': 1}"], "--payload is not valid JSON"),
        (["orders.*"], "not a valid topic"),
        (["orders..created"], "not a valid topic"),
        (["orders.created", "--event-id", ""], "event_id must be a non-empty string"),
        (["orders.created", "--correlation-id", ""], "correlation_id must be"),
        (["orders.created", "--payload", json.dumps("x" * (1 << 20))], "max_payload_bytes"),
    ],
    ids=["truncated", "python-dict", "wildcard", "empty-segment", "event-id", "corr", "size"],
)
def test_publish_bad_input_exits_2_and_writes_nothing(
    cli: Invoke, store: str, app: ms.App, argv: list[str], says: str
) -> None:
    before = app.log()
    r = cli("publish", *argv, "--store", store)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert says in one_error_line(r.stderr)
    assert app.log() == before


def test_a_payload_of_exactly_the_limit_is_published(cli: Invoke, store: str, app: ms.App) -> None:
    payload = json.dumps("x" * ((1 << 20) - 2))  # 1 MiB of JSON with its quotes
    doc = publish(cli, store, "big.one", "--payload", payload)
    assert doc["sequence"] == 1 and len(doc["payload"]) == (1 << 20) - 2


def test_a_payload_is_read_from_a_file_or_standard_input(
    cli: Invoke, store: str, app: ms.App, tmp_path: Path
) -> None:
    """``--payload @FILE`` (``@-``: stdin), as a shell passes no argument near the limit:
    an oversized payload could not be given at all."""
    big, small = tmp_path / "big.json", tmp_path / "small.json"
    big.write_text(json.dumps("x" * (1 << 20)))
    small.write_text('{"order": 42}')
    assert publish(cli, store, "from.file", "--payload", f"@{small}")["payload"] == {"order": 42}
    r = CliRunner().invoke(
        cli_main.app,
        ["publish", "from.stdin", "--payload", "@-", "--json", "--store", store],
        input="[1, 2]",
    )
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["payload"] == [1, 2]
    before = app.log()
    for given, says in ((f"@{big}", "max_payload_bytes"), ("@nope.json", "cannot read it")):
        r = cli("publish", "t", "--payload", given, "--store", store)
        assert r.exit_code == 2, (r.stdout, r.stderr)
        assert says in one_error_line(r.stderr)
    assert app.log() == before


def test_publish_bad_input_creates_no_store(cli: Invoke, tmp_path: Path) -> None:
    for argv in (["orders.*"], ["t", "--payload", "nope"]):
        r = cli("publish", *argv, "--store", "sqlite:///fresh.db")
        assert r.exit_code == 2, argv
    assert list(tmp_path.iterdir()) == []
    r = cli("publish", "t", "--store", "sqlite:///fresh.db")  # good input creates it
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "fresh.db").exists()


# -- messages --------------------------------------------------------------------------------------
def test_messages_lists_a_topic_in_sequence_order(cli: Invoke, store: str, app: ms.App) -> None:
    sent = [
        publish(cli, store, "orders.created", "--payload", json.dumps({"n": i})) for i in range(5)
    ]
    publish(cli, store, "orders.paid", "--payload", "9")
    r = cli("messages", "orders.created", "--json", "--store", store)
    assert r.exit_code == 0, r.stderr
    docs = json.loads(r.stdout)
    assert docs == sent  # the same message documents publish printed
    assert all(set(d) == MESSAGE_FIELDS for d in docs)
    r = cli(
        "messages", "orders.created", "--since", "2", "--limit", "2", "--json", "--store", store
    )
    assert [d["sequence"] for d in json.loads(r.stdout)] == [3, 4]

    r = cli("messages", "orders.created", "--since", "3", "--store", store)
    assert r.exit_code == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if sent[3]["event_id"] in line]
    assert len(rows) == 1 and rows[0].split()[0] == "4" and '{"n":3}' in rows[0]
    assert sent[4]["event_id"] in r.stdout and sent[2]["event_id"] not in r.stdout

    r = cli("messages", "orders.created", "--since", "5", "--store", store)
    assert r.exit_code == 0 and r.stdout.strip() == "no messages in orders.created after #5"
    r = cli("messages", "never.used", "--json", "--store", store)
    assert r.exit_code == 0 and json.loads(r.stdout) == []


def test_messages_shows_the_run_that_published_one(cli: Invoke, store: str, app: ms.App) -> None:
    h = app.submit("parent")
    drain(app)
    r = cli("messages", "audit.parent", "--json", "--store", store)
    (doc,) = json.loads(r.stdout)
    assert doc["causation_id"] == h.run_id
    assert doc["event_id"].startswith(f"evt:{h.info().attempts[0].attempt_id}:0:")
    r = cli("messages", "audit.parent", "--store", store)
    assert h.run_id in r.stdout


@pytest.mark.parametrize("topic", ["orders.*", "audit.#", "a..b"])
def test_messages_of_a_bad_topic_exits_2(cli: Invoke, store: str, app: ms.App, topic: str) -> None:
    r = cli("messages", topic, "--store", store)
    assert r.exit_code == 2 and "not a valid topic" in one_error_line(r.stderr)


@pytest.mark.parametrize("argv", [["messages", "t"], ["receipts"]], ids=["messages", "receipts"])
def test_reading_messages_never_creates_a_store(
    cli: Invoke, tmp_path: Path, argv: list[str]
) -> None:
    for extra in ([], ["--json"]):
        r = cli("--store", "sqlite:///typo.db", *argv, *extra)
        assert r.exit_code == 2 and r.stdout == ""
        assert str(tmp_path / "typo.db") in one_error_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


# -- receipts --------------------------------------------------------------------------------------
def test_receipts_filter_by_subscriber_and_event_id(cli: Invoke, store: str, app: ms.App) -> None:
    ok = publish(cli, store, "orders.created", "--payload", '{"n": 1}')
    bad = publish(cli, store, "orders.created", "--payload", '{"bad": true}')
    flaky = publish(cli, store, "orders.paid", "--payload", '{"flaky": true, "n": 3}')
    audited = publish(cli, store, "audit.x")
    r = cli("receipts", "--json", "--store", store)
    assert r.exit_code == 0 and json.loads(r.stdout) == []  # nothing has been handled yet
    assert cli("receipts", "--store", store).stdout.strip() == "no receipts"
    drain(app)

    r = cli("receipts", "--json", "--store", store)
    docs = json.loads(r.stdout)
    assert all(set(d) == RECEIPT_FIELDS and has_offset(d["recorded_at"]) for d in docs)
    by_event = {d["event_id"]: d for d in docs}
    assert set(by_event) == {
        ok["event_id"],
        bad["event_id"],
        flaky["event_id"],
        audited["event_id"],
    }
    got = by_event[bad["event_id"]]
    assert (got["subscriber"], got["status"], got["attempt"], got["output"]) == (
        "billing", "failed", 1, None,
    )  # fmt: skip
    assert (got["failure_class"], got["retry_class"]) == ("invalid_request", "do_not_retry")
    assert got["topic"] == "orders.created"
    got = by_event[flaky["event_id"]]
    assert (got["status"], got["attempt"], got["output"]) == ("delivered", 2, {"billed": 3})
    assert got["failure_class"] is None  # delivered: the earlier failure is on the attempt
    billing = [d for d in docs if d["subscriber"] == "billing"]
    assert sorted(d["sequence"] for d in billing) == [1, 2, 3]  # the subscriber's own count

    r = cli("receipts", "--subscriber", "audit", "--json", "--store", store)
    assert [(d["event_id"], d["output"]) for d in json.loads(r.stdout)] == [
        (audited["event_id"], "audited audit.x")
    ]
    r = cli("receipts", "--event-id", ok["event_id"], "--json", "--store", store)
    assert [d["subscriber"] for d in json.loads(r.stdout)] == ["billing"]
    r = cli(
        "receipts", "--subscriber", "audit", "--event-id", ok["event_id"], "--json",
        "--store", store,
    )  # fmt: skip
    assert json.loads(r.stdout) == []  # audit does not subscribe to orders.*
    r = cli("receipts", "--subscriber", "billing", "--limit", "2", "--json", "--store", store)
    assert len(json.loads(r.stdout)) == 2

    r = cli("receipts", "--subscriber", "billing", "--store", store)
    assert r.exit_code == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if bad["event_id"] in x)
    assert (
        "failed" in line
        and "invalid_request /" in line
        and by_event[bad["event_id"]]["run_id"] in line
    )
    line = next(x for x in r.stdout.splitlines() if ok["event_id"] in x)
    assert "delivered" in line and '{"billed":1}' in line


# -- run of a delivery -----------------------------------------------------------------------------
def test_run_of_a_delivery_shows_its_message_and_receipt(
    cli: Invoke, store: str, app: ms.App
) -> None:
    sent = publish(
        cli, store, "orders.paid", "--payload", '{"flaky": true, "n": 7}', "--correlation-id", "c-9"
    )
    (delivery,) = app.runs()
    doc = run_json(cli, store, delivery.run_id)
    assert doc["message"] == sent  # the message as published
    assert doc["receipt"] is None  # not handled yet
    r = cli("run", delivery.run_id, "--store", store)
    assert r.exit_code == 0, r.stderr
    assert blocks(r.stdout)["receipt"]["status"].startswith("none yet")

    drain(app)
    doc = run_json(cli, store, delivery.run_id)
    assert doc["message"] == sent
    receipt = doc["receipt"]
    assert set(receipt) == RECEIPT_FIELDS
    assert (receipt["status"], receipt["run_id"], receipt["attempt"]) == (
        "delivered", delivery.run_id, 2,
    )  # fmt: skip
    assert receipt["output"] == {"billed": 7} == doc["output"]
    assert [(a["failure_class"], a["retry_class"]) for a in doc["attempts"]] == [
        ("transport_error", "safe_retry"),
        (None, None),
    ]
    assert doc["failure_class"] is None and doc["correlation_id"] == "c-9"

    r = cli("run", delivery.run_id, "--store", store)
    assert r.exit_code == 0, r.stderr
    message = blocks(r.stdout)["message"]
    assert message["topic"] == "orders.paid" and message["sequence"] == "1"
    assert message["event id"] == sent["event_id"] and message["correlation id"] == "c-9"
    assert message["payload"] == '{"flaky":true,"n":7}'
    shown = blocks(r.stdout)["receipt"]
    assert shown["status"] == "delivered" and shown["receipt"] == "#1 of billing"
    assert shown["run / attempt"] == f"{delivery.run_id} / 2"
    first, second = attempt_rows(r.stdout)
    assert "retryable" in first and "transport_error /" in first and "safe_retry" in first
    assert "success" in second and "_" not in second  # no class: it did not fail


def test_run_of_a_failed_delivery_shows_the_failure_and_retry_class(
    cli: Invoke, store: str, app: ms.App
) -> None:
    sent = publish(cli, store, "orders.created", "--payload", '{"bad": true}')
    drain(app)
    (delivery,) = app.runs()
    doc = run_json(cli, store, delivery.run_id)
    assert doc["state"] == "failed"
    assert (doc["failure_class"], doc["retry_class"]) == ("invalid_request", "do_not_retry")
    assert doc["receipt"]["status"] == "failed" and doc["receipt"]["event_id"] == sent["event_id"]
    assert doc["receipt"]["failure_class"] == "invalid_request"
    r = cli("run", delivery.run_id, "--store", store)
    details = blocks(r.stdout)["run"]
    assert details["failure / retry class"] == "invalid_request / do_not_retry"
    assert details["error"] == "Fail: bad order"
    shown = blocks(r.stdout)["receipt"]
    assert shown["status"] == "failed"
    assert shown["failure / retry class"] == "invalid_request / do_not_retry"


def test_run_of_a_rerun_delivery_shows_the_first_receipt(
    cli: Invoke, store: str, app: ms.App
) -> None:
    sent = publish(cli, store, "audit.y")
    drain(app)
    (first,) = app.runs()
    r = cli("rerun", first.run_id, "--store", store)
    assert r.exit_code == 0, r.stderr
    again = r.stdout.strip()
    drain(app)
    doc = run_json(cli, store, again)
    assert doc["rerun_of"] == first.run_id and doc["message"] == sent
    assert doc["receipt"]["run_id"] == first.run_id  # create-only: still the first one
    assert doc["output"] == "audited audit.y"  # it ended as the first handling did
    r = cli("run", again, "--store", store)
    assert blocks(r.stdout)["run"]["rerun of"] == first.run_id


def test_run_of_other_runs_has_no_message_and_shows_caused_by(
    cli: Invoke, store: str, app: ms.App
) -> None:
    h = app.submit("parent")
    drain(app)
    doc = run_json(cli, store, h.run_id)
    assert doc["message"] is None and doc["receipt"] is None and doc["caused_by"] is None
    (child,) = [r for r in app.runs() if r.task_name == "child"]
    doc = run_json(cli, store, child.run_id)
    assert doc["caused_by"] == h.run_id and doc["message"] is None
    r = cli("run", child.run_id, "--store", store)
    assert r.exit_code == 0, r.stderr
    assert "\nmessage" not in r.stdout and "\nreceipt" not in r.stdout
    assert blocks(r.stdout)["run"]["caused by"] == h.run_id
    # the message the parent published: its delivery shows who caused it
    (delivery,) = [r for r in app.runs() if r.task_name == "audit"]
    r = cli("run", delivery.run_id, "--store", store)
    assert blocks(r.stdout)["message"]["caused by"] == h.run_id


def test_run_of_a_plain_failure_shows_its_classes(cli: Invoke, store: str) -> None:
    app = ms.App(store=store)

    @app.task(name="down", max_attempts=3)
    def down() -> None:
        raise Unavailable("the adapter is down")

    @app.task(name="refused", max_attempts=3)
    def refused() -> None:
        raise ms.PreconditionFailed("receipt-exists", "already handled")

    with app:
        suspended, failed = app.submit("down"), app.submit("refused")
        drain(app)
        assert suspended.status() == ms.RunState.SUSPENDED
    doc = run_json(cli, store, failed.run_id)
    assert doc["state"] == "failed" and len(doc["attempts"]) == 1  # permanent: not retried
    assert (doc["failure_class"], doc["retry_class"]) == ("state_conflict", "do_not_retry")
    doc = run_json(cli, store, suspended.run_id)
    assert doc["failure_class"] is None  # only a failed run carries them ...
    (attempt,) = doc["attempts"]  # ... and each attempt that failed
    assert (attempt["failure_class"], attempt["retry_class"]) == (
        "adapter_unavailable",
        "retry_after_reconfigure",
    )
    r = cli("run", suspended.run_id, "--store", store)
    (row,) = attempt_rows(r.stdout)
    assert "suspended" in row and "adapter_unavailable / retry_after_reconfigure" in row
