"""OpenTelemetry spans (mainspring/telemetry.py), on both stores: a submit, each attempt and
each workflow step are spans with the run's attributes; an attempt's span is the parent of
what its handler does (steps, submits, the handler's own spans) and links to the span
that submitted its run; and without OpenTelemetry nothing changes but that there are no
spans. The SDK's in-memory exporter collects them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import mainspring as ms
from mainspring import telemetry

from .helpers import wait_state

Make = Callable[..., ms.App]

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans ended during the test. The global tracer provider can be set once per
    process: the first use installs an SDK provider exporting to ``_exporter``."""
    provider = trace.get_tracer_provider()
    if not getattr(provider, "_mainspring_test", False):
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        provider._mainspring_test = True  # type: ignore[attr-defined]
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def named(spans: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name.startswith(prefix)]


def attrs(s: ReadableSpan) -> dict[str, Any]:
    return dict(s.attributes or {})


def test_submit_and_attempt_spans_carry_the_run_and_are_linked(
    make_app: Make, spans: InMemorySpanExporter
) -> None:
    app = make_app()
    seen_in_handler: list[Any] = []

    @app.task
    def add(x: int, y: int) -> int:
        seen_in_handler.append(trace.get_current_span().get_span_context())
        return x + y

    h = add.with_options(correlation_id="order-7").submit(1, 2)
    with app.worker() as w:
        w.run_until_idle()
    assert h.result() == 3

    (submit,) = named(spans, "submit ")
    assert submit.name == f"submit {add.name}"
    assert submit.kind == trace.SpanKind.PRODUCER
    assert attrs(submit) == {
        "mainspring.task": add.name,
        "mainspring.run_id": h.run_id,
        "mainspring.correlation_id": "order-7",
    }
    (attempt,) = named(spans, "attempt ")
    assert attempt.name == f"attempt {add.name}"
    assert attempt.kind == trace.SpanKind.CONSUMER
    assert attrs(attempt) == {
        "mainspring.run_id": h.run_id,
        "mainspring.task": add.name,
        "mainspring.correlation_id": "order-7",
        "mainspring.attempt": 1,
    }
    assert attempt.status.is_ok
    # the attempt ran in the process that submitted it: a link to the submit's span
    assert [link.context for link in attempt.links] == [submit.context]
    # the attempt's span is current in the handler (its own spans are children of it)
    assert seen_in_handler == [attempt.context]


def test_a_failing_attempt_is_an_error_span_and_each_attempt_has_its_number(
    make_app: Make, spans: InMemorySpanExporter
) -> None:
    app = make_app()

    @app.task(max_attempts=2, backoff=ms.Backoff.fixed(0.01))
    def flaky() -> str:
        if ms.context().attempt == 1:
            raise ConnectionError("down")
        return "up"

    h = flaky.submit()
    with app.worker() as w:
        w.run_until_idle()
    assert h.result() == "up"
    first, second = sorted(named(spans, "attempt "), key=lambda s: s.start_time or 0)
    assert (attrs(first)["mainspring.attempt"], attrs(second)["mainspring.attempt"]) == (1, 2)
    assert first.status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception"]
    assert second.status.is_ok
    (submit,) = named(spans, "submit ")
    assert [link.context for link in second.links] == [submit.context]  # every attempt


def test_steps_and_child_submits_are_children_of_the_attempt(
    make_app: Make, spans: InMemorySpanExporter
) -> None:
    app = make_app()

    gate = threading.Event()

    @app.task
    def child(x: int) -> int:
        gate.wait(10)  # until the workflow has suspended to wait for it
        return x * 10

    @app.step(name="fetch")
    def fetch(x: int) -> int:
        return x + 1

    @app.workflow
    def flow(x: int) -> int:
        a = fetch(x)
        return int(child.submit(a).result())

    h = flow.with_options(correlation_id="c-1").submit(1)
    try:
        with app.worker() as w:
            wait_state(h, ms.RunState.SUSPENDED)
            gate.set()
            w.run_until_idle()
    finally:
        gate.set()
    assert h.result() == 20

    attempts = sorted(named(spans, f"attempt {flow.name}"), key=lambda s: s.start_time or 0)
    # the first attempt suspends to wait for the child (not an error), the second ends it
    assert [attrs(s)["mainspring.attempt"] for s in attempts] == [1, 2]
    assert [attrs(s)["mainspring.run_id"] for s in attempts] == [h.run_id] * 2
    assert all(s.status.is_ok for s in attempts)
    (step,) = named(spans, "step ")  # a replayed step runs nothing and has no span
    first = attempts[0]
    assert step.name == "step fetch"
    assert step.parent is not None and step.parent.span_id == first.context.span_id
    assert step.context.trace_id == first.context.trace_id
    assert attrs(step) == {
        "mainspring.run_id": h.run_id,
        "mainspring.task": flow.name,
        "mainspring.correlation_id": "c-1",
        "mainspring.attempt": 1,
        "mainspring.step": 1,
        "mainspring.step_name": "fetch",
        "mainspring.step_try": 1,
    }
    # the child's submit: inside the attempt, correlated with it; once (an attempt that
    # resumes when the child has ended replays it and submits nothing)
    (submit_child,) = named(spans, f"submit {child.name}")
    assert submit_child.parent is not None
    assert submit_child.parent.span_id == first.context.span_id
    assert attrs(submit_child)["mainspring.correlation_id"] == "c-1"
    (child_attempt,) = named(spans, f"attempt {child.name}")
    child_run = attrs(submit_child)["mainspring.run_id"]
    assert attrs(child_attempt)["mainspring.run_id"] == child_run
    assert attrs(child_attempt)["mainspring.correlation_id"] == "c-1"
    # (a link only if the submit had finished when the attempt started: the worker may
    # take the child the moment it is committed, in another thread)
    assert [link.context for link in child_attempt.links] in ([], [submit_child.context])


def test_async_handlers_and_submit_many_have_spans(
    make_app: Make, spans: InMemorySpanExporter
) -> None:
    app = make_app()
    current: list[Any] = []

    @app.task
    async def job(n: int) -> int:
        current.append(trace.get_current_span().get_span_context())
        return n

    handles = job.submit_many([{"n": 1}, {"n": 2}])
    with app.worker() as w:
        w.run_until_idle()
    assert [h.result() for h in handles] == [1, 2]
    (submit,) = named(spans, "submit ")
    assert attrs(submit)["mainspring.runs"] == 2
    attempts = named(spans, "attempt ")
    assert sorted(attrs(s)["mainspring.run_id"] for s in attempts) == sorted(
        h.run_id for h in handles
    )
    assert sorted(c.span_id for c in current) == sorted(s.context.span_id for s in attempts)
    assert all([link.context for link in s.links] == [submit.context] for s in attempts)


def test_without_opentelemetry_nothing_breaks_and_nothing_is_traced(
    make_app: Make, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry, "_trace", None)  # as if opentelemetry-api were absent
    assert not telemetry.enabled()
    app = make_app()

    @app.step
    def fetch(x: int) -> int:
        return x + 1

    @app.task(max_attempts=2, backoff=ms.Backoff.fixed(0.01))
    def flaky() -> str:
        if ms.context().attempt == 1:
            raise ConnectionError("down")
        return "up"

    @app.workflow
    def flow(x: int) -> int:
        return fetch(x)

    with telemetry.span("anything", run_id="r") as s:
        assert s is None
    telemetry.submitted(None, ["r"])
    a, b = flow.submit(1), flaky.submit()
    with app.worker() as w:
        w.run_until_idle()
    assert (a.result(), b.result()) == (2, "up")
    assert spans.get_finished_spans() == ()
