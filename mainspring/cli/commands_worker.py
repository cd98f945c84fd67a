"""The commands that run handler code: ``worker`` (the tasks of an App) and ``demo``."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Annotated

import typer

from ..worker import AttemptDone
from . import _render as out
from ._app import load_app, use_store
from ._errors import EXIT_NOT_DONE, CliError, handle_errors
from ._options import JsonOpt, StoreOpt, flag, globals_of


def attempt_printer(json_lines: bool) -> Callable[[AttemptDone], None]:
    """The ``on_attempt`` callback of ``mainspring worker``: one line per finished attempt
    on stdout, flushed at once.

    It runs on the worker's loop thread, so it never raises: once stdout is gone (a
    closed pipe), it stops printing and the worker carries on."""
    lock = threading.Lock()
    broken = False

    def on_attempt(done: AttemptDone) -> None:
        nonlocal broken
        line = out.dumps(out.attempt_json(done)) if json_lines else out.attempt_line(done)
        with lock:
            if broken:
                return
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):  # a closed pipe, or stdout closed
                broken = True

    return on_attempt


@handle_errors
def worker(
    ctx: typer.Context,
    app_spec: Annotated[
        str,
        typer.Argument(
            metavar="APP",
            help="module:attribute naming an ms.App, imported with the current directory on sys.path (e.g. tasks:app).",
        ),
    ],
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", metavar="N", min=1, help="Handlers run at once.")
    ] = 8,
    prefetch: Annotated[
        int,
        typer.Option(
            "--prefetch",
            metavar="N",
            min=0,
            help="Runs leased and started ahead of the handlers, so that a handler that ends is followed at once (see docs/operations.md, 'Prefetch'). On SIGINT/SIGTERM they run within the grace period too; if the worker dies, their attempts end as lost and they run elsewhere.",
        ),
    ] = 0,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            "-q",
            metavar="Q",
            help="Serve this queue (repeatable). Default: every queue of the App's tasks.",
        ),
    ] = None,
    burst: Annotated[
        bool,
        flag(
            "--burst",
            help="Exit once nothing is left for this worker: no run of its tasks and queues "
            "is ready, leased, running, in retry_wait or due (or the engine or its queue is paused).",
        ),
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            metavar="S",
            min=0,
            help="On SIGINT/SIGTERM, let running handlers finish for S seconds, then release the rest.",
        ),
    ] = 10.0,
    quiet: Annotated[
        bool,
        flag(
            "--quiet",
            help="Print no line per finished attempt, nor the start line; warnings still go to stderr.",
        ),
    ] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a worker for the tasks of APP until SIGINT/SIGTERM (--burst: until nothing is left for it).

    Prints one line per finished attempt on stdout: task, run id, result, duration, the attempt number and, if any, the error. With --json each line is a JSON object with task_name, run_id, attempt, result, duration (seconds) and error. --quiet prints none. --store gives the store of an App whose code names none (ms.App()); a URL given in the code comes first (said on stderr when --store differs)."""
    g = globals_of(ctx, store, json_out)
    app = load_app(app_spec)
    use_store(app, g, "worker")
    if not app.declared:
        raise CliError(f"{app_spec!r} declares no tasks (@app.task); nothing to work on")
    queues = list(queue) if queue else None
    try:
        if not quiet and not g.json:
            shown = ", ".join(queues) if queues else "all of its tasks' queues"
            sys.stderr.write(
                f"mainspring worker: {len(app.declared)} task(s) from {app_spec}, store "
                f"{app.store.display_url}, queues: {shown}, concurrency {concurrency}"
                f"{f', prefetch {prefetch}' if prefetch else ''}{', burst' if burst else ''}\n"
            )
            sys.stderr.flush()
        app.run_worker(
            concurrency=concurrency,
            prefetch=prefetch,
            grace_seconds=grace,
            queues=queues,
            burst=burst,
            on_attempt=None if quiet else attempt_printer(g.json),
        )
        if burst and not app.is_idle():
            why = (
                "the engine is paused"
                if app.paused()
                else "they belong to tasks or queues it does not serve, or to paused queues"
            )
            sys.stderr.write(
                f"mainspring worker: stopped with runs left that it cannot do ({why}); "
                "see `mainspring stats`\n"
            )
    finally:
        app.close()


@handle_errors
def demo(
    ctx: typer.Context,
    keep: Annotated[
        bool,
        flag(
            "--keep",
            help="Keep the temporary directory (store and demo app) and print how to explore it.",
        ),
    ] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A short demonstration on a fresh embedded store: retries, a crash-and-recover, a keyed task, a schedule, a workflow.

    Uses a new store in a temporary directory (an explicit --store is used instead, if given). Exits 0 when every scenario behaved as promised."""
    from ._demo import run_demo

    g = globals_of(ctx, store, json_out)
    ok = run_demo(store=g.store, json_out=g.json, keep=keep)
    if not ok:
        raise typer.Exit(EXIT_NOT_DONE)
