"""OpenTelemetry spans for a submit, each attempt and each workflow step (docs/service.md,
"OpenTelemetry").

Only where ``opentelemetry-api`` is installed: without it (or while no tracer provider is
configured) every helper here is a shared no-op, and without it nothing is imported.
Spans carry the attributes ``mainspring.run_id``, ``mainspring.task``,
``mainspring.correlation_id``, ``mainspring.attempt`` and ``mainspring.step``, which tie
together the spans of one run (and of one correlation) across processes. An attempt's span
is the current span while its handler runs, so the handler's steps, its submits and any
instrumented library it calls are its children; an attempt run in the process that
submitted its run also gets a link to that submit's span.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

try:
    from opentelemetry import trace as _trace
except ImportError:  # (the optional dependency is absent: spans cost nothing)
    _trace = None  # type: ignore[assignment]

__all__ = [
    "ATTEMPT",
    "CORRELATION_ID",
    "RUN_ID",
    "STEP",
    "TASK",
    "enabled",
    "span",
    "submitted",
]

RUN_ID = "mainspring.run_id"
TASK = "mainspring.task"
CORRELATION_ID = "mainspring.correlation_id"
ATTEMPT = "mainspring.attempt"
STEP = "mainspring.step"

#: attribute name for each keyword of ``span`` (the others are mainspring.<keyword>)
_NAMES = {
    "run_id": RUN_ID,
    "task": TASK,
    "correlation_id": CORRELATION_ID,
    "attempt": ATTEMPT,
    "step": STEP,
}
_KINDS = ("internal", "producer", "consumer")

_NOOP: contextlib.nullcontext[None] = contextlib.nullcontext()

#: run id -> the context of the span that submitted it in this process, so that its
#: attempt's span can link to it; bounded (a run submitted and never run here is forgotten)
_SUBMITS_KEPT = 10_000
_submits: OrderedDict[str, Any] = OrderedDict()
_submits_lock = threading.Lock()


def enabled() -> bool:
    """Whether OpenTelemetry's API is importable (spans are made once a tracer provider
    is configured)."""
    return _trace is not None


def span(
    name: str,
    *,
    kind: str = "internal",
    link_run: str | None = None,
    ok: tuple[type[BaseException], ...] = (),
    **attributes: Any,
) -> contextlib.AbstractContextManager[Any]:
    """A context manager around one span named ``name``, current while it is open; it
    yields the span (None without OpenTelemetry or a configured tracer provider).

    ``attributes``: ``run_id``, ``task``, ``correlation_id``, ``attempt``, ``step`` (and
    any other keyword, as ``mainspring.<keyword>``); None values are left out. ``kind``:
    ``internal``, ``producer`` (a submit) or ``consumer`` (an attempt). ``link_run``: link
    to the span that submitted this run, if it was submitted in this process. An exception
    leaving the block marks the span as an error, unless it is one of ``ok`` (control flow,
    such as a workflow suspending).
    """
    if _trace is None:
        return _NOOP
    tracer = _tracer()
    if tracer is None:
        return _NOOP
    return _span(tracer, name, kind, link_run, ok, attributes)


_cached: tuple[Any, Any] = (None, None)  # (provider, its tracer)
# No provider set in code, and none named in the environment (which OpenTelemetry loads
# at its first use): then there is none, without the environment lookup that
# ``get_tracer_provider`` makes at every call. (Its global, read where it is found.)
_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _tracer() -> Any:
    """The ``mainspring`` tracer of the global provider; None while none is configured
    (the API alone: its spans would be no-ops, at about 10 us each)."""
    global _cached
    assert _trace is not None
    if not _FROM_ENV and getattr(_trace, "_TRACER_PROVIDER", False) is None:
        return None
    provider = _trace.get_tracer_provider()
    if isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider):
        return None
    if _cached[0] is not provider:
        _cached = (provider, provider.get_tracer("mainspring"))
    return _cached[1]


@contextlib.contextmanager
def _span(
    tracer: Any,
    name: str,
    kind: str,
    link_run: str | None,
    ok: tuple[type[BaseException], ...],
    attributes: dict[str, Any],
) -> Iterator[Any]:
    assert _trace is not None
    attrs = {_NAMES.get(k, f"mainspring.{k}"): v for k, v in attributes.items() if v is not None}
    links = None
    if link_run is not None:
        with _submits_lock:
            submitted_by = _submits.get(link_run)  # (every attempt of the run links)
        if submitted_by is not None:
            links = [_trace.Link(submitted_by)]
    span_kind = (_trace.SpanKind.INTERNAL, _trace.SpanKind.PRODUCER, _trace.SpanKind.CONSUMER)[
        _KINDS.index(kind)
    ]
    # (exceptions are recorded below, where control-flow ones can be told apart)
    with tracer.start_as_current_span(
        name,
        kind=span_kind,
        attributes=attrs,
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    ) as s:
        try:
            yield s
        except BaseException as exc:
            if not isinstance(exc, ok):
                s.record_exception(exc)
                s.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{type(exc).__name__}"))
            raise


def submitted(s: Any, run_ids: list[str], correlation_id: str | None = None) -> None:
    """Record on submit span ``s`` (from ``span``) the runs it made (the run id when there
    is one, else their number), and remember the span so that these runs' attempts, if they
    run in this process, link to it."""
    if s is None:
        return
    if len(run_ids) == 1:
        s.set_attribute(RUN_ID, run_ids[0])
    else:
        s.set_attribute("mainspring.runs", len(run_ids))
    if correlation_id is not None:
        s.set_attribute(CORRELATION_ID, correlation_id)
    sc = s.get_span_context()
    if sc.is_valid:  # (a no-op tracer's spans have nothing worth linking to)
        with _submits_lock:
            for run_id in run_ids:
                _submits[run_id] = sc
            while len(_submits) > _SUBMITS_KEPT:
                _submits.popitem(last=False)
