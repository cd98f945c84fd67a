"""Executing handlers: threads, asyncio, lease renewal, timeouts, ms.context()."""

from .context import Context, context
from .worker import Worker

__all__ = ["Context", "Worker", "context"]
