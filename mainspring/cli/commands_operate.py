"""The commands that change the store: ``submit``, ``cancel``, ``resume``, ``rerun``,
``signal``, ``pause``, ``migrate`` (``prune``: commands_upkeep.py).

Each opens the store (migrating its schema, as opening a store does), makes its one
change through ``ms.App`` and prints what came of it. Those that name a run or a task
(``cancel``, ``resume RUN_ID``, ``rerun``, ``signal``) never create a store: where there is no store
there is no such id. When the change cannot be done (cancel of an ended run, resume of a
run that is not suspended) nothing is printed on stdout: one line on stderr says why, and
the exit code is 1.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Any

import msgspec
import typer

from .._app_operations import check_cancel_state
from .._task_options import check_overrides
from ..app import App, RunInfo
from ..core.errors import UnknownExecution, UnknownRun, UnknownTask
from . import _render as out
from ._app import open_app
from ._errors import EXIT_NOT_DONE, EXIT_USAGE, CliError, fail, handle_errors
from ._options import Globals, JsonOpt, StoreOpt, flag, globals_of, parse_payload


def _parse_json(text: str | None, option: str, kind: type) -> Any:
    if text is None:
        return None
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise CliError(f"{option} is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, kind):
        what = (
            "a JSON array, e.g. '[1, \"a\"]'"
            if kind is list
            else 'a JSON object, e.g. \'{"to": "a@b.c"}\''
        )
        raise CliError(f"{option} must be {what}; got {text!r}")
    return value


@handle_errors
def submit(
    ctx: typer.Context,
    task_name: Annotated[
        str,
        typer.Argument(
            metavar="TASK_NAME", help="Name of the task, as declared with @app.task(name=...)."
        ),
    ],
    args: Annotated[
        str | None,
        typer.Option("--args", metavar="JSON", help="Positional arguments as a JSON array."),
    ] = None,
    kwargs: Annotated[
        str | None,
        typer.Option("--kwargs", metavar="JSON", help="Keyword arguments as a JSON object."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="K",
            help="Submit at most once per (task, key): the same arguments again return the same run; different arguments exit 1.",
        ),
    ] = None,
    execution_id: Annotated[
        str | None,
        typer.Option(
            "--execution-id", metavar="E", help="Execution id carried on every event of the run."
        ),
    ] = None,
    correlation_id: Annotated[
        str | None,
        typer.Option(
            "--correlation-id",
            metavar="C",
            help="Correlation id carried on every event of the run.",
        ),
    ] = None,
    delay: Annotated[
        float | None,
        typer.Option("--delay", metavar="S", help="Start no earlier than S seconds from now."),
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option(
            "--priority",
            metavar="N",
            help="Priority of this run (higher first); default: the task's.",
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option("--queue", metavar="Q", help="Queue of this run; default: the task's."),
    ] = None,
    concurrency_key: Annotated[
        str | None,
        typer.Option(
            "--concurrency-key",
            metavar="K",
            help="Concurrency key of this run; default: the task's, filled from the arguments.",
        ),
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Submit one run of TASK_NAME and print its run id (--json: the run). Needs no handler code.

    When an App has declared TASK_NAME in the store, its options apply and the arguments are checked against the handler's parameters (exit 2 when they do not fit; nothing is written). A name no App has declared is accepted with a warning on stderr: the run waits for a worker that declares it."""
    g = globals_of(ctx, store, json_out)
    a = _parse_json(args, "--args", list)
    k = _parse_json(kwargs, "--kwargs", dict)
    overrides = {
        "idempotency_key": idempotency_key,
        "execution_id": execution_id,
        "correlation_id": correlation_id,
        "delay": delay,
        "priority": priority,
        "queue": queue,
        "concurrency_key": concurrency_key,
    }
    check_overrides(overrides)  # (before the store is opened, or created)
    with open_app(g, create=True) as app:
        handle, warning = app._submit_named(task_name, a or [], k or {}, **overrides)
        if warning is not None:  # (one line, not Python's two-line warning format)
            sys.stderr.write(f"mainspring submit: {warning}\n")
        if g.json:
            out.emit_json(out.run_json(app.get_run(handle.run_id)))
        else:
            typer.echo(handle.run_id)


def _cancel_task(app: App, g: Globals, task_id: str) -> None:
    done = app.task_handle(task_id).cancel()
    if not done:
        fail(f"task {task_id} is already canceled; nothing to cancel", EXIT_NOT_DONE)
    if g.json:
        out.emit_json(out.plain(app.get_task(task_id)))
    else:
        typer.echo(f"canceled task {task_id} and its runs that had not ended")


@handle_errors
def cancel(
    ctx: typer.Context,
    id_: Annotated[
        str | None,
        typer.Argument(
            metavar="ID",
            help="A run id (cancel that run) or a task id (cancel the task and its runs that have not ended). Without it: the runs --state/--task/--queue select.",
            show_default=False,
        ),
    ] = None,
    state: StateOpt = None,
    task: TaskOpt = None,
    queue: BulkQueueOpt = None,
    yes: YesOpt = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cancel a run, a task and its runs that have not ended, or (with --state, --task, --queue instead of ID) every run they select.

    ID is a run id or a task id. Exit 1 when the run already ended or the task is already canceled; exit 2 when no run or task has that id. --json: the run or the task as it is now. In bulk, without --yes: print how many runs would be canceled and change nothing; with --yes: cancel them, with progress on a terminal (--json: {"canceled": N})."""
    g = globals_of(ctx, store, json_out)
    if id_ is None:
        _bulk(g, "cancel", state, task, queue, yes)
        return
    if state is not None or task is not None or queue is not None:
        raise CliError("give either an ID or --state/--task/--queue, not both")
    with open_app(g, create=False) as app:
        try:
            handle = app.run(id_)
        except UnknownRun:
            try:
                _cancel_task(app, g, id_)
            except UnknownTask:
                fail(
                    f"no run or task {id_!r} in this store; list them with `mainspring runs` "
                    "or `mainspring tasks --all`",
                    EXIT_USAGE,
                )
            return
        done = handle.cancel()
        info = app.get_run(id_)
    if not done:
        fail(f"run {id_} is already {info.state}; nothing to cancel", EXIT_NOT_DONE)
    if g.json:
        out.emit_json(out.run_json(info))
    else:
        typer.echo(f"canceled {id_}")


StateOpt = Annotated[
    str | None,
    typer.Option("--state", metavar="STATE", help="Bulk: the runs in this state."),
]
TaskOpt = Annotated[
    str | None, typer.Option("--task", metavar="NAME", help="Bulk: only runs of this task.")
]
BulkQueueOpt = Annotated[
    str | None, typer.Option("--queue", metavar="QUEUE", help="Bulk: only runs in this queue.")
]
YesOpt = Annotated[
    bool, flag("--yes", help="Bulk: do it (without it: print what would change, change nothing).")
]


def _bulk(
    g: Globals, verb: str, state: str | None, task: str | None, queue: str | None, yes: bool
) -> None:
    """``cancel`` / ``rerun`` of the runs a filter selects (a dry run without --yes)."""
    if verb == "rerun" and state is None:
        raise CliError("rerun in bulk needs --state (e.g. --state failed)")
    if state is None and task is None and queue is None:
        raise CliError(f"{verb} needs an ID, or --state/--task/--queue to select runs")
    with open_app(g, create=False) as app:
        if not yes:
            if verb == "cancel":
                check_cancel_state(state)  # (refused as --yes would refuse it)
            ids = app.matching_runs(state, task, queue)
            if g.json:
                out.emit_json({"would_" + verb: len(ids), "run_ids": ids[:20], "dry_run": True})
            else:
                shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
                typer.echo(
                    f"would {verb} {len(ids)} run(s){': ' + shown if ids else ''}; "
                    "add --yes to do it"
                )
            return
        with out.progress(f"{verb}ing", "runs") as bar:
            if verb == "cancel":
                n = app.cancel_runs(state, task, queue, progress=bar)
                result: dict[str, Any] = {"canceled": n}
            else:
                assert state is not None
                handles = [h.run_id for h in app.rerun_runs(state, task, queue, progress=bar)]
                result = {"rerun": len(handles), "run_ids": handles}
    if g.json:
        out.emit_json(result)
    else:
        typer.echo(
            f"{'canceled' if verb == 'cancel' else 'rerun'} {next(iter(result.values()))} run(s)"
        )


QueueOpt = Annotated[
    str | None,
    typer.Option(
        "--queue",
        metavar="QUEUE",
        help="Only this queue: its runs are not leased while it is paused (others go on).",
    ),
]


@handle_errors
def resume(
    ctx: typer.Context,
    run_id: Annotated[
        str | None,
        typer.Argument(
            metavar="RUN_ID",
            help="A suspended run to move back to ready. Without it: resume the engine.",
            show_default=False,
        ),
    ] = None,
    queue: QueueOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Resume a suspended run, or, without RUN_ID, the engine (--queue: one queue).

    With RUN_ID: move that suspended run back to ready (exit 1 when it is not suspended; --json: the run). Without: resume a paused engine, or queue, so workers lease its runs again (--json: {"paused": false, "changed": bool[, "queue": Q]})."""
    g = globals_of(ctx, store, json_out)
    if run_id is None:
        _set_paused(g, False, queue)
        return
    if queue is not None:
        raise CliError("give either a RUN_ID or --queue, not both")
    with open_app(g, create=False) as app:
        done = app.run(run_id).resume()
        info = app.get_run(run_id)
    if not done:
        fail(f"run {run_id} is {info.state}, not suspended; nothing to resume", EXIT_NOT_DONE)
    if g.json:
        out.emit_json(out.run_json(info))
    else:
        typer.echo(f"resumed {run_id}")


@handle_errors
def rerun(
    ctx: typer.Context,
    run_id: Annotated[
        str | None,
        typer.Argument(
            metavar="RUN_ID",
            help="The run whose task and arguments to run again. Without it: the runs --state/--task/--queue select.",
            show_default=False,
        ),
    ] = None,
    state: StateOpt = None,
    task: TaskOpt = None,
    queue: BulkQueueOpt = None,
    yes: YesOpt = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Submit a new run of the same task and arguments as RUN_ID and print its id; or, with --state (e.g. failed), --task, --queue instead, rerun every run they select.

    RUN_ID may be in any state. --json: the new run, whose rerun_of is RUN_ID. In bulk, without --yes: print how many runs would be rerun and change nothing; with --yes: rerun them, with progress on a terminal (--json: {"rerun": N, "run_ids": [...]})."""
    g = globals_of(ctx, store, json_out)
    if run_id is None:
        _bulk(g, "rerun", state, task, queue, yes)
        return
    if state is not None or task is not None or queue is not None:
        raise CliError("give either a RUN_ID or --state/--task/--queue, not both")
    with open_app(g, create=False) as app:
        new = app.run(run_id).rerun()
        if g.json:
            out.emit_json(out.run_json(app.get_run(new.run_id)))
        else:
            typer.echo(new.run_id)


def _workflow_run(app: App, id_: str) -> RunInfo:
    """The run an execution id or a run id names (what ``app.signal`` accepts)."""
    try:
        return app.get_execution(id_)
    except UnknownExecution:
        return app.get_run(id_)


@handle_errors
def signal(
    ctx: typer.Context,
    id_: Annotated[
        str,
        typer.Argument(metavar="ID", help="The workflow's execution id, or its run id."),
    ],
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The signal's name, as ms.wait_for(NAME) waits.")
    ],
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            metavar="JSON|@FILE",
            help="The signal's payload, any JSON value (what ms.wait_for returns), or @FILE to read it from a file (@-: standard input); default null.",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="Send at most once per (workflow, KEY): sending again with this key does nothing.",
        ),
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Send the signal NAME to a workflow; an ms.wait_for(NAME) receives it once.

    Durable when it returns. Signals are received in the order sent; one sent before the workflow waits is kept until it does (one sent to a workflow that ended is recorded and never received). Exit 2 when no workflow execution or run has the id, or the payload is not JSON (nothing is written). --json: the run as it is now."""
    g = globals_of(ctx, store, json_out)
    value = parse_payload(payload)  # bad JSON: exit 2 before the store is touched
    with open_app(g, create=False) as app:
        sent = app._send_signal(id_, name, value, idempotency_key)
        info = _workflow_run(app, id_)
    if g.json:
        out.emit_json(out.run_json(info))
        return
    label = f"{info.run_id} (execution {info.execution_id})" if info.execution_id else info.run_id
    if sent:
        typer.echo(f"sent signal {name!r} to {label}; the run is {info.state}")
    else:
        typer.echo(
            f"signal {name!r} with idempotency key {idempotency_key!r} was sent to {label} "
            f"already: not sent again; the run is {info.state}"
        )


def _set_paused(g: Globals, paused: bool, queue: str | None = None) -> None:
    with open_app(g, create=True) as app:
        changed = app.pause(queue) if paused else app.resume(queue)
    what = "engine" if queue is None else f"queue {queue!r}"
    if g.json:
        out.emit_json(
            {"paused": paused, "changed": bool(changed)}
            | ({} if queue is None else {"queue": queue})
        )
    elif paused:
        typer.echo(f"{what} paused" if changed else f"{what} was already paused")
    else:
        typer.echo(f"{what} resumed" if changed else f"{what} was not paused")


@handle_errors
def pause(
    ctx: typer.Context, queue: QueueOpt = None, store: StoreOpt = None, json_out: JsonOpt = False
) -> None:
    """Pause the engine, or with --queue one queue: no worker leases anything (from it) until `mainspring resume [--queue Q]`.

    --json: {"paused": true, "changed": bool[, "queue": Q]}."""
    _set_paused(globals_of(ctx, store, json_out), True, queue)


@handle_errors
def migrate(ctx: typer.Context, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Create or migrate the store's schema and print its schema version.

    Migrates a PostgreSQL store whose URL says auto_migrate=false too. --json: {"store": URL, "schema_version": N}."""
    g = globals_of(ctx, store, json_out)
    with contextlib.closing(App(g.store).open(migrate=True)) as app:
        version = app.schema_version()
        shown = app.store.display_url
    if g.json:
        out.emit_json({"store": shown, "schema_version": version})
    else:
        typer.echo(f"{shown}: schema version {version}")
