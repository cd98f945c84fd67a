"""The options every command takes (``--store URL``, ``--json``), how flags are declared, and
how a JSON payload is read.

``--store`` and ``--json`` may stand before or after the subcommand: ``split_globals``
moves them in front before typer parses, and every command declares them too, so
``mainspring runs --json`` also works when the typer app is invoked directly (tests).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
import typer

from ._errors import CliError

STORE_HELP = (
    "Store URL, e.g. sqlite:///mainspring.db or sqlite:////abs/path.db. Default: the "
    "MAINSPRING_STORE environment variable, then sqlite:///mainspring.db. May be given "
    "before or after the subcommand."
)
JSON_HELP = (
    "Print machine-readable JSON instead of tables. May be given before or after the subcommand."
)


def flag(*names: str, help: str, **kwargs: Any) -> Any:
    """A boolean flag (``--burst``), shown in help without a value placeholder (typer would
    print ``<bool>`` beside it, as if it took a value)."""
    return typer.Option(*names, help=help, metavar="", **kwargs)


StoreOpt = Annotated[
    str | None, typer.Option("--store", metavar="URL", help=STORE_HELP, show_default=False)
]
JsonOpt = Annotated[bool, flag("--json", help=JSON_HELP)]


class Globals(msgspec.Struct):
    """The global options as they apply to one command."""

    store: str | None = None
    json: bool = False


def globals_of(ctx: typer.Context, store: str | None, json_out: bool) -> Globals:
    """The global options of this command: its own, else those given before it."""
    root = ctx.find_root().obj
    g = root if isinstance(root, Globals) else Globals()
    return Globals(store=store or g.store, json=json_out or g.json)


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


def parse_payload(text: str | None) -> Any:
    """``--payload``: any JSON value, or ``@FILE`` (``@-``: standard input) to read it from
    there, as curl does: a shell passes no argument near the payload limit. None when not
    given; CliError (exit 2) when it is not JSON, before anything is opened or written."""
    if text is None:
        return None
    if text.startswith("@"):  # (no JSON value starts with @)
        path = text[1:]
        try:
            if path == "-":
                text = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--payload {text}: cannot read it: {exc}") from None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise CliError(
            f"--payload is not valid JSON ({exc}): {text!r}; e.g. --payload '{{\"order\": 42}}'"
        ) from None
