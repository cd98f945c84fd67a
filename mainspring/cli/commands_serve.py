"""``mainspring serve``: the HTTP service over one store (docs/service.md), with the
workers of an App in the same process when one is given."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from typing import Annotated, Any

import typer

from ..app import App
from ._app import load_app, use_store
from ._errors import CliError, handle_errors
from ._options import JsonOpt, StoreOpt, globals_of
from ._peers import Peers


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
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            "-p",
            metavar="N",
            min=1,
            help="Server processes sharing the port, each with its own connection to the store (requests are spread over them; the APP's workers run in the first only; the first replaces another that exits).",
        ),
    ] = 1,
    listen_fd: Annotated[
        int | None, typer.Option("--listen-fd", hidden=True, help="(a peer of --processes)")
    ] = None,
    ready_fd: Annotated[
        int | None, typer.Option("--ready-fd", hidden=True, help="(a peer of --processes)")
    ] = None,
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
    if app_spec is not None:
        use_store(app, g, "serve")
    if listen_fd is not None:  # a peer process of --processes: serve the shared socket
        if app_spec is not None:
            app.set_store(os.environ["MAINSPRING_STORE"])
        _serve_as_peer(app, tokens, listen_fd, ready_fd)
        return
    peers: Peers | None = None
    try:
        app.open()
        try:
            server = BackgroundServer(create_app(app, tokens), host, port)
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        peer_args = [app_spec] if app_spec else []
        if token_file is not None:
            peer_args += ["--token-file", token_file]
        peers = Peers(processes - 1, server.sock, peer_args, app.store.url)
        with_workers = app_spec is not None and bool(app.declared)
        with app.worker(concurrency=concurrency) if with_workers else contextlib.nullcontext():
            sys.stderr.write(
                f"mainspring serve: {server.url} (API {server.url}/api/v1, docs "
                f"{server.url}/api/docs), store {app.store.display_url}, "
                f"{f'tokens from {token_file}' if tokens else 'no tokens: loopback only'}"
                + (f", {processes} processes" if processes > 1 else "")
                + (
                    f", workers for {len(app.declared)} task(s), concurrency {concurrency}"
                    if with_workers
                    else ""
                )
                + "\n"
            )
            sys.stderr.flush()
            server.run()
    finally:
        if peers is not None:
            peers.stop()
        app.close()


def _serve_as_peer(app: App, tokens: Any, fd: int, ready_fd: int | None) -> None:
    """Serve the first process's socket until told to stop, or until that process is gone
    (even killed: the peer then stops by itself rather than serve on, unsupervised); one
    byte on ``ready_fd`` says it accepts requests."""
    from ..service import BackgroundServer, create_app

    parent = os.getppid()
    try:
        app.open()
        server = BackgroundServer(create_app(app, tokens), sock=socket.socket(fileno=fd))

        def watch() -> None:
            while not (server.server.started or server.server.should_exit):
                time.sleep(0.02)
            if ready_fd is not None:
                with contextlib.suppress(OSError):
                    os.write(ready_fd, b"!")
                    os.close(ready_fd)
            while not server.server.should_exit:
                if os.getppid() != parent:
                    server.request_stop()
                time.sleep(0.5)

        threading.Thread(target=watch, name="mainspring-serve-parent", daemon=True).start()
        server.run()
    finally:
        app.close()
