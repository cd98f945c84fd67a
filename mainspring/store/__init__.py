"""Stores: the log plus a projection of current state, registered by URL scheme.

``base`` is the interface and knows no implementation; each implementation registers the
URL schemes it opens (below, lazily: PostgreSQL's driver is imported only when used).
"""

from .base import ReadTx, Store, Waiter, WriteTx, open_store, register_store, resolve_url


def _sqlite(url: str, migrate: bool | None, create: bool) -> Store:
    from .sqlite import SQLiteStore

    return SQLiteStore(url, create=create, migrate=migrate)


def _postgres(url: str, migrate: bool | None, create: bool) -> Store:
    from .postgres import PostgresStore

    return PostgresStore(url, migrate=migrate, create=create)


register_store("sqlite", _sqlite)
register_store("postgresql", _postgres)
register_store("postgres", _postgres)

__all__ = [
    "ReadTx",
    "Store",
    "Waiter",
    "WriteTx",
    "open_store",
    "register_store",
    "resolve_url",
]
