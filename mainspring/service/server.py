"""The service's Litestar application over one ``ms.App``, and running it with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler

from .. import __version__
from ..app import App
from . import _docs, _errors
from ._auth import Role, TokenAuth
from ._head import HeadAsGet
from .api import api_router
from .follower import LogFollower
from .models import Answer, Health

log = logging.getLogger("mainspring.service")

#: room for the JSON around a payload of ``max_payload_bytes`` in a request body
BODY_OVERHEAD = 64 * 1024
#: how long ``/readyz`` waits for a connection to the store (probes time out at 1-10 s)
READY_SECONDS = 2.0


def _optional(name: str) -> Any:
    """A module of this package that another part of the service may not have added yet."""
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{name}":
            raise  # it exists but something it imports does not: say so
        return None


def _metrics_handlers(app: App, follower: LogFollower) -> list[ControllerRouterHandler]:
    module = _optional("metrics")
    if module is None:
        return []
    metrics = module.Metrics()
    follower.add_listener(metrics.observe)

    @get("/metrics", sync_to_thread=True, include_in_schema=False)
    def metrics_endpoint() -> Response[bytes]:
        """Prometheus text format."""
        body, content_type = metrics.render(app)
        # (the framework adds the charset parameter itself: not twice)
        media_type = ";".join(
            p for p in content_type.split(";") if not p.strip().lower().startswith("charset=")
        )
        return Response(body, media_type=media_type.strip())

    return [metrics_endpoint]


def _dashboard_handlers() -> list[ControllerRouterHandler]:
    module = _optional("dashboard")
    if module is None:
        return []
    found = module.dashboard_router()
    return list(found) if isinstance(found, list | tuple) else [found]


def create_app(
    app: App,
    tokens: Mapping[str, Role] | None = None,
    *,
    follower: LogFollower | None = None,
    max_body_bytes: int | None = None,
) -> Litestar:
    """The service over ``app``: the REST API, the log stream, health, the OpenAPI
    document and docs page, and (when their modules are present) metrics and the
    dashboard. ``tokens``: token -> role (None: no auth; bind to loopback only)."""
    follower = follower or LogFollower(app)

    @get("/healthz", include_in_schema=False)
    async def healthz() -> Health:
        """The process is up."""
        return Health(status="ok")

    @get("/readyz", sync_to_thread=True, include_in_schema=False)
    def readyz() -> Response[Any]:
        """The store answers (a store that cannot be reached is said so within
        READY_SECONDS, before a probe's own timeout)."""
        try:
            app.store.ping(READY_SECONDS)
            app.stats()
        except Exception as exc:
            return _errors.error_response(503, "store_unavailable", f"the store: {exc}")
        return Response(Health(status="ok"))

    @get("/api/docs", include_in_schema=False, media_type=MediaType.HTML)
    async def docs() -> str:
        """A browsable view of the OpenAPI document."""
        return _docs.PAGE

    schema_bytes: list[bytes] = []  # (made on first use: the routes must all be in)

    @get("/api/v1/openapi.json", include_in_schema=False)
    async def openapi_json(request: Request[Any, Any, Any]) -> Response[bytes]:
        """The OpenAPI 3.1 document, generated from the routes and the records."""
        if not schema_bytes:
            schema_bytes.append(msgspec.json.encode(request.app.openapi_schema.to_schema()))
        return Response(schema_bytes[0], media_type=MediaType.JSON)

    handlers: list[ControllerRouterHandler] = [
        openapi_json,
        api_router(app, follower),
        healthz,
        readyz,
        docs,
        *_metrics_handlers(app, follower),
        *_dashboard_handlers(),
    ]
    limit = max_body_bytes or app.max_payload_bytes + BODY_OVERHEAD
    openapi = OpenAPIConfig(
        title="mainspring",
        version=__version__,
        description="The HTTP API of a mainspring store (CONTRACT.md section 11).",
        # (its own routes hold a catch-all that answers HTML: kept off /api, which serves
        # the document itself below)
        path="/_openapi",
        render_plugins=[JsonRenderPlugin(path="/openapi.json")],
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
        ),
        security=[{"bearer": []}] if tokens else None,
        use_handler_docstrings=True,
    )

    def start() -> None:
        follower.start()

    def stop() -> None:
        follower.stop()

    litestar = Litestar(
        route_handlers=handlers,
        openapi_config=openapi,
        exception_handlers={404: _errors.handle, 405: _errors.handle, Exception: _errors.handle},
        on_startup=[start],
        on_shutdown=[stop],
        request_max_body_size=limit,
        response_class=Answer,
        logging_config=None,
        debug=False,
    )
    # tokens are checked before routing, so that a path under /api that does not exist
    # answers 401 to a caller without a token too, not 404 (which would tell it the routes)
    litestar.asgi_handler = TokenAuth(HeadAsGet(litestar.asgi_handler), tokens)
    litestar.state.mainspring_app = app
    litestar.state.follower = follower
    return litestar


def _nothing() -> None:
    pass


class BackgroundServer:
    """uvicorn serving an ASGI app in a thread of this process (tests, benchmarks, and
    ``mainspring serve`` alike); ``port=0`` takes a free port (``.port`` says which).

    When it starts to stop (SIGINT/SIGTERM, or ``stop``), the open ``/log/stream``
    responses of a ``create_app`` app end at once: uvicorn waits for open responses before
    its app shuts down, and would otherwise cancel them, with a traceback each, after its
    graceful timeout."""

    def __init__(
        self, asgi: Any, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None
    ) -> None:
        """Listen on ``host:port``, or serve ``sock``, a socket listening already (one that
        several processes share: ``mainspring serve --processes``)."""
        import uvicorn

        if sock is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(2048)
        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        config = uvicorn.Config(
            asgi,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=2,
            proxy_headers=False,
            server_header=False,
        )
        streams = getattr(getattr(asgi, "state", None), "follower", None)
        end_streams: Callable[[], None] = streams.stop if streams is not None else _nothing

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                super().handle_exit(sig, frame)
                # uvicorn raises the signal again once it has stopped serving, and the
                # default SIGTERM then ends the process there: the caller's own shutdown
                # (an App's workers recording their handlers' ends, the peer processes)
                # never ran. Serving stops; the caller decides how the process ends.
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()
                end_streams()

        self.server = Server(config)
        self._end_streams = end_streams
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:43123``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self) -> None:
        """Serve in this thread until stopped (SIGINT/SIGTERM in the main thread)."""
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        """Serve in a background thread; returns once it accepts requests."""
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
            name="mainspring-service",
            daemon=True,
        )
        self._thread.start()
        waited = 0.0
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the service stopped as it started")
            threading.Event().wait(0.01)
            waited += 0.01
            if waited > timeout:
                raise TimeoutError("the service did not start")
        return self

    def request_stop(self) -> None:
        """Start to stop serving, from any thread: open streams end at once, and ``run``
        returns once the requests under way are answered."""
        self.server.should_exit = True
        self._end_streams()

    def stop(self) -> None:
        """Stop serving (open streams are closed) and wait for the thread."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(10)
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
