"""``mainspring serve``: the HTTP service over one store (docs/service.md), with the
workers of an App in the same process when one is given."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated

import typer

from ..app import App
from ._app import load_app
from ._errors import CliError, handle_errors
from ._options import JsonOpt, StoreOpt, globals_of


@handle_errors
def serve(
    ctx: typer.Context,
    app_spec: Annotated[
        str | None,
        typer.Argument(
            metavar="[APP]",
            help="module:attribute naming an ms.App whose workers run in this process too (e.g. tasks:app).",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="HOST",
            help="Address to listen on. Without --token-file only a loopback address is allowed.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", min=0, max=65535, help="Port to listen on.")
    ] = 8000,
    token_file: Annotated[
        str | None,
        typer.Option(
            "--token-file",
            metavar="F",
            help="Require 'Authorization: Bearer <token>' on /api: each line of F is '<token> <role>', role viewer (GET only) or operator (everything).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            metavar="N",
            min=1,
            help="Handlers run at once by the APP's workers (with APP).",
        ),
    ] = 8,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Serve the HTTP API (/api/v1), the log stream, metrics and the dashboard over the store, until SIGINT/SIGTERM.

    Without --token-file it listens on loopback only and refuses any other host (exit 2). With APP, the App's workers run in this process (--concurrency N). Needs Litestar and uvicorn: the extra called server."""
    g = globals_of(ctx, store, json_out)
    try:
        from ..service import (
            BackgroundServer,
            TokenFileError,
            create_app,
            is_loopback,
            load_tokens,
        )
    except ImportError as exc:
        raise CliError(
            f"mainspring serve needs the server extra (pip install 'mainspring[server]'): {exc}"
        ) from None
    tokens = None
    if token_file is not None:
        try:
            tokens = load_tokens(token_file)
        except TokenFileError as exc:
            raise CliError(str(exc)) from None
    elif not is_loopback(host):
        raise CliError(
            f"refusing to listen on {host!r} without --token-file: without tokens the service "
            "listens on loopback only (127.0.0.1, ::1, localhost)"
        )
    app = load_app(app_spec) if app_spec is not None else App(g.store)
    if app_spec is not None and g.store:
        app.set_store(g.store)
    try:
        app.open()
        try:
            server = BackgroundServer(create_app(app, tokens), host, port)
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        workers = (
            app.worker(concurrency=concurrency)
            if app_spec is not None and app.declared
            else contextlib.nullcontext()
        )
        with workers:
            sys.stderr.write(
                f"mainspring serve: {server.url} (API {server.url}/api/v1, docs "
                f"{server.url}/api/docs), store {app.store.display_url}, "
                f"{f'tokens from {token_file}' if tokens else 'no tokens: loopback only'}"
                + (
                    f", workers for {len(app.declared)} task(s), concurrency {concurrency}"
                    if app_spec is not None and app.declared
                    else ""
                )
                + "\n"
            )
            sys.stderr.flush()
            server.run()
    finally:
        app.close()
