"""Getting an ``ms.App`` for a command: opening the store of ``--store``, or importing the
App an ``APP`` argument (``module:attribute``) names.

The command line talks to the store through ``ms.App`` only.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from typing import Any

from ..app import App
from ..core.errors import MainspringError
from ._errors import CliError
from ._options import Globals


@contextlib.contextmanager
def open_app(g: Globals, *, create: bool) -> Iterator[App]:
    """An App on the store of ``g``, open for the block and closed afterwards.

    ``create=False`` (commands that only read): a SQLite store whose file does not exist
    is refused with ``StoreError`` naming the path, and nothing is created."""
    app = App(g.store)
    try:
        app.open(create=create)
        yield app
    finally:
        app.close()


def _a(noun: str) -> str:
    """``noun`` with its indefinite article: "an int", "a str"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _describe(obj: Any) -> str:
    if obj is None:
        return "None"
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    return _a(type(obj).__name__)


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (or ``path/to/file.py:attribute``) naming an ``ms.App``,
    with the current directory on ``sys.path``."""
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
        what = "an ms.App instance" if isinstance(obj, type) else "an ms.App"
        raise CliError(f"{spec!r} is {_describe(obj)}, not {what}")
    return obj


def use_store(app: App, g: Globals, command: str) -> None:
    """``--store`` for an App loaded from code: the store resolution order puts a URL given
    in the code first (``App(store)``), then ``--store``, then ``MAINSPRING_STORE``. A
    ``--store`` that is not used is said on stderr, so that it does not go unnoticed."""
    if not g.store:
        return
    given = app.store_given
    if given is None:
        app.set_store(g.store)
    elif given != g.store:
        sys.stderr.write(
            f"mainspring {command}: the App names its own store ({app.store_url}); "
            f"--store {g.store} is not used (a URL given in the code comes first)\n"
        )
