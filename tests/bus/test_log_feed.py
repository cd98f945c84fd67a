"""``Bus.publish_log``: the engine's committed log events as ``log.<type>`` events
(CONTRACT.md section 10, "The engine on the bus")."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from mainspring import LogEvent
from mainspring.bus import Bus, Envelope


def log_event(
    seq: int, type_: str, run_id: str = "r-1", correlation: str | None = None
) -> LogEvent:
    return LogEvent(
        seq=seq,
        event_id=f"ev-{seq}",
        type=type_,
        at=datetime(2026, 1, 1, tzinfo=UTC),
        task_id="t-1",
        run_id=run_id,
        attempt_id=None,
        correlation_id=correlation,
        execution_id=None,
        data={"seq": seq},
    )


def test_without_log_subscribers_the_events_are_not_even_read() -> None:
    b = Bus()
    b.subscribe("orders.*", lambda env: None)  # cannot match a log topic

    def untouchable() -> Iterator[LogEvent]:
        raise AssertionError("publish_log read the events though nobody listens")
        yield  # pragma: no cover

    assert not b.log_subscribed
    b.publish_log(untouchable())
    assert b.last_sequence("log.run.created") == 0


def test_log_events_are_published_in_commit_order_on_log_topics() -> None:
    b = Bus()
    got: list[Envelope] = []
    b.subscribe("log.#", got.append)
    batch = [
        log_event(1, "run.created", correlation="c-9"),
        log_event(2, "run.state_changed"),
        log_event(3, "attempt.started"),
        log_event(4, "run.state_changed"),
    ]
    b.publish_log(batch)
    assert [e.topic for e in got] == [
        "log.run.created",
        "log.run.state_changed",
        "log.attempt.started",
        "log.run.state_changed",
    ]
    assert [e.payload["seq"] for e in got] == [1, 2, 3, 4]
    assert [e.sequence for e in got] == [1, 1, 1, 2]  # per topic
    assert all(e.kind == "event" for e in got)
    first = got[0].payload
    assert first["event_id"] == "ev-1" and first["data"] == {"seq": 1}
    assert first["at"] == "2026-01-01T00:00:00Z"  # JSON-able builtins
    assert got[0].correlation_id == "c-9" and got[1].correlation_id is None


def test_a_narrow_log_pattern_gets_only_its_topics_and_others_take_no_numbers() -> None:
    b = Bus()
    got: list[str] = []
    b.subscribe("log.run.*", lambda env: got.append(env.topic))
    b.publish_log([log_event(1, "run.created"), log_event(2, "attempt.started")])
    assert got == ["log.run.created"]
    assert b.last_sequence("log.attempt.started") == 0


def test_wildcard_subscribers_see_the_log_too() -> None:
    b = Bus()
    got: list[str] = []
    b.subscribe("#", lambda env: got.append(env.topic))
    b.publish_log([log_event(1, "worker.heartbeat")])
    assert got == ["log.worker.heartbeat"]


def test_publish_log_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    b = Bus()
    got: list[Any] = []
    b.subscribe("log.#", lambda env: got.append(env.payload["seq"]))
    b.subscribe("log.#", lambda env: 1 / 0)
    bad = log_event(2, "not a topic!")
    with caplog.at_level(logging.ERROR, logger="mainspring.bus"):
        b.publish_log([log_event(1, "run.created"), bad, log_event(3, "run.created")])
    assert got == [1, 3]
    assert any("could not publish log event" in r.getMessage() for r in caplog.records)


def test_unsubscribing_the_last_log_subscriber_makes_it_free_again() -> None:
    b = Bus()
    off = b.subscribe("log.#", lambda env: None)
    assert b.log_subscribed
    off()
    assert not b.log_subscribed

    def untouchable() -> Iterator[LogEvent]:
        raise AssertionError("read")
        yield  # pragma: no cover

    b.publish_log(untouchable())


def test_dict_events_are_published_as_they_are() -> None:
    b = Bus()
    got: list[Envelope] = []
    b.subscribe("log.run.created", got.append)
    event = {"type": "run.created", "seq": 7, "correlation_id": "c-2"}
    b.publish_log([event])
    assert got[0].payload == event and got[0].correlation_id == "c-2"
