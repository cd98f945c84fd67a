"""``mainspring serve``: an HTTP API, a live log stream, metrics and a dashboard over one
store (CONTRACT.md section 11; docs/service.md). Needs the ``server`` extra
(``pip install 'mainspring[server]'``: Litestar and uvicorn)."""

from __future__ import annotations

from ._auth import Role, TokenFileError, is_loopback, load_tokens, parse_tokens
from .follower import LogFollower
from .server import BackgroundServer, create_app

__all__ = [
    "BackgroundServer",
    "LogFollower",
    "Role",
    "TokenFileError",
    "create_app",
    "is_loopback",
    "load_tokens",
    "parse_tokens",
]
