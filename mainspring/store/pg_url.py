"""PostgreSQL store URLs: libpq's forms, mainspring's own parameters, passwords kept out of messages."""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote

from ..core.errors import StoreError
from .base import auto_migrate_of

#: events per partition of the log by default (store/pg_log_parts.py)
DEFAULT_LOG_PARTITION = 250_000
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")  # unquoted PostgreSQL names fold to lower case
# libpq's URL: postgresql://[user[:password]@][host][:port][,...][/database][?param=value&...]
# (or postgres://). Every part may be empty: postgresql:///db is the database db through the
# local Unix socket, as the OS user. Split as libpq reads it, nothing decoded: the authority
# ends at the first / or ?, the parameters begin at the first ?, there is no fragment.
_URL = re.compile(r"(postgresql|postgres)://([^/?]*)([^?]*)(?:\?(.*))?", re.DOTALL)


class PgUrl(NamedTuple):
    conninfo: str  # libpq's
    schema: str
    pool_size: int
    auto_migrate: bool
    log_partition: int  # events per partition of the log (store/pg_log_parts.py)


def parse_url(url: str) -> PgUrl:
    """libpq's conninfo and mainspring's own parameters from a ``postgresql://`` URL.

    mainspring's own parameters (``schema``, ``pool_size``, ``auto_migrate``,
    ``log_partition``) are taken out; the rest of the URL reaches libpq exactly as
    written (an empty host included: the Unix socket), in a ``postgresql://`` URL."""
    m = _URL.fullmatch(url)
    if m is None:
        raise StoreError(
            "not a PostgreSQL URL: use postgresql://[user[:password]@][host][:port]"
            "[/database][?param=value&...] (postgresql:///database: the local socket)"
        )
    _, authority, path, query = m.groups()
    kept: list[str] = []
    schema, pool_size, auto, log_partition = "public", 8, True, DEFAULT_LOG_PARTITION
    for item in (query or "").split("&"):
        raw_key, _, raw_value = item.partition("=")
        key, value = unquote(raw_key), unquote(raw_value)  # libpq's decoding: "+" is a "+"
        if key == "schema":
            schema = value
        elif key == "pool_size":
            if not value.isdigit() or int(value) < 1:
                raise StoreError(
                    f"invalid pool_size={value!r} in {_redact(url)!r}: use a number >= 1"
                )
            pool_size = int(value)
        elif key == "log_partition":
            if not value.isdigit() or int(value) < 1:
                raise StoreError(
                    f"invalid log_partition={value!r} in {_redact(url)!r}: use a number >= 1"
                )
            log_partition = int(value)
        elif key == "auto_migrate":
            auto = auto_migrate_of(value, _redact(url))
        elif item:
            kept.append(item)  # libpq's, as written
    if not _IDENT.match(schema):
        raise StoreError(
            f"invalid schema={schema!r} in {_redact(url)!r}: use lower-case letters, digits and "
            "underscores (at most 63)"
        )
    conninfo = f"postgresql://{authority}{path}" + ("?" + "&".join(kept) if kept else "")
    return PgUrl(conninfo, schema, pool_size, auto, log_partition)


def _passwords(url: str) -> list[str]:
    """The passwords in ``url`` (in the authority, ``password=``), as written and decoded."""
    m = _URL.fullmatch(url)
    if m is None:
        return []
    _, authority, _, query = m.groups()
    userinfo, at, _ = authority.rpartition("@")
    found = [userinfo.partition(":")[2]] if at and ":" in userinfo else []
    for item in (query or "").split("&"):
        key, _, value = item.partition("=")
        if unquote(key) == "password":
            found.append(value)
    return [p for raw in found if raw for p in {raw, unquote(raw)}]


def _redact(url: str) -> str:
    """The URL without its password (in the authority or as ``password=``), for messages."""
    m = _URL.fullmatch(url)
    if m is None:
        return "(a URL that is not a PostgreSQL URL)"
    scheme, authority, path, query = m.groups()
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:  # (up to the last @: nothing of a password is left)
        authority = f"{userinfo.partition(':')[0]}:***@{hosts}"
    if query is not None:
        query = "?" + "&".join(
            f"{item.partition('=')[0]}=***" if unquote(item.partition("=")[0]) == "password"
            else item
            for item in query.split("&")
        )  # fmt: skip
    return f"{scheme}://{authority}{path}{query or ''}"


def _scrub(message: str, url: str) -> str:
    """``message`` (libpq's, which may quote a part of the URL) without its passwords."""
    for password in sorted(_passwords(url), key=len, reverse=True):
        message = message.replace(password, "***")
    return message
