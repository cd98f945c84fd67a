"""The REST API under ``/api/v1`` (CONTRACT.md section 11), through the public ``ms.App``
API only. Handlers that touch the store are plain functions run on the thread pool
(``sync_to_thread``): the App's calls block."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.response import Stream

from .._messages import Message, Receipt
from .._records import (
    Explanation,
    LogEvent,
    QueueInfo,
    RunInfo,
    TaskInfo,
    WorkerInfo,
    run_info,
)
from ..app import App
from ..core.model import MAX_SEQ
from ..core.states import RunState
from . import cursor as cursors
from ._errors import ApiError, ErrorBody
from .follower import LogFollower
from .models import (
    Answer,
    EngineState,
    PublishBody,
    RunDetail,
    RunPage,
    SignalBody,
    SignalSent,
    SubmitBody,
    SubmittedRun,
)

MAX_LIMIT = 1000


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    words = {
        400: "bad input (malformed JSON, wrong types, unknown query parameters, a bad cursor)",
        404: "no such id",
        409: "an idempotency conflict, or not allowed in this state",
        413: "payload too large",
    }
    out = {
        s: ResponseSpec(ErrorBody, description=words[s], generate_examples=False) for s in statuses
    }
    out[401] = ResponseSpec(ErrorBody, description="no valid token", generate_examples=False)
    out[403] = ResponseSpec(ErrorBody, description="a viewer's write", generate_examples=False)
    return out


def _query(*names: str) -> dict[str, Any]:
    """A handler's ``opt``: the query parameters it accepts (any other one is a 400)."""
    return {"query": frozenset(names)}


def check_query(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: refuse query parameters the route does not take."""
    allowed = request.route_handler.opt.get("query")
    if allowed is None:
        return
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise ApiError(
            400,
            "unknown_parameter",
            f"unknown query parameter(s): {', '.join(unknown)}"
            + (f" (this endpoint takes: {', '.join(sorted(allowed))})" if allowed else ""),
        )


Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="at most this many items")]
Since = Annotated[
    int, QueryParameter(ge=0, le=MAX_SEQ, description="only items after this position")
]
Text = Annotated[str | None, QueryParameter()]
Path = Annotated[str, PathParameter()]


def api_router(app: App, follower: LogFollower) -> Router:
    """The ``/api/v1`` routes over ``app``; ``follower`` feeds ``/log/stream``."""

    # -- tasks ---------------------------------------------------------------------------------
    @get("/tasks", sync_to_thread=True, opt=_query("active", "limit"), responses=_errors(400))
    def list_tasks(
        active: Annotated[bool, QueryParameter()] = True, limit: Limit = 100
    ) -> list[TaskInfo]:
        """Tasks in creation order (``active=false``: canceled ones too)."""
        return app.tasks(active=active, limit=limit)

    @get("/tasks/{task_id:str}", sync_to_thread=True, opt=_query(), responses=_errors(404))
    def get_task(task_id: Path) -> TaskInfo:
        """One task, with its policy, next occurrence and run counts."""
        return app.get_task(task_id)

    @post(
        "/tasks/{name:str}/runs",
        sync_to_thread=True,
        status_code=201,
        opt=_query(),
        responses={
            200: ResponseSpec(SubmittedRun, description="an idempotent replay: the existing run"),
            **_errors(400, 409, 413),
        },
    )
    def submit(name: Path, data: JSONBody[SubmitBody]) -> Response[SubmittedRun]:
        """Submit a run of task ``name`` (``app.submit``): 201 with the new run, 200 with
        the existing one when the ``idempotency_key`` (or workflow ``execution_id``) was
        submitted before with the same arguments; 409 when with other arguments. Its
        ``warnings`` say when no App has declared ``name`` in the store."""
        overrides = {
            k: v
            for k, v in msgspec.structs.asdict(data).items()
            if k not in ("args", "kwargs") and v is not None
        }
        handle, warning = app._submit_named(name, data.args, data.kwargs, **overrides)
        created = handle._created  # the run as created: no need to read it back
        info = run_info(created) if created is not None else app.get_run(handle.run_id)
        answer = SubmittedRun(**msgspec.structs.asdict(info), warnings=[warning] if warning else [])
        return Answer(answer, status_code=200 if created is None and handle.replayed else 201)

    @post(
        "/tasks/{task_id:str}/cancel",
        sync_to_thread=True,
        status_code=200,
        opt=_query(),
        responses=_errors(404, 409),
    )
    def cancel_task(task_id: Path) -> TaskInfo:
        """Cancel the task (it derives nothing more) and its runs that have not ended;
        409 if it was canceled already."""
        if not app.task_handle(task_id).cancel():
            raise ApiError(409, "already_canceled", f"task {task_id} was canceled already")
        return app.get_task(task_id)

    # -- runs ----------------------------------------------------------------------------------
    @get(
        "/runs",
        sync_to_thread=True,
        opt=_query("state", "task", "queue", "limit", "cursor", "order"),
        responses=_errors(400),
    )
    def list_runs(
        run_state: Annotated[RunState | None, QueryParameter(name="state")] = None,
        task: Annotated[str | None, QueryParameter(description="a task name")] = None,
        queue: Text = None,
        limit: Limit = 50,
        cursor: Annotated[str | None, QueryParameter(description="a page's next_cursor")] = None,
        order: Annotated[
            Literal["asc", "desc"], QueryParameter(description="desc: the latest first")
        ] = "asc",
    ) -> RunPage:
        """Runs by scheduled time (then id), or the latest first with ``order=desc``, a
        page at a time: pass ``next_cursor`` back as ``cursor`` for the next page (keyset
        pagination: stable under inserts)."""
        task, queue = task or None, queue or None  # (an empty form field: no filter)
        filters: list[str | None] = [
            None if run_state is None else run_state.value,
            task,
            queue,
            order,
        ]
        store_id = app.store.store_id
        after = None if cursor is None else cursors.decode(store_id, filters, cursor)
        try:
            items = app.runs(run_state, task, limit + 1, queue=queue, after=after, order=order)
        except LookupError:  # the cursor's run was pruned since
            raise ApiError(
                400, "invalid_cursor", "the run this cursor points after no longer exists"
            ) from None
        more = len(items) > limit
        items = items[:limit]
        nxt = cursors.encode(store_id, filters, items[-1].run_id) if more else None
        return RunPage(items=items, next_cursor=nxt)

    @get("/runs/{run_id:str}", sync_to_thread=True, opt=_query(), responses=_errors(404))
    def get_run(run_id: Path) -> RunDetail:
        """The run with its attempts, its workflow steps and its history."""
        handle = app.run(run_id)
        info = app.get_run(run_id)
        return RunDetail(
            **msgspec.structs.asdict(info), steps=handle.steps(), history=handle.history()
        )

    @post(
        "/runs/{run_id:str}/cancel",
        sync_to_thread=True,
        status_code=200,
        opt=_query(),
        responses=_errors(404, 409),
    )
    def cancel_run(run_id: Path) -> RunInfo:
        """Cancel the run; 409 if it has ended already."""
        if not app.run(run_id).cancel():
            raise ApiError(409, "already_ended", f"run {run_id} has ended: nothing to cancel")
        return app.get_run(run_id)

    @post(
        "/runs/{run_id:str}/resume",
        sync_to_thread=True,
        status_code=200,
        opt=_query(),
        responses=_errors(404, 409),
    )
    def resume_run(run_id: Path) -> RunInfo:
        """Move a suspended run back to ready; 409 if it is not suspended."""
        if not app.run(run_id).resume():
            raise ApiError(409, "not_suspended", f"run {run_id} is not suspended")
        return app.get_run(run_id)

    @post(
        "/runs/{run_id:str}/rerun",
        sync_to_thread=True,
        status_code=201,
        opt=_query(),
        responses=_errors(404),
    )
    def rerun_run(run_id: Path) -> RunInfo:
        """Submit a new run of the same task and arguments (its ``rerun_of`` is this run)."""
        return app.get_run(app.run(run_id).rerun().run_id)

    @get("/runs/{run_id:str}/why", sync_to_thread=True, opt=_query(), responses=_errors(404))
    def why(run_id: Path) -> Explanation:
        """Why the run is where it is: its state and the reasons, most decisive first."""
        return app.why(run_id)

    # -- workflows -----------------------------------------------------------------------------
    @get(
        "/executions/{execution_id:str}", sync_to_thread=True, opt=_query(), responses=_errors(404)
    )
    def get_execution(execution_id: Path) -> RunInfo:
        """The workflow run of this execution id (or run id)."""
        return app.get_execution(execution_id)

    @post(
        "/executions/{execution_id:str}/signals/{name:str}",
        sync_to_thread=True,
        status_code=202,
        opt=_query(),
        responses=_errors(400, 404, 413),
    )
    def signal(
        execution_id: Path, name: Path, data: JSONBody[SignalBody | None] = None
    ) -> SignalSent:
        """Send the signal ``name`` (with ``payload``) to a workflow: recorded durably,
        received by its next ``ms.wait_for(name)``."""
        body = data or SignalBody()
        app.signal(execution_id, name, body.payload, idempotency_key=body.idempotency_key)
        return SignalSent(execution_id=execution_id, name=name)

    # -- messages ------------------------------------------------------------------------------
    @post(
        "/topics/{topic:str}/messages",
        sync_to_thread=True,
        status_code=201,
        opt=_query(),
        responses=_errors(400, 409, 413),
    )
    def publish(topic: Path, data: JSONBody[PublishBody]) -> Message:
        """Publish a durable message to ``topic`` (one delivery run per subscriber)."""
        return app.publish(
            topic, data.payload, event_id=data.event_id, correlation_id=data.correlation_id
        )

    @get(
        "/topics/{topic:str}/messages",
        sync_to_thread=True,
        opt=_query("since", "limit"),
        responses=_errors(400),
    )
    def messages(topic: Path, since: Since = 0, limit: Limit = 100) -> list[Message]:
        """The messages of ``topic`` with a sequence greater than ``since``, in order."""
        return app.messages(topic, since=since, limit=limit)

    @get(
        "/receipts",
        sync_to_thread=True,
        opt=_query("subscriber", "event_id", "limit"),
        responses=_errors(400),
    )
    def receipts(
        subscriber: Text = None, event_id: Text = None, limit: Limit = 100
    ) -> list[Receipt]:
        """Receipts (how deliveries ended), of one subscriber and/or one message."""
        return app.receipts(subscriber=subscriber, event_id=event_id, limit=limit)

    # -- the log -------------------------------------------------------------------------------
    @get(
        "/log",
        sync_to_thread=True,
        opt=_query("since", "limit", "run_id"),
        responses=_errors(400, 409),
    )
    def read_log(since: Since = 0, limit: Limit = 1000, run_id: Text = None) -> list[LogEvent]:
        """Log events with seq greater than ``since`` (of one run, with ``run_id``), in
        commit order; 409 (``log_compacted``) when compaction removed some of them."""
        return app.log(since=since, run_id=run_id, limit=limit)

    @get(
        "/log/stream",
        opt=_query("since", "token"),
        media_type="text/event-stream",
        responses=_errors(400),
    )
    async def log_stream(
        since: Annotated[
            int | None,
            QueryParameter(ge=0, le=MAX_SEQ, description="start after this seq (default: now)"),
        ] = None,
        token: Annotated[
            str | None, QueryParameter(description="the bearer token, for EventSource clients")
        ] = None,
        last_event_id: Annotated[
            str | None, HeaderParameter(name="Last-Event-ID", description="resume after this seq")
        ] = None,
    ) -> Stream:
        """Server-Sent Events: one ``data:`` line per log event (the JSON of ``mainspring
        log --json``), its seq as the ``id:``; resumable with ``Last-Event-ID`` (or
        ``since``). Without either it starts with the next event committed."""
        start = since
        if last_event_id is not None and last_event_id.strip():
            text = last_event_id.strip()
            if not (text.isascii() and text.isdigit()) or int(text) > MAX_SEQ:
                raise ApiError(400, "bad_request", "Last-Event-ID must be a seq (an integer)")
            start = int(text)
        return Stream(
            follower.frames(start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- the engine ----------------------------------------------------------------------------
    @get("/stats", sync_to_thread=True, opt=_query())
    def stats() -> dict[str, int]:
        """The number of runs in each state."""
        return app.stats()

    @get("/workers", sync_to_thread=True, opt=_query())
    def workers() -> list[WorkerInfo]:
        """The live workers."""
        return app.workers()

    @get("/queues", sync_to_thread=True, opt=_query())
    def queues() -> list[QueueInfo]:
        """Every queue: paused or not, its runs by state, its oldest ready run's wait."""
        return app.queues()

    @post(
        "/engine/pause",
        sync_to_thread=True,
        status_code=200,
        opt=_query("queue"),
        responses=_errors(400),
    )
    def pause(queue: Text = None) -> EngineState:
        """Pause the engine (``queue``: only that queue): workers lease nothing more."""
        changed = app.pause(queue)
        return EngineState(paused=True, changed=changed, queue=queue)

    @post(
        "/engine/resume",
        sync_to_thread=True,
        status_code=200,
        opt=_query("queue"),
        responses=_errors(400),
    )
    def resume(queue: Text = None) -> EngineState:
        """Resume the paused engine (``queue``: that queue)."""
        changed = app.resume(queue)
        return EngineState(paused=False, changed=changed, queue=queue)

    return Router(
        path="/api/v1",
        route_handlers=[
            list_tasks,
            get_task,
            submit,
            cancel_task,
            list_runs,
            get_run,
            cancel_run,
            resume_run,
            rerun_run,
            why,
            get_execution,
            signal,
            publish,
            messages,
            receipts,
            read_log,
            log_stream,
            stats,
            workers,
            queues,
            pause,
            resume,
        ],
        before_request=check_query,
    )
