"""The commands that only read: ``runs``, ``run``, ``log``, ``stats``, ``verify``, ``why``,
``tasks``, ``workers``.

None of them creates a store: each opens it with ``create=False``, so a SQLite path with
no file exits 2 naming the path and leaves nothing behind.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from ..core.errors import LogCompacted
from ..core.states import RunState
from . import _render as out
from ._app import open_app
from ._errors import EXIT_NOT_DONE, handle_errors
from ._options import Globals, JsonOpt, StoreOpt, flag, globals_of
from .commands_messages import delivery_of, show_delivery

T = TypeVar("T")


def _show_list(
    g: Globals,
    found: list[T],
    as_json: Callable[[T], Any],
    table: Callable[[list[T]], Any],
    empty: str,
) -> None:
    """A list of records: a JSON array with --json, else a table (or ``empty``)."""
    if g.json:
        out.emit_json([as_json(x) for x in found])
    elif not found:
        out.console().print(empty)
    else:
        out.console().print(table(found))


RunIdArg = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="The run's id (as printed by submit or runs).")
]


@handle_errors
def runs(
    ctx: typer.Context,
    state: Annotated[
        RunState | None,
        typer.Option("--state", help="Only runs in this state.", case_sensitive=False),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", metavar="NAME", help="Only runs of this task name.")
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            metavar="N",
            min=1,
            help="At most N runs (the earliest scheduled first; --latest: the latest).",
        ),
    ] = 100,
    latest: Annotated[
        bool, flag("--latest", help="The latest scheduled first (the most recent runs).")
    ] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List runs as a table (--json: an array of runs)."""
    g = globals_of(ctx, store, json_out)
    with open_app(g, create=False) as app:
        found = app.runs(state=state, task=task, limit=limit, order="desc" if latest else "asc")
    _show_list(g, found, out.run_json, out.runs_table, "no runs")


@handle_errors
def run(
    ctx: typer.Context,
    run_id: RunIdArg,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one run with its attempts and history (--json: the run plus a history array).

    A workflow run shows its steps (number, name, state, attempts, output or error) and its sleeps and waits (kind, what for, until, state, timed out), and the run ids of the children it started. --json adds the arrays steps, waits and children (empty for a plain task's run). A delivery run (a subscriber's) shows its message (topic, sequence, event id, correlation) and its receipt, once the delivery ended; --json adds the objects message and receipt (null for other runs). A failed run and each failed attempt show their failure and retry class."""
    g = globals_of(ctx, store, json_out)
    with open_app(g, create=False) as app:
        info = app.get_run(run_id)
        handle = app.run(run_id)
        history, steps = handle.history(), handle.steps()
        # (no public query lists a run's waits and children: the engine's own reads)
        waits = app.engine.waits(run_id)
        children = list(app.engine.get_run(run_id).children)
        message, receipt = delivery_of(app, info)
    if g.json:
        out.emit_json(
            out.run_json(
                info,
                message=None if message is None else out.plain(message),
                receipt=None if receipt is None else out.plain(receipt),
                steps=[out.plain(st) for st in steps],
                waits=[out.wait_json(w) for w in waits],
                children=children,
                history=[out.event_json(e) for e in history],
            )
        )
        return
    con = out.console()
    con.print(out.run_details(info, children))
    con.print()
    if message is not None:
        show_delivery(message, receipt)
    if info.attempts:
        con.print(out.attempts_table(info))
    else:
        con.print("no attempts yet")
    con.print()
    if steps:
        con.print(out.steps_table(steps))
        con.print()
    if waits:
        con.print(out.waits_table(waits))
        con.print()
    con.print(out.history_table(history))


@handle_errors
def why(
    ctx: typer.Context,
    run_id: RunIdArg,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Explain why a run is where it is (--json: the Explanation).

    Prints the run's state, then each reason, most decisive first. The JSON object has run_id, state and reasons, each with code, text and data."""
    g = globals_of(ctx, store, json_out)
    with open_app(g, create=False) as app:
        explanation = app.why(run_id)
    if g.json:
        out.emit_json(out.plain(explanation))
        return
    out.console().print(out.why_text(explanation), soft_wrap=True)


@handle_errors
def tasks(
    ctx: typer.Context,
    all_: Annotated[
        bool, flag("--all", help="Canceled tasks too (default: active tasks only).")
    ] = False,
    limit: Annotated[
        int,
        typer.Option("--limit", metavar="N", min=1, help="At most N tasks (oldest first)."),
    ] = 100,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List tasks with their policy and next occurrence (--json: an array of tasks).

    The table shows each task's id, name, policy, state, next occurrence (repeat and cron tasks) and run counts per state. Active tasks only, unless --all."""
    g = globals_of(ctx, store, json_out)
    with open_app(g, create=False) as app:
        found = app.tasks(active=not all_, limit=limit)
    empty = "no tasks" if all_ else "no active tasks (--all: canceled ones too)"
    _show_list(g, found, out.plain, out.tasks_table, empty)


@handle_errors
def workers(ctx: typer.Context, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """List the live workers (--json: an array of workers).

    A worker is live while it heartbeats: it registers in the store when it starts and leaves it when it stops."""
    g = globals_of(ctx, store, json_out)
    with open_app(g, create=False) as app:
        found = app.workers()
    empty = "no live workers (start one with `mainspring worker APP`)"
    _show_list(g, found, out.plain, out.workers_table, empty)


@handle_errors
def queues(ctx: typer.Context, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """List the queues: paused or not, their runs by state, and how long the oldest ready run has waited (--json: an array of queues)."""
    g = globals_of(ctx, store, json_out)
    with open_app(g, create=False) as app:
        found = app.queues()
    _show_list(g, found, out.plain, out.queues_table, "no queues (no run was submitted yet)")


@handle_errors
def log(
    ctx: typer.Context,
    since: Annotated[
        int | None,
        typer.Option(
            "--since",
            metavar="SEQ",
            min=0,
            help="Only events with seq greater than SEQ (default: from the first event the log still holds).",
            show_default=False,
        ),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run", metavar="RUN_ID", help="Only the events of this run.")
    ] = None,
    follow: Annotated[
        bool,
        flag("--follow", "-f", help="Keep printing new events as they are appended, until Ctrl-C."),
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", metavar="N", min=1, help="Print at most N events (without --follow)."
        ),
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print the event log, oldest first (--json: one JSON object per line).

    Without --since, from the first event the log still holds (as `export`); a --since
    before it, asking for events compaction removed, exits 1. With --follow, a compaction
    that passes the follower once it has caught up is said on stderr, and it goes on from
    the first event kept."""
    g = globals_of(ctx, store, json_out)
    con = out.console()
    with open_app(g, create=False) as app:
        if run_id is not None:
            app.get_run(run_id)  # unknown id -> exit 2
        last = 0 if since is None else since
        printed = 0
        batch = 1000
        caught_up = False  # (following: the log read to its end once)
        try:
            while True:
                want = batch if (follow or limit is None) else min(batch, limit - printed)
                try:
                    events = app.log(since=last, run_id=run_id, limit=want) if want > 0 else []
                except LogCompacted as exc:
                    if since is None and not printed and not caught_up:
                        last = exc.first_seq - 1  # no start asked for: the first kept
                        continue
                    if not caught_up:
                        raise  # events asked for are gone: say so (exit 1)
                    # a compaction passed a live follower: go on, as the log stream does
                    typer.echo(
                        f"mainspring log: events {last + 1}..{exc.first_seq - 1} were "
                        "compacted away while following; going on",
                        err=True,
                    )
                    last = exc.first_seq - 1
                    continue
                for e in events:
                    if g.json:
                        sys.stdout.write(out.dumps(out.event_json(e)) + "\n")
                    else:
                        con.print(out.event_line(e), soft_wrap=True)
                    last = e.seq
                printed += len(events)
                sys.stdout.flush()
                if not follow:
                    if len(events) < want or want == 0:
                        break
                    continue
                if len(events) < want:
                    caught_up = True
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return


@handle_errors
def stats(ctx: typer.Context, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Count runs per state (--json: an object of counts per state)."""
    g = globals_of(ctx, store, json_out)
    with open_app(g, create=False) as app:
        counts = app.stats()
        paused = app.paused()
    if g.json:
        out.emit_json(counts)
        return
    out.console().print(out.stats_table(counts, paused))


@handle_errors
def verify(ctx: typer.Context, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Replay the log and compare it with the stored state; exit 1 on any difference.

    Lists every difference found. --json: {"ok": bool, "problems": [...]}."""
    g = globals_of(ctx, store, json_out)
    with open_app(g, create=False) as app, out.progress("replaying the log", "events") as progress:
        report = app.verify(progress)
    if g.json:
        out.emit_json({"ok": bool(report.ok), "problems": list(report.problems)})
    elif report.ok:
        typer.echo("ok: the log replays to the stored state")
    else:
        typer.echo(f"verify found {len(report.problems)} problem(s):")
        for p in report.problems:
            typer.echo(f"  - {p}")
    if not report.ok:
        raise typer.Exit(EXIT_NOT_DONE)
