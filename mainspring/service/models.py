"""The bodies the service reads and the records it answers with that are not the App's own
(those are ``ms.RunInfo``, ``ms.TaskInfo``, ``ms.LogEvent`` ...: the same field names as
the Python records and the CLI's JSON). The OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Response
from litestar.serialization import default_serializer
from litestar.types import Serializer

from .._records import LogEvent, RunInfo, StepInfo, plain

#: the longest ``delay`` accepted, in seconds (a thousand years)
MAX_DELAY = 1000 * 366 * 86400.0


class SubmitBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /tasks/{name}/runs``: a submission by task name (``app.submit``)."""

    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    idempotency_key: str | None = None
    execution_id: str | None = None
    correlation_id: str | None = None
    delay: Annotated[float, msgspec.Meta(ge=0, le=MAX_DELAY)] | None = None
    run_at: datetime | None = None
    priority: Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)] | None = None
    queue: str | None = None
    concurrency_key: str | None = None  # (a task whose key is a function: it cannot make it)


class SignalBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /executions/{execution_id}/signals/{name}``: the signal's payload."""

    payload: Any = None
    idempotency_key: str | None = None


class PublishBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /topics/{topic}/messages``: one durable message (``app.publish``)."""

    payload: Any = None
    event_id: str | None = None
    correlation_id: str | None = None


class RunPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of ``GET /runs``: pass ``next_cursor`` as ``cursor`` for the next page
    (None: this was the last one)."""

    items: list[RunInfo]
    next_cursor: str | None


class SubmittedRun(RunInfo, frozen=True, kw_only=True):
    """``POST /tasks/{name}/runs``: the run, and what the submission warns of (a name no
    App has declared in the store: accepted with the default options, its arguments not
    checked); empty when nothing."""

    warnings: list[str] = []


class RunDetail(RunInfo, frozen=True, kw_only=True):
    """``GET /runs/{run_id}``: the run with its attempts, its workflow steps and its
    history (every log event of the run still in the log, in order)."""

    steps: list[StepInfo] = []
    history: list[LogEvent] = []


class EngineState(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /engine/pause`` and ``/engine/resume``: whether the engine (or ``queue``) is
    paused now, and whether this request changed it."""

    paused: bool
    changed: bool
    queue: str | None = None


class SignalSent(msgspec.Struct, frozen=True, kw_only=True):
    """A signal was recorded for the workflow (``app.signal``)."""

    execution_id: str
    name: str


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """``/healthz`` and ``/readyz``."""

    status: str


class Answer(Response[Any]):
    """The service's JSON answers, with times as the CLI's ``--json`` and the log stream
    write them (``isoformat()``: ``+00:00``) rather than msgspec's ``Z``: one body, one
    form of a time."""

    def render(
        self, content: Any, media_type: str, enc_hook: Serializer = default_serializer
    ) -> bytes:
        if isinstance(content, bytes) or not media_type.startswith("application/json"):
            return super().render(content, media_type, enc_hook)
        return msgspec.json.encode(plain(content))
