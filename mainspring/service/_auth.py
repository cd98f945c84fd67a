"""Tokens and roles (CONTRACT.md section 11, "Auth").

The token file has one ``<token> <role>`` per line (blank lines and ``#`` comments are
skipped); a ``viewer`` may only read (GET, HEAD), an ``operator`` may do everything. With
tokens, every request under ``/api`` needs ``Authorization: Bearer <token>`` (401 without
a valid one, 403 for a viewer's write); ``/api/v1/log/stream`` also takes ``?token=``
because browsers' EventSource cannot set headers. The health checks, ``/metrics``, the
dashboard's pages and the docs page (which holds no data: it reads the OpenAPI document
with the token) are open.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from ._errors import error_body

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
READS = frozenset({"GET", "HEAD", "OPTIONS"})
STREAM_PATH = "/api/v1/log/stream"
OPEN_PATHS = frozenset({"/api/docs", "/api/docs/"})


class TokenFileError(ValueError):
    """The token file cannot be used (the message says where and why)."""


def parse_tokens(text: str, source: str = "the token file") -> dict[str, Role]:
    """The tokens of a token file's text, by token."""
    tokens: dict[str, Role] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ROLES:
            raise TokenFileError(
                f"{source}, line {number}: expected '<token> <role>' with role viewer or operator"
            )
        token, role = parts[0], parts[1]
        if token in lines:  # (which role would it have? say so rather than pick one)
            raise TokenFileError(
                f"{source}, line {number}: the token of line {lines[token]} again: each "
                "token once, with one role"
            )
        lines[token] = number
        tokens[token] = "viewer" if role == "viewer" else "operator"
    if not tokens:
        raise TokenFileError(f"{source} has no tokens ('<token> <role>' lines)")
    return tokens


def load_tokens(path: str | Path) -> dict[str, Role]:
    """Read and parse a token file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the token file {str(path)!r}: {exc}") from None
    return parse_tokens(text, f"token file {str(path)!r}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def role_of(tokens: Mapping[str, Role], presented: str | None) -> Role | None:
    """The role of a presented token, compared in constant time; None if it is unknown."""
    if not presented:
        return None
    found: Role | None = None
    for token, role in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = role
    return found


class TokenAuth:
    """ASGI middleware enforcing tokens and roles on ``/api`` (a no-op without tokens)."""

    def __init__(self, app: ASGIApp, tokens: Mapping[str, Role] | None = None) -> None:
        self.app = app
        self.tokens = dict(tokens) if tokens else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.tokens is None or scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not (path == "/api" or path.startswith("/api/")) or path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        if presented is None and path == STREAM_PATH:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            found = query.get("token")
            presented = found[0] if found else None
        role = role_of(self.tokens, presented)
        if role is None:
            what = "no token" if presented is None else "an unknown token"
            await _deny(send, 401, "unauthorized", f"{what}: send 'Authorization: Bearer <token>'")
            return
        if role == "viewer" and scope.get("method") not in READS:
            await _deny(send, 403, "forbidden", "a viewer token may only read (GET)")
            return
        await self.app(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return ""
    return None


async def _deny(send: Send, status: int, code: str, message: str) -> None:
    body = error_body(code, message)
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="mainspring"'))
    start: Any = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    message_: Any = {"type": "http.response.body", "body": body}
    await send(message_)
