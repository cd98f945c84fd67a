"""Correlation through handlers, the depth limit, and isolation of concurrent commands
(CONTRACT.md section 10, "Correlation")."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import mainspring.bus as mb
from mainspring.bus import VALIDATION_ERROR, Bus, BusError, Envelope, correlation_id


def collect(bus: Bus, pattern: str) -> list[Envelope]:
    got: list[Envelope] = []
    bus.subscribe(pattern, got.append)
    return got


def test_outside_any_handler_there_is_no_correlation() -> None:
    assert correlation_id() is None


def test_events_published_in_a_handler_carry_the_commands_correlation() -> None:
    b = Bus()
    events = collect(b, "orders.#")
    inside: list[str | None] = []

    @b.command("orders.place")
    def place(payload: Any) -> str | None:
        inside.append(correlation_id())
        for i in range(5):
            b.publish("orders.step", {"i": i})
        return correlation_id()

    r = b.request("orders.place", {})
    assert inside == [r.correlation_id] and r.payload == r.correlation_id
    assert [e.correlation_id for e in events] == [r.correlation_id] * 5
    assert correlation_id() is None  # restored after


def test_a_nested_command_gets_its_own_correlation_and_the_outer_is_restored() -> None:
    b = Bus()
    events = collect(b, "#")
    seen: dict[str, Any] = {}

    @b.command("outer")
    def outer(payload: Any) -> None:
        seen["outer_before"] = correlation_id()
        b.publish("evt.outer.before", None)
        seen["inner_response"] = b.request("inner", None).correlation_id
        seen["outer_after"] = correlation_id()
        b.publish("evt.outer.after", None)

    @b.command("inner")
    def inner(payload: Any) -> None:
        seen["inner"] = correlation_id()
        b.publish("evt.inner", None)

    r = b.request("outer", None)
    outer_id, inner_id = r.correlation_id, seen["inner"]
    assert seen["outer_before"] == seen["outer_after"] == outer_id
    assert inner_id is not None and inner_id != outer_id
    assert seen["inner_response"] == inner_id
    by_topic = {e.topic: e.correlation_id for e in events}
    assert by_topic == {
        "evt.outer.before": outer_id,
        "evt.inner": inner_id,
        "evt.outer.after": outer_id,
    }


def test_the_outer_correlation_is_restored_when_a_nested_command_fails() -> None:
    b = Bus()
    after: list[str | None] = []

    @b.command("outer")
    def outer(payload: Any) -> None:
        try:
            b.request("inner", None)
        except BusError:
            pass
        after.append(correlation_id())

    @b.command("inner")
    def inner(payload: Any) -> None:
        raise RuntimeError("inner failed")

    r = b.request("outer", None)
    assert after == [r.correlation_id]
    assert correlation_id() is None


def test_an_explicit_correlation_is_used_by_the_command_and_its_events() -> None:
    b = Bus()
    events = collect(b, "x.done")

    @b.command("x.run")
    def run(payload: Any) -> None:
        b.publish("x.done", None)

    b.request("x.run", None, correlation_id="trace-7")
    assert events[0].correlation_id == "trace-7"


def test_events_outside_a_handler_get_a_fresh_correlation_each() -> None:
    b = Bus()
    one, two = b.publish("a.b", None), b.publish("a.b", None)
    assert one.correlation_id and two.correlation_id and one.correlation_id != two.correlation_id
    assert b.publish("a.b", None, correlation_id="c").correlation_id == "c"


def test_a_subscriber_runs_with_the_events_correlation() -> None:
    b = Bus()
    inside: list[str | None] = []
    b.subscribe("a.*", lambda env: inside.append(correlation_id()))
    env = b.publish("a.b", None, correlation_id="c-1")
    assert inside == ["c-1"] and env.correlation_id == "c-1"
    assert correlation_id() is None


def test_correlation_scope_sets_and_restores() -> None:
    b = Bus()
    with mb.correlation_scope("run-corr"):
        assert correlation_id() == "run-corr"
        assert b.publish("t.x", None).correlation_id == "run-corr"
        with mb.correlation_scope(None):
            assert correlation_id() is None
        assert correlation_id() == "run-corr"
    assert correlation_id() is None
    with pytest.raises(BusError), mb.correlation_scope(""):
        pass


# ---------------------------------------------------------------- depth


@pytest.mark.parametrize("max_depth", [1, 3, 16])
def test_requests_nest_up_to_max_depth_and_no_deeper(max_depth: int) -> None:
    b = Bus(max_depth=max_depth)
    reached: list[int] = []

    @b.command("down")
    def down(level: int) -> int:
        reached.append(level)
        return int(b.request("down", level + 1).payload)

    with pytest.raises(BusError) as info:
        b.request("down", 1)
    # a BusError raised in a handler reaches the caller as it was
    assert info.value.code == VALIDATION_ERROR
    assert "max_depth" in info.value.message
    assert reached == list(range(1, max_depth + 1))
    assert correlation_id() is None


def test_depth_is_counted_down_again_after_nested_requests_return() -> None:
    b = Bus(max_depth=2)

    @b.command("leaf")
    def leaf(payload: Any) -> str:
        return "leaf"

    @b.command("fan")
    def fan(payload: Any) -> list[str]:
        # many sequential nested requests: each is depth 2, never deeper
        return [b.request("leaf", None).payload for _ in range(5)]

    assert b.request("fan", None).payload == ["leaf"] * 5


def test_the_default_depth_limit_is_sixteen() -> None:
    assert Bus().max_depth == 16


# ---------------------------------------------------------------- concurrency


def test_concurrent_commands_in_threads_never_see_each_others_correlation() -> None:
    b = Bus()
    n = 8
    barrier = threading.Barrier(n)
    events = collect(b, "work.done")
    mismatches: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    @b.command("work")
    def work(payload: dict[str, str]) -> None:
        mine = payload["corr"]
        for _ in range(3):
            barrier.wait()  # every thread inside a handler at once
            if correlation_id() != mine:
                with lock:
                    mismatches.append((mine, correlation_id()))
            b.publish("work.done", {"corr": mine})

    def client(i: int) -> None:
        corr = f"corr-{i}"
        b.request("work", {"corr": corr}, correlation_id=corr)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []
    assert len(events) == 3 * n
    assert all(e.correlation_id == e.payload["corr"] for e in events)
    assert correlation_id() is None


def test_concurrent_async_commands_never_see_each_others_correlation() -> None:
    b = Bus()
    events = collect(b, "work.done")

    @b.command("work")
    async def work(payload: dict[str, str]) -> str | None:
        for _ in range(5):
            await asyncio.sleep(0)  # interleave with every other task
            b.publish("work.done", {"corr": payload["corr"]})
            assert correlation_id() == payload["corr"]
        return correlation_id()

    async def main() -> list[Envelope]:
        return await asyncio.gather(
            *(b.request_async("work", {"corr": f"c{i}"}, correlation_id=f"c{i}") for i in range(20))
        )

    responses = asyncio.run(main())
    assert [r.payload for r in responses] == [f"c{i}" for i in range(20)]
    assert len(events) == 100
    assert all(e.correlation_id == e.payload["corr"] for e in events)
