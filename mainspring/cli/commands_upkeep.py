"""The commands that keep a store small over years: ``prune`` (retention), ``export`` (the
log as JSON lines, to archive it) and ``compact`` (a snapshot, then the log up to it
deleted). Workers keep working while they run; each shows progress on a terminal."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..core.errors import LogCompacted
from . import _render as out
from ._app import open_app
from ._errors import CliError, handle_errors
from ._options import JsonOpt, StoreOpt, flag, globals_of

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(text: str) -> float:
    """``30d``, ``12h``, ``15m``, ``90s``, ``2w`` or a number of seconds."""
    t = text.strip().lower()
    try:
        return float(t[:-1]) * _UNITS[t[-1]] if t and t[-1] in _UNITS else float(t)
    except ValueError:
        raise CliError(
            f"--older-than {text!r} is not a duration: use e.g. 30d, 12h, 15m, 90s or seconds"
        ) from None


@handle_errors
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Remove the runs that ended more than AGE ago: 30d, 12h, 15m, 90s or seconds.",
        ),
    ],
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="STATE",
            help="Only runs that ended so (repeatable); default completed, failed and canceled.",
        ),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", metavar="NAME", help="Only runs of this task.")
    ] = None,
    dry_run: Annotated[
        bool, flag("--dry-run", help="Print how many runs would go; change nothing.")
    ] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove runs that ended more than AGE ago, and the tasks left with no run, through events (run.pruned, task.pruned): the log keeps their history and verify still holds.

    Works a page of runs per transaction, with progress on a terminal. --json: {"pruned": N} (or {"would_prune": N} with --dry-run)."""
    g = globals_of(ctx, store, json_out)
    age = _duration(older_than)
    states = state or ["completed", "failed", "canceled"]
    with open_app(g, create=False) as app, out.progress("pruning", "runs") as bar:
        n = app.prune(age, states, task, dry_run=dry_run, progress=bar)
    key = "would_prune" if dry_run else "pruned"
    if g.json:
        out.emit_json({key: n})
    else:
        typer.echo(f"{'would prune' if dry_run else 'pruned'} {n} run(s)")


#: events read per query of ``export``
_EXPORT_PAGE = 2000


@handle_errors
def export(
    ctx: typer.Context,
    since: Annotated[
        int | None,
        typer.Option(
            "--since",
            metavar="SEQ",
            min=0,
            help="Only events with seq greater than SEQ (default: from the first one kept).",
        ),
    ] = None,
    until: Annotated[
        int | None,
        typer.Option("--until", metavar="SEQ", min=0, help="Only events with seq up to SEQ."),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Write the log as JSON lines on stdout, oldest first (the objects `log --json` prints): archive it before `compact`.

    Without --since, from the first event the log still holds; a --since before it (events
    compaction removed), or an --until before it, exits 1 naming where the log starts."""
    g = globals_of(ctx, store, False)
    if since is not None and until is not None and until <= since:
        raise CliError(f"--until {until} is not after --since {since}: no event is between")
    with open_app(g, create=False) as app:
        with app.store.read() as tx:
            first, last = tx.first_seq(), tx.last_seq()
        if since is None and until is not None and first > 1 and until < first:
            # every event asked for is gone: an empty archive would look like a complete one
            raise LogCompacted(
                f"events 1..{until} were removed from the log by compaction; it now starts "
                f"at seq {first}",
                first_seq=first,
            )
        after = first - 1 if since is None else since
        end = last if until is None else min(until, last)
        with out.progress("exporting", "events") as bar:
            while after < end:
                events = app.log(since=after, limit=min(_EXPORT_PAGE, end - after))
                if not events:
                    break
                for e in events:
                    sys.stdout.write(out.dumps(out.event_json(e)) + "\n")
                after = events[-1].seq
                if bar is not None:
                    bar(after - first + 1, end - first + 1)
        sys.stdout.flush()


@handle_errors
def compact(ctx: typer.Context, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Write a snapshot of the whole state, then delete the log up to it: the log shrinks (on SQLite the file keeps its size, its freed pages reused), `verify` replays from the snapshot, and `log` before it says the events were compacted (export them first to keep them).

    --json: {"snapshot_seq": N, "first_seq": N}."""
    g = globals_of(ctx, store, json_out)
    with open_app(g, create=False) as app, out.progress("compacting", "events") as bar:
        seq = app.compact(progress=bar)
        with app.store.read() as tx:
            first = tx.first_seq()
    if g.json:
        out.emit_json({"snapshot_seq": seq, "first_seq": first})
    else:
        typer.echo(f"snapshot at seq {seq}; the log now starts at seq {first}")
