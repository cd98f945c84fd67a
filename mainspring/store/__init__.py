"""Stores: the log plus a projection of current state (SQLite now, PostgreSQL next)."""

from .base import Store, Tx, Waiter, open_store, resolve_url

__all__ = ["Store", "Tx", "Waiter", "open_store", "resolve_url"]
