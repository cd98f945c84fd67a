"""The ``mainspring`` command line (README.md, "Command line"): the entry point.

Thin on purpose: every command parses its options, calls the public API of ``ms.App``
and prints. This module builds the typer app (the global options, the commands in the
order ``--help`` lists them) and runs it; the commands live in ``commands_inspect``
(those that only read), ``commands_operate`` (those that change the store),
``commands_upkeep`` (retention, export and compaction: prune, export, compact),
``commands_messages`` (durable messages: publish, messages, receipts) and
``commands_worker`` (those that run handler code) and ``commands_serve`` (the HTTP
service). ``_options`` holds the global options,
``_app`` opens the App, ``_errors`` turns errors into one line and an exit code, and
``_render`` prints tables and JSON.

Exit codes: 0 ok; 1 the thing asked for could not be done; 2 usage error, unknown id, or
store error. Errors are one line on stderr, never a traceback (``MAINSPRING_DEBUG=1``
gives one for unexpected errors).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from .. import __version__
from . import (
    commands_inspect,
    commands_messages,
    commands_operate,
    commands_serve,
    commands_upkeep,
    commands_worker,
)
from ._errors import (
    EXIT_NOT_DONE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    UsageProblem,
    exit_code_for,
    fail,
    handle_errors,
    one_line,
)
from ._options import Globals, JsonOpt, StoreOpt, flag, split_globals

__all__ = [
    "EXIT_NOT_DONE",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "app",
    "exit_code_for",
    "fail",
    "handle_errors",
    "main",
    "split_globals",
]


class _PlainHelpFlag:
    """Shows ``-h, --help`` in help as the flag it is (typer prints ``<bool>`` beside it)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class Group(_PlainHelpFlag, TyperGroup):
    """The ``mainspring`` group."""


class Command(_PlainHelpFlag, TyperCommand):
    """A ``mainspring`` command."""


app = typer.Typer(
    name="mainspring",
    cls=Group,
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
        flag("--version", help="Print the version and exit.", callback=_version, is_eager=True),
    ] = False,
) -> None:
    """mainspring: a durable task engine (tasks, runs, attempts, leases, an append-only log)."""
    ctx.obj = Globals(store=store, json=json_out)


# The commands, in the order of the README's "Command line" (and of `mainspring --help`).
for _command in (
    commands_worker.demo,
    commands_worker.worker,
    commands_serve.serve,
    commands_operate.submit,
    commands_inspect.runs,
    commands_inspect.run,
    commands_operate.cancel,
    commands_operate.resume,
    commands_operate.rerun,
    commands_operate.signal,
    commands_messages.publish,
    commands_messages.messages,
    commands_messages.receipts,
    commands_inspect.tasks,
    commands_inspect.why,
    commands_inspect.workers,
    commands_inspect.queues,
    commands_inspect.log,
    commands_inspect.stats,
    commands_operate.pause,
    commands_upkeep.prune,
    commands_upkeep.export,
    commands_upkeep.compact,
    commands_inspect.verify,
    commands_operate.migrate,
):
    app.command(_command.__name__, cls=Command)(_command)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: ``mainspring ...``."""
    args = split_globals(sys.argv[1:] if argv is None else argv)
    try:
        rv = app(args=args, prog_name="mainspring", standalone_mode=False)
    except UsageProblem as exc:
        message = exc.format_message().strip()
        if message:  # an empty message: the help was already printed (no arguments)
            sys.stderr.write(f"mainspring: {one_line(message)} (see mainspring --help)\n")
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
