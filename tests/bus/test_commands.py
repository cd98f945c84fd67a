"""Commands on the in-process bus: one handler per method, the response envelope, and
every error code a request can end with (CONTRACT.md section 10)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from mainspring.bus import (
    BACKPRESSURE,
    HANDLER_ERROR,
    METHOD_NOT_FOUND,
    TIMEOUT,
    VALIDATION_ERROR,
    Backpressure,
    Bus,
    BusConfigError,
    BusError,
    Envelope,
)
from mainspring.core.errors import InvalidArgument, MainspringError
from mainspring.core.failures import FailureClass, PreconditionFailed, RetryClass, classify


@pytest.fixture
def bus() -> Bus:
    b = Bus()

    @b.command("orders.quote")
    def quote(payload: dict[str, Any]) -> dict[str, Any]:
        return {"sku": payload["sku"], "price": 42}

    return b


def test_request_returns_the_response_envelope(bus: Bus) -> None:
    r = bus.request("orders.quote", {"sku": "x"}, timeout=1.0)
    assert isinstance(r, Envelope)
    assert r.kind == "response"
    assert r.topic == "orders.quote"
    assert r.payload == {"sku": "x", "price": 42}
    assert r.sequence is None and r.error is None
    assert r.correlation_id  # a fresh one: the request gave none
    assert r.timestamp > 0


def test_each_request_gets_its_own_ids_unless_given_a_correlation(bus: Bus) -> None:
    a = bus.request("orders.quote", {"sku": "x"})
    b = bus.request("orders.quote", {"sku": "x"})
    assert a.id != b.id and a.correlation_id != b.correlation_id
    c = bus.request("orders.quote", {"sku": "x"}, correlation_id="corr-1")
    assert c.correlation_id == "corr-1"


def test_a_second_handler_for_a_method_is_refused(bus: Bus) -> None:
    with pytest.raises(BusConfigError, match="already has a handler") as info:

        @bus.command("orders.quote")
        def other(payload: Any) -> Any:
            return "other"

    err = info.value
    assert isinstance(err, BusError) and isinstance(err, InvalidArgument)
    assert isinstance(err, ValueError)
    assert err.code == VALIDATION_ERROR
    assert bus.request("orders.quote", {"sku": "y"}).payload["price"] == 42  # the first stays


def test_a_removed_handler_can_be_declared_again(bus: Bus) -> None:
    bus.remove_command("orders.quote")
    with pytest.raises(BusError) as info:
        bus.request("orders.quote", {"sku": "x"})
    assert info.value.code == METHOD_NOT_FOUND

    @bus.command("orders.quote")
    def again(payload: Any) -> str:
        return "again"

    assert bus.request("orders.quote", {}).payload == "again"


@pytest.mark.parametrize("method", ["", "a..b", "orders.*", "audit.#", " x", 42, None])
def test_bad_method_names_are_validation_errors(bus: Bus, method: Any) -> None:
    with pytest.raises(BusError) as info:
        bus.request(method, {})
    assert info.value.code == VALIDATION_ERROR
    with pytest.raises(BusConfigError):
        bus.command(method)


def test_command_needs_the_method_name() -> None:
    b = Bus()
    with pytest.raises(BusConfigError, match="method name"):
        b.command(lambda p: p)  # type: ignore[arg-type]


def test_unknown_method_is_method_not_found(bus: Bus) -> None:
    with pytest.raises(BusError) as info:
        bus.request("orders.refund", {})
    assert info.value.code == METHOD_NOT_FOUND
    assert "orders.refund" in info.value.message
    assert classify(info.value).failure_class == FailureClass.CAPABILITY_UNSUPPORTED


@pytest.mark.parametrize("payload", [{"x": object()}, {1j}, object()])
def test_unencodable_payload_is_a_validation_error(bus: Bus, payload: Any) -> None:
    with pytest.raises(BusError) as info:
        bus.request("orders.quote", payload)
    assert info.value.code == VALIDATION_ERROR


def test_circular_payload_is_a_validation_error(bus: Bus) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(BusError) as info:
        bus.request("orders.quote", loop)
    assert info.value.code == VALIDATION_ERROR
    with pytest.raises(BusError) as info:
        bus.publish("orders.created", loop)
    assert info.value.code == VALIDATION_ERROR


@pytest.mark.parametrize("timeout", [0, -1, "1", float("nan")])
def test_bad_timeout_is_a_validation_error(bus: Bus, timeout: Any) -> None:
    with pytest.raises(BusError) as info:
        bus.request("orders.quote", {"sku": "x"}, timeout=timeout)
    assert info.value.code == VALIDATION_ERROR


def test_a_raising_handler_is_handler_error_with_type_and_message() -> None:
    b = Bus()
    seen: list[Any] = []

    @b.command("orders.fail")
    def fail(payload: Any) -> None:
        seen.append(payload)
        raise KeyError("no such order")

    with pytest.raises(BusError) as info:
        b.request("orders.fail", {"order": 1})
    err = info.value
    assert seen == [{"order": 1}]  # the handler did run
    assert err.code == HANDLER_ERROR
    assert "KeyError" in err.message and "no such order" in err.message
    assert isinstance(err.__cause__, KeyError)
    assert err.envelope is not None
    assert err.envelope.kind == "response"
    assert err.envelope.error == {"code": HANDLER_ERROR, "message": err.message}
    assert err.envelope.payload is None
    assert classify(err).failure_class == FailureClass.INTERNAL_ERROR


def test_a_handler_error_is_classified_as_its_cause() -> None:
    b = Bus()

    @b.command("orders.fail")
    def fail(payload: Any) -> None:
        raise PreconditionFailed("receipt-exists")

    with pytest.raises(BusError) as info:
        b.request("orders.fail", {})
    assert info.value.failure_class == FailureClass.STATE_CONFLICT
    assert info.value.retry_class == RetryClass.DO_NOT_RETRY


def test_an_unencodable_answer_is_a_handler_error() -> None:
    b = Bus()

    @b.command("orders.weird")
    def weird(payload: Any) -> object:
        return object()

    with pytest.raises(BusError) as info:
        b.request("orders.weird", {})
    assert info.value.code == HANDLER_ERROR
    assert "not JSON-encodable" in info.value.message


def test_a_slow_sync_handler_is_a_timeout_and_its_answer_discarded() -> None:
    b = Bus()
    done = threading.Event()

    @b.command("orders.slow")
    def slow(payload: Any) -> str:
        time.sleep(0.05)
        done.set()
        return "late"

    with pytest.raises(BusError) as info:
        b.request("orders.slow", {}, timeout=0.001)
    assert info.value.code == TIMEOUT
    assert done.is_set()  # a sync handler cannot be interrupted: it ran to its end
    assert info.value.envelope is not None and info.value.envelope.payload is None
    assert classify(info.value).failure_class == FailureClass.TIMEOUT
    # without a deadline the same handler answers
    assert b.request("orders.slow", {}).payload == "late"


def test_request_payload_over_the_limit_is_backpressure() -> None:
    b = Bus(max_payload_bytes=100)
    calls: list[Any] = []

    @b.command("echo")
    def echo(payload: Any) -> Any:
        calls.append(payload)
        return payload

    exact = "x" * 98  # 100 bytes of JSON with its quotes
    assert b.request("echo", exact).payload == exact
    with pytest.raises(Backpressure) as info:
        b.request("echo", exact + "x")
    assert info.value.code == BACKPRESSURE
    assert calls == [exact]  # the oversized request never reached the handler


def test_an_answer_over_the_limit_is_backpressure() -> None:
    b = Bus(max_payload_bytes=100)

    @b.command("grow")
    def grow(n: int) -> str:
        return "x" * n

    assert len(b.request("grow", 98).payload) == 98
    with pytest.raises(Backpressure):
        b.request("grow", 99)


def test_backpressure_is_a_bus_error_and_a_mainspring_error() -> None:
    err = Backpressure("too big")
    assert isinstance(err, BusError) and isinstance(err, MainspringError)
    assert err.code == BACKPRESSURE
    c = classify(err)
    assert c.failure_class == FailureClass.PAYLOAD_TOO_LARGE
    assert c.retry_class == RetryClass.DO_NOT_RETRY


def test_the_default_limit_is_one_mebibyte_inclusive() -> None:
    b = Bus()
    assert b.max_payload_bytes == 1 << 20
    env = b.publish("big", "x" * ((1 << 20) - 2))
    assert env.sequence == 1
    with pytest.raises(Backpressure):
        b.publish("big", "x" * ((1 << 20) - 1))
    assert b.last_sequence("big") == 1  # the refused one took no number


def test_bus_options_are_checked() -> None:
    with pytest.raises(BusConfigError):
        Bus(max_payload_bytes=-1)
    with pytest.raises(BusConfigError):
        Bus(max_depth=0)


# ---------------------------------------------------------------- async


def test_request_async_awaits_an_async_handler() -> None:
    b = Bus()

    @b.command("orders.quote")
    async def quote(payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"price": payload["n"] * 2}

    r = asyncio.run(b.request_async("orders.quote", {"n": 21}, timeout=5.0))
    assert r.kind == "response" and r.payload == {"price": 42}


def test_request_async_calls_a_sync_handler(bus: Bus) -> None:
    r = asyncio.run(bus.request_async("orders.quote", {"sku": "z"}))
    assert r.payload == {"sku": "z", "price": 42}


def test_request_runs_an_async_handler_outside_a_loop() -> None:
    b = Bus()

    @b.command("double")
    async def double(n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    assert b.request("double", 4).payload == 8


def test_request_of_an_async_handler_inside_a_running_loop_says_use_request_async() -> None:
    b = Bus()

    @b.command("double")
    async def double(n: int) -> int:
        return n * 2

    async def main() -> None:
        with pytest.raises(BusError, match="request_async") as info:
            b.request("double", 1)
        assert info.value.code == VALIDATION_ERROR

    asyncio.run(main())


def test_an_async_handler_is_cancelled_at_the_timeout() -> None:
    b = Bus()
    cancelled = []

    @b.command("orders.stuck")
    async def stuck(payload: Any) -> None:
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> BusError:
        with pytest.raises(BusError) as info:
            await b.request_async("orders.stuck", {}, timeout=0.01)
        return info.value

    err = asyncio.run(main())
    assert err.code == TIMEOUT and cancelled == [True]
    with pytest.raises(BusError) as info:
        b.request("orders.stuck", {}, timeout=0.01)  # the sync path cancels it too
    assert info.value.code == TIMEOUT


def test_a_handlers_own_timeout_error_is_a_handler_error() -> None:
    b = Bus()

    @b.command("orders.own")
    async def own(payload: Any) -> None:
        raise TimeoutError("upstream timed out")

    async def main() -> BusError:
        with pytest.raises(BusError) as info:
            await b.request_async("orders.own", {}, timeout=5.0)
        return info.value

    err = asyncio.run(main())
    assert err.code == HANDLER_ERROR and "upstream timed out" in err.message


def test_async_errors_match_sync_ones() -> None:
    b = Bus()

    @b.command("boom")
    async def boom(payload: Any) -> None:
        raise ValueError("bad")

    async def main() -> list[str]:
        codes: list[str] = []
        for method, payload in (("boom", {}), ("missing", {}), ("", {}), ("boom", object())):
            try:
                await b.request_async(method, payload)
            except BusError as exc:
                codes.append(exc.code)
        return codes

    assert asyncio.run(main()) == [
        HANDLER_ERROR,
        METHOD_NOT_FOUND,
        VALIDATION_ERROR,
        VALIDATION_ERROR,
    ]


# ---------------------------------------------------------------- dispatch


def test_dispatch_runs_a_command_envelope(bus: Bus) -> None:
    cmd = {
        "id": "cmd-1",
        "kind": "command",
        "topic": "orders.quote",
        "sequence": None,
        "correlation_id": "corr-9",
        "timestamp": 1.0,
        "payload": {"sku": "q"},
        "error": None,
    }
    r = bus.dispatch(cmd)
    assert r.payload == {"sku": "q", "price": 42} and r.correlation_id == "corr-9"
    event = dict(cmd, kind="event", sequence=1)
    with pytest.raises(BusError) as info:
        bus.dispatch(event)
    assert info.value.code == VALIDATION_ERROR
    with pytest.raises(BusError) as info:
        bus.dispatch(b'{"kind": "command"}')
    assert info.value.code == VALIDATION_ERROR
