"""Executing handlers: threads, asyncio, lease renewal, timeouts, ms.context()."""

from .context import Context, context
from .worker import AttemptDone, Worker

__all__ = ["AttemptDone", "Context", "Worker", "context"]
