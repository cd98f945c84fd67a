"""The ``mainspring`` command line (CONTRACT section 6).

Thin on purpose: every command parses its options, calls the public API of ``ms.App``
and prints. ``--store URL`` and ``--json`` are accepted anywhere on the line: ``main``
moves them in front of the subcommand before typer parses, and each command also declares
them so ``mainspring runs --json`` works when the typer app is invoked directly.

Exit codes: 0 ok; 1 the thing asked for could not be done (verify found problems, cancel
of a terminal run, an idempotency conflict); 2 usage error, unknown id, or store error.
Errors are one line on stderr, never a traceback (set ``MAINSPRING_DEBUG=1`` to get one
for unexpected errors).
"""

import contextlib
import functools
import importlib
import importlib.util
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, NoReturn, TypeVar

import msgspec
import typer

from .. import __version__
from ..app import App
from ..core.errors import (
    InvalidSchedule,
    MainspringError,
    SerializationError,
    StoreError,
    UnknownRun,
)
from ..core.states import RunState
from ..store.base import Store, open_store
from . import _render as out

try:  # typer >= 0.23 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException  # type: ignore[no-redef,import-not-found,unused-ignore]

EXIT_OK = 0
EXIT_NOT_DONE = 1
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """An error the command line reports as one line on stderr with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(exc: MainspringError) -> int:
    """Map a mainspring error to the exit code of CONTRACT section 6."""
    if isinstance(exc, StoreError | UnknownRun | InvalidSchedule | SerializationError):
        return EXIT_USAGE  # bad input, unknown id, store error
    return EXIT_NOT_DONE  # IdempotencyConflict, InvalidTransition, ...: could not be done


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def fail(message: str, code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.write(f"mainspring: {_one_line(message)}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn errors into one line on stderr and the contract's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            fail(str(exc), exc.code)
        except MainspringError as exc:
            fail(str(exc), exit_code_for(exc))
        except BrokenPipeError:
            # stdout went away (``mainspring log | head``): not an error of ours.
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            raise typer.Exit(EXIT_OK) from None
        except (typer.Exit, typer.Abort, ClickException, KeyboardInterrupt):
            raise
        except sqlite3.Error as exc:
            fail(f"store error: {exc}", EXIT_USAGE)
        except Exception as exc:
            if os.environ.get("MAINSPRING_DEBUG"):
                raise
            fail(
                f"unexpected error: {type(exc).__name__}: {exc} (set MAINSPRING_DEBUG=1 for a traceback)",
                EXIT_NOT_DONE,
            )

    return wrapper  # type: ignore[return-value]


# -- global options ---------------------------------------------------------------------------
STORE_HELP = (
    "Store URL, e.g. sqlite:///mainspring.db or sqlite:////abs/path.db. Default: the "
    "MAINSPRING_STORE environment variable, then sqlite:///mainspring.db. May be given "
    "before or after the subcommand."
)
JSON_HELP = (
    "Print machine-readable JSON instead of tables. May be given before or after the subcommand."
)

StoreOpt = Annotated[
    str | None, typer.Option("--store", metavar="URL", help=STORE_HELP, show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


class Globals(msgspec.Struct):
    store: str | None = None
    json: bool = False


def _globals(ctx: typer.Context, store: str | None, json_out: bool) -> Globals:
    root = ctx.find_root().obj
    g = root if isinstance(root, Globals) else Globals()
    return Globals(store=store or g.store, json=json_out or g.json)


@contextlib.contextmanager
def open_app(g: Globals) -> Iterator[App]:
    """Open the store (creating or migrating its schema); close it afterwards."""
    app = App(g.store)
    try:
        yield app
    finally:
        app.close()


def split_globals(argv: Sequence[str]) -> list[str]:
    """Move ``--store URL``, ``--store=URL`` and ``--json`` in front of the subcommand.

    Scanning stops at ``--``. A ``--store`` with no value is left where it is, so the
    parser reports it.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        if a == "--json":
            if "--json" not in front:
                front.append("--json")
        elif a.startswith("--store="):
            front.append(a)
        elif a == "--store" and i + 1 < len(args):
            front.extend([a, args[i + 1]])
            i += 1
        else:
            rest.append(a)
        i += 1
    return front + rest


# -- the typer app ----------------------------------------------------------------------------
app = typer.Typer(
    name="mainspring",
    help=(
        "mainspring: a durable task engine. Inspect and operate a store: submit runs, run "
        "workers, read the log, verify that the log replays to the stored state."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mainspring {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def root(
    ctx: typer.Context,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    """mainspring: a durable task engine (tasks, runs, attempts, leases, an append-only log)."""
    ctx.obj = Globals(store=store, json=json_out)


# -- submit -----------------------------------------------------------------------------------
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


@app.command()
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
    """Submit one run of TASK_NAME and print its run id (--json: the run). Needs no handler code."""
    g = _globals(ctx, store, json_out)
    a = _parse_json(args, "--args", list)
    k = _parse_json(kwargs, "--kwargs", dict)
    with open_app(g) as ms_app:
        handle = ms_app.submit(
            task_name,
            a or [],
            k or {},
            idempotency_key=idempotency_key,
            execution_id=execution_id,
            correlation_id=correlation_id,
            delay=delay,
            priority=priority,
            queue=queue,
            concurrency_key=concurrency_key,
        )
        if ms_app.engine.definition(task_name) is None:
            sys.stderr.write(
                f"mainspring submit: no App has declared {task_name!r} in this store yet: the "
                "run has the default options and waits for a worker that declares it\n"
            )
        if g.json:
            out.emit_json(out.run_json(ms_app.get_run(handle.run_id)))
        else:
            typer.echo(handle.run_id)


# -- queries ----------------------------------------------------------------------------------
@app.command()
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
            "--limit", metavar="N", min=1, help="At most N runs (oldest scheduled first)."
        ),
    ] = 100,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List runs as a table (--json: an array of runs)."""
    g = _globals(ctx, store, json_out)
    with open_app(g) as ms_app:
        found = ms_app.runs(state=state, task=task, limit=limit)
    if g.json:
        out.emit_json([out.run_json(r) for r in found])
        return
    con = out.console()
    if not found:
        con.print("no runs")
        return
    con.print(out.runs_table(found))


@app.command()
@handle_errors
def run(
    ctx: typer.Context,
    run_id: Annotated[
        str, typer.Argument(metavar="RUN_ID", help="The run's id (as printed by submit or runs).")
    ],
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one run with its attempts and history (--json: the run plus a history array)."""
    g = _globals(ctx, store, json_out)
    with open_app(g) as ms_app:
        info = ms_app.get_run(run_id)
        history = ms_app.log(run_id=run_id, limit=1_000_000)
    if g.json:
        out.emit_json(out.run_json(info, history=[out.event_json(e) for e in history]))
        return
    con = out.console()
    con.print(out.run_details(info))
    con.print()
    if info.attempts:
        con.print(out.attempts_table(info))
    else:
        con.print("no attempts yet")
    con.print()
    con.print(out.history_table(history))


@app.command()
@handle_errors
def cancel(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run to cancel.")],
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cancel a run. Exit 1 when it already ended (completed, failed or canceled)."""
    g = _globals(ctx, store, json_out)
    with open_app(g) as ms_app:
        done = ms_app.run(run_id).cancel()
        info = ms_app.get_run(run_id)
    if g.json:
        out.emit_json(out.run_json(info, canceled=done))
    if not done:
        fail(f"run {run_id} is already {info.state}; nothing to cancel", EXIT_NOT_DONE)
    if not g.json:
        typer.echo(f"canceled {run_id}")


@app.command()
@handle_errors
def log(
    ctx: typer.Context,
    since: Annotated[
        int,
        typer.Option(
            "--since", metavar="SEQ", min=0, help="Only events with seq greater than SEQ."
        ),
    ] = 0,
    run_id: Annotated[
        str | None, typer.Option("--run", metavar="RUN_ID", help="Only the events of this run.")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing new events as they are appended, until Ctrl-C."
        ),
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
    """Print the event log, oldest first (--json: one JSON object per line)."""
    g = _globals(ctx, store, json_out)
    con = out.console()
    with open_app(g) as ms_app:
        if run_id is not None:
            ms_app.get_run(run_id)  # unknown id -> exit 2
        last = since
        printed = 0
        batch = 1000
        try:
            while True:
                want = batch if (follow or limit is None) else min(batch, limit - printed)
                events = ms_app.log(since=last, run_id=run_id, limit=want) if want > 0 else []
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
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return


@app.command()
@handle_errors
def stats(ctx: typer.Context, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Count runs per state (--json: an object of counts per state)."""
    g = _globals(ctx, store, json_out)
    with open_app(g) as ms_app:
        counts = ms_app.stats()
        paused = _paused(ms_app)
    if g.json:
        out.emit_json(counts)
        return
    out.console().print(out.stats_table(counts, paused))


def _paused(ms_app: App) -> bool | None:
    try:
        with ms_app.store.read() as tx:
            return bool(tx.paused())
    except (AttributeError, NotImplementedError):  # pragma: no cover - a store without it
        return None


def _set_paused(ctx: typer.Context, store: str | None, json_out: bool, paused: bool) -> None:
    g = _globals(ctx, store, json_out)
    with open_app(g) as ms_app:
        changed = ms_app.pause() if paused else ms_app.resume()
    if g.json:
        out.emit_json({"paused": paused, "changed": bool(changed)})
    elif paused:
        typer.echo("engine paused" if changed else "engine was already paused")
    else:
        typer.echo("engine resumed" if changed else "engine was not paused")


@app.command()
@handle_errors
def pause(ctx: typer.Context, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Pause the engine: no worker leases anything until `mainspring resume`."""
    _set_paused(ctx, store, json_out, True)


@app.command()
@handle_errors
def resume(ctx: typer.Context, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Resume a paused engine: workers lease runs again."""
    _set_paused(ctx, store, json_out, False)


@app.command()
@handle_errors
def verify(ctx: typer.Context, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Replay the log through the reducer and compare with the stored state; exit 1 on any difference."""
    g = _globals(ctx, store, json_out)
    with open_app(g) as ms_app, out.progress("replaying the log", "events") as progress:
        report = ms_app.verify(progress)
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


@app.command()
@handle_errors
def migrate(ctx: typer.Context, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Create or migrate the store's schema and print its schema version."""
    g = _globals(ctx, store, json_out)
    opened = open_store(g.store, migrate=True)
    try:
        url = opened.display_url
        version = _schema_version(opened)
    finally:
        opened.close()
    if g.json:
        out.emit_json({"store": url, "schema_version": version})
    else:
        typer.echo(f"{url}: schema version {version}")


def _schema_version(store: Store) -> int | None:
    version = getattr(store, "schema_version", None)
    if version is None:
        version = getattr(sys.modules.get(type(store).__module__), "SCHEMA_VERSION", None)
    return None if version is None else int(version)


# -- worker -----------------------------------------------------------------------------------
def load_app(spec: str) -> App:
    """Import ``module:attribute`` (or ``path/to/file.py:attribute``) naming an ``ms.App``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(
            f"APP must be module:attribute naming an ms.App (e.g. myproject.tasks:app), got {spec!r}"
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        if module_name.endswith(".py"):
            path = os.path.abspath(module_name)
            if not os.path.isfile(path):
                raise CliError(f"cannot import {spec!r}: no file {path!r}")
            name = os.path.splitext(os.path.basename(path))[0]
            mspec = importlib.util.spec_from_file_location(name, path)
            if mspec is None or mspec.loader is None:
                raise CliError(f"cannot import {spec!r}: {path!r} is not a Python module")
            module = importlib.util.module_from_spec(mspec)
            sys.modules[name] = module
            mspec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except (CliError, MainspringError):
        raise
    except (Exception, SystemExit) as exc:  # (a module that calls sys.exit() as it loads)
        raise CliError(
            f"cannot import {module_name!r} (from {spec!r}): {type(exc).__name__}: {exc}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"{spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, App):
        raise CliError(f"{spec!r} is a {type(obj).__name__}, not an ms.App")
    return obj


def _sqlite_path(url: str) -> str | None:
    if not url.startswith("sqlite:///"):
        return None
    return os.path.abspath(url[len("sqlite:///") :].split("?", 1)[0])


def same_store(a: str, b: str) -> bool:
    pa, pb = _sqlite_path(a), _sqlite_path(b)
    if pa is not None and pb is not None:
        return pa == pb and a.partition("?")[2] == b.partition("?")[2]
    return a == b


@app.command()
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
        typer.Option(
            "--burst",
            help="Exit once nothing is left for this worker: no run of its tasks and queues "
            "is ready, leased, running, in retry_wait or due (or the engine is paused).",
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
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a worker for the tasks of APP until SIGINT/SIGTERM (--burst: until nothing is left for it).

    With --store, the App's store is that URL: MAINSPRING_STORE is set before APP is imported (so an App() without a store argument picks it up), and an App created with another store URL is re-pointed at it.
    """
    g = _globals(ctx, store, json_out)
    if g.store:
        os.environ["MAINSPRING_STORE"] = g.store
    ms_app = load_app(app_spec)
    if g.store and not same_store(ms_app.store.url, g.store):
        ms_app.reopen(g.store)
    if not ms_app.tasks:
        raise CliError(f"{app_spec!r} declares no tasks (@app.task); nothing to work on")
    queues = list(queue) if queue else None
    if not g.json:
        shown = ", ".join(queues) if queues else "all of its tasks' queues"
        sys.stderr.write(
            f"mainspring worker: {len(ms_app.tasks)} task(s) from {app_spec}, store {ms_app.store.display_url}, "
            f"queues: {shown}, concurrency {concurrency}{', burst' if burst else ''}\n"
        )
        sys.stderr.flush()
    try:
        ms_app.run_worker(concurrency=concurrency, grace_seconds=grace, queues=queues, burst=burst)
        if burst and not g.json and not ms_app.engine.is_idle():
            why = (
                "the engine is paused"
                if ms_app.engine.paused()
                else "they belong to tasks or queues it does not serve"
            )
            sys.stderr.write(
                f"mainspring worker: stopped with runs left that it cannot do ({why}); "
                "see `mainspring stats`\n"
            )
    finally:
        ms_app.close()


# -- demo -------------------------------------------------------------------------------------
@app.command()
@handle_errors
def demo(
    ctx: typer.Context,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Keep the temporary directory (store and demo app) and print how to explore it.",
        ),
    ] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A short demonstration on a fresh embedded store: retries, a crash-and-recover, a keyed task, a schedule.

    Uses a new store in a temporary directory (an explicit --store is used instead, if given). Exits 0 when every scenario behaved as promised.
    """
    from ._demo import run_demo

    g = _globals(ctx, store, json_out)
    ok = run_demo(store=g.store, json_out=g.json, keep=keep)
    if not ok:
        raise typer.Exit(EXIT_NOT_DONE)


# -- entry point ------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: ``mainspring ...``."""
    args = split_globals(sys.argv[1:] if argv is None else argv)
    try:
        rv = app(args=args, prog_name="mainspring", standalone_mode=False)
    except ClickException as exc:
        message = exc.format_message().strip()
        if message:  # an empty message: the help was already printed (no arguments)
            sys.stderr.write(f"mainspring: {_one_line(message)} (see mainspring --help)\n")
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("mainspring: interrupted\n")
        code = 130
    except typer.Exit as exc:
        code = exc.exit_code
    else:
        code = rv if isinstance(rv, int) else EXIT_OK
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
