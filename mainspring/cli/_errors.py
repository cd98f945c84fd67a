"""How the command line fails: one line on stderr and its exit code (README.md, "Command line").

Exit codes: 0 ok; 1 the thing asked for could not be done (verify found problems, cancel
of a terminal run, resume of a run that is not suspended, an idempotency conflict, a
permanent rejection: ``PreconditionFailed``); 2 usage error (``InvalidArgument`` included,
and a payload over the size limit: ``Backpressure``), unknown id, or store error. Never a
traceback, unless ``MAINSPRING_DEBUG=1`` asks for one of an unexpected error.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

from ..bus import Backpressure
from ..core.errors import (
    InvalidArgument,
    MainspringError,
    SerializationError,
    StoreError,
    UnknownExecution,
    UnknownRun,
    UnknownTask,
)

try:  # a typer that carries its own click: its usage errors derive from TyperException
    from typer import TyperException as UsageProblem
except ImportError:  # pragma: no cover - an older typer on top of the click package
    from click import ClickException as UsageProblem  # type: ignore[assignment,no-redef,import-not-found,unused-ignore]

EXIT_OK = 0
EXIT_NOT_DONE = 1
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "EXIT_NOT_DONE",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "UsageProblem",
    "exit_code_for",
    "fail",
    "handle_errors",
    "one_line",
]


class CliError(Exception):
    """An error the command line reports as one line on stderr with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(exc: MainspringError) -> int:
    """The exit code of a mainspring error (README.md, "Command line")."""
    if isinstance(
        exc,
        StoreError
        | UnknownRun
        | UnknownTask
        | UnknownExecution
        | InvalidArgument
        | SerializationError
        | Backpressure,
    ):
        # bad input (InvalidSchedule included; a payload over the size limit), unknown id,
        # store error
        return EXIT_USAGE
    # IdempotencyConflict, InvalidTransition, PreconditionFailed (a permanent rejection),
    # ...: what was asked could not be done
    return EXIT_NOT_DONE


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split()) or "unknown error"


def fail(message: str, code: int) -> NoReturn:
    """Print ``mainspring: message`` as one line on stderr and exit with ``code``."""
    sys.stdout.flush()
    sys.stderr.write(f"mainspring: {one_line(message)}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Wrap a command: its errors become one line on stderr and the contract's exit code."""

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
        except (typer.Exit, typer.Abort, UsageProblem, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("MAINSPRING_DEBUG"):
                raise
            fail(
                f"unexpected error: {type(exc).__name__}: {exc} "
                "(set MAINSPRING_DEBUG=1 for a traceback)",
                EXIT_NOT_DONE,
            )

    return wrapper  # type: ignore[return-value]
