"""HEAD answered as GET without the body (RFC 9110: a server that answers GET answers
HEAD alike), for every route but the log stream (which never ends): uptime checks and
proxies probe ``/healthz`` and friends with HEAD. The framework routes HEAD only where a
handler names it."""

from __future__ import annotations

from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """ASGI wrapper: a HEAD request runs as GET, and its response's body is dropped (its
    status and headers, ``content-length`` included, are kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != ScopeType.HTTP
            or scope.get("method") != "HEAD"
            or str(scope.get("path", "")).endswith("/stream")
        ):
            await self.app(scope, receive, send)
            return
        as_get: Any = {**scope, "method": "GET"}

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(as_get, receive, headers_only)
