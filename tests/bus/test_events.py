"""Events on the in-process bus: topic patterns, per-topic sequences, delivery order under
concurrent publishers, and isolation of failing subscribers (CONTRACT.md section 10)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from mainspring.bus import VALIDATION_ERROR, Bus, BusConfigError, BusError, Envelope
from mainspring.bus._topics import matches, parse_pattern


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads far more often than usual, so publishers really interleave."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("orders.created", "orders.created", True),
        ("orders.created", "orders.updated", False),
        ("orders.created", "orders.created.eu", False),
        ("orders.*", "orders.created", True),
        ("orders.*", "orders", False),
        ("orders.*", "orders.created.eu", False),
        ("*.created", "orders.created", True),
        ("*.created", "orders.created.x", False),
        ("*", "orders", True),
        ("*", "orders.created", False),
        ("audit.#", "audit.user.login", True),
        ("audit.#", "audit.x", True),
        ("audit.#", "audit", True),  # '#' is zero or more segments, as in AMQP
        ("audit.#", "auditing.x", False),
        ("audit.#", "orders.audit", False),
        ("#", "anything.at.all", True),
        ("*.*.#", "a", False),
        ("*.*.#", "a.b", True),
        ("log.run.*", "log.run.state_changed", True),
    ],
)
def test_pattern_matching(pattern: str, topic: str, expected: bool) -> None:
    parts = parse_pattern(pattern)
    assert parts is not None
    assert matches(parts, tuple(topic.split("."))) is expected
    b = Bus()
    got: list[str] = []
    b.subscribe(pattern, lambda env: got.append(env.topic))
    b.publish(topic, None)
    assert got == ([topic] if expected else [])
    assert b.has_subscribers(topic) is expected


@pytest.mark.parametrize("pattern", ["", "a..b", "audit.#.x", "#.x", "or*ders", "a.b c", 7])
def test_bad_patterns_are_refused(pattern: Any) -> None:
    with pytest.raises(BusConfigError):
        Bus().on(pattern)(lambda env: None)


@pytest.mark.parametrize("topic", ["", "orders.*", "audit.#", "a..b", None, 3])
def test_publishing_to_a_bad_topic_is_a_validation_error(topic: Any) -> None:
    with pytest.raises(BusError) as info:
        Bus().publish(topic, {})
    assert info.value.code == VALIDATION_ERROR


def test_async_subscribers_are_refused() -> None:
    async def sub(env: Envelope) -> None:
        return None

    with pytest.raises(BusConfigError, match="async"):
        Bus().on("a.b")(sub)


def test_on_is_a_decorator_that_keeps_the_function() -> None:
    b = Bus()
    got: list[Envelope] = []

    @b.on("orders.*")
    def log_order(env: Envelope) -> None:
        got.append(env)

    assert callable(log_order) and log_order.__name__ == "log_order"
    env = b.publish("orders.created", {"order": 42})
    assert got == [env]


def test_publish_returns_the_event_envelope() -> None:
    b = Bus()
    env = b.publish("orders.created", {"order": 42})
    assert env.kind == "event" and env.topic == "orders.created"
    assert env.payload == {"order": 42} and env.sequence == 1 and env.error is None


def test_sequences_count_per_topic_from_one() -> None:
    b = Bus()
    seqs = [b.publish("a.x", i).sequence for i in range(3)]
    other = b.publish("a.y", None).sequence
    seqs.append(b.publish("a.x", 3).sequence)
    assert seqs == [1, 2, 3, 4] and other == 1
    assert b.last_sequence("a.x") == 4 and b.last_sequence("a.y") == 1
    assert b.last_sequence("never") == 0


def test_sequence_is_assigned_before_any_subscriber_sees_the_event() -> None:
    b = Bus()
    seen: list[tuple[int | None, int]] = []
    b.subscribe("t", lambda env: seen.append((env.sequence, b.last_sequence("t"))))
    b.publish("t", None)
    b.publish("t", None)
    assert seen == [(1, 1), (2, 2)]


def test_every_subscriber_gets_every_event_in_registration_order() -> None:
    b = Bus()
    calls: list[str] = []
    b.subscribe("orders.*", lambda env: calls.append("first"))
    b.subscribe("#", lambda env: calls.append("second"))
    b.subscribe("orders.created", lambda env: calls.append("third"))
    b.publish("orders.created", None)
    assert calls == ["first", "second", "third"]


def test_publishing_with_no_subscribers_is_fine_and_still_numbered() -> None:
    b = Bus()
    assert b.publish("quiet", None).sequence == 1
    assert b.publish("quiet", None).sequence == 2


def test_unsubscribe_stops_delivery_and_is_idempotent() -> None:
    b = Bus()
    got: list[int | None] = []
    off = b.subscribe("t", lambda env: got.append(env.sequence))
    b.publish("t", None)
    off()
    off()
    b.publish("t", None)
    assert got == [1]


def test_a_subscriber_added_later_sees_only_later_events() -> None:
    b = Bus()
    b.publish("t", None)
    got: list[int | None] = []
    b.subscribe("t", lambda env: got.append(env.sequence))
    b.publish("t", None)
    assert got == [2]


def test_a_raising_subscriber_does_not_stop_the_others_nor_the_publisher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = Bus()
    got: list[tuple[str, int | None]] = []

    def bad(env: Envelope) -> None:
        raise RuntimeError("subscriber broke")

    b.subscribe("t", lambda env: got.append(("before", env.sequence)))
    b.subscribe("t", bad)
    b.subscribe("t", lambda env: got.append(("after", env.sequence)))
    with caplog.at_level(logging.ERROR, logger="mainspring.bus"):
        first = b.publish("t", None)
        second = b.publish("t", None)
    assert (first.sequence, second.sequence) == (1, 2)
    assert got == [("before", 1), ("after", 1), ("before", 2), ("after", 2)]
    errors = [r for r in caplog.records if r.name == "mainspring.bus"]
    assert len(errors) == 2
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in errors)
    assert "bad" in errors[0].getMessage()


def test_a_raising_subscriber_does_not_fail_the_command_that_published() -> None:
    b = Bus()
    b.subscribe("t", lambda env: 1 / 0)

    @b.command("pub")
    def pub(payload: Any) -> str:
        b.publish("t", None)
        return "ok"

    assert b.request("pub", None).payload == "ok"


def test_a_subscriber_publishing_to_its_own_topic_does_not_overtake() -> None:
    b = Bus()
    first: list[int | None] = []
    second: list[int | None] = []

    def echo(env: Envelope) -> None:
        first.append(env.sequence)
        if env.sequence == 1:
            inner = b.publish("t", "echo")
            assert inner.sequence == 2  # numbered at once, delivered after this event

    b.subscribe("t", echo)
    b.subscribe("t", lambda env: second.append(env.sequence))
    b.publish("t", "start")
    assert first == [1, 2] and second == [1, 2]


def test_a_publisher_finding_the_topic_busy_returns_and_its_event_follows_in_order() -> None:
    b = Bus()
    got: list[int | None] = []
    entered, release = threading.Event(), threading.Event()

    def slow(env: Envelope) -> None:
        if env.sequence == 1:
            entered.set()
            release.wait()
        got.append(env.sequence)

    b.subscribe("t", slow)
    t = threading.Thread(target=b.publish, args=("t", None))
    t.start()
    entered.wait()
    env = b.publish("t", None)  # another thread is delivering #1: this one only queues
    assert env.sequence == 2 and got == []
    release.set()
    t.join()
    assert got == [1, 2]  # the delivering thread delivered ours too, after its own


def test_ten_thousand_concurrent_publishes_have_no_inversion_or_loss(busy_switching: None) -> None:
    b = Bus()
    threads_n, per_thread = 8, 1250
    total = threads_n * per_thread
    received: dict[str, list[int]] = defaultdict(list)
    inversions: dict[str, int] = defaultdict(int)

    def subscriber(name: str) -> Any:
        last = [0]

        def on_event(env: Envelope) -> None:
            assert env.sequence is not None
            if env.sequence <= last[0]:
                inversions[name] += 1
            last[0] = env.sequence
            received[name].append(env.sequence)
            if env.sequence % 16 == 0:
                time.sleep(0)  # let publishers in while this thread is delivering

        return on_event

    for name, pattern in (("exact", "orders.created"), ("star", "orders.*"), ("all", "#")):
        b.subscribe(pattern, subscriber(name))
    returned: list[list[int]] = [[] for _ in range(threads_n)]
    start = threading.Barrier(threads_n)

    def publisher(i: int) -> None:
        start.wait()
        mine = returned[i]
        for n in range(per_thread):
            seq = b.publish("orders.created", {"thread": i, "n": n}).sequence
            assert seq is not None
            mine.append(seq)

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    every = sorted(s for mine in returned for s in mine)
    assert every == list(range(1, total + 1))  # unique, gapless
    assert all(mine == sorted(mine) for mine in returned)  # each thread's in its own order
    for name in ("exact", "star", "all"):
        assert inversions[name] == 0, name
        assert received[name] == list(range(1, total + 1)), name


def test_concurrent_topics_are_numbered_independently(busy_switching: None) -> None:
    b = Bus()
    per_topic: dict[str, list[int]] = defaultdict(list)

    def on_event(env: Envelope) -> None:
        assert env.sequence is not None
        per_topic[env.topic].append(env.sequence)

    b.subscribe("feed.*", on_event)
    topics = [f"feed.t{i}" for i in range(10)]

    def publisher(i: int) -> None:
        for n in range(500):
            b.publish(topics[(i + n) % len(topics)], n)

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(v) for v in per_topic.values()) == 3000
    for topic in topics:
        assert per_topic[topic] == list(range(1, b.last_sequence(topic) + 1))
