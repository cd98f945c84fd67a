"""The active correlation id and request depth, per execution context.

One ``ContextVar`` holds both, so entering a handler is one ``set`` and leaving it one
``reset``; threads and asyncio tasks each see their own value, which is what keeps
concurrent commands from seeing each other's correlation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

from ._errors import VALIDATION_ERROR, BusError

#: (correlation id, request depth); depth 0 is outside every command handler.
Frame = tuple[str | None, int]

FRAME: Final[ContextVar[Frame]] = ContextVar("mainspring.bus.frame", default=(None, 0))


def correlation_id() -> str | None:
    """The correlation id active here: the running command's inside a command handler,
    the event's inside a subscriber, the one set by ``correlation_scope``; None outside."""
    return FRAME.get()[0]


@contextmanager
def correlation_scope(correlation: str | None) -> Iterator[None]:
    """Make ``correlation`` the active correlation id inside the ``with`` block (events
    published there carry it); the outer one is restored after. The request depth is
    kept. Lets code outside a command handler (a task handler, say) join a chain."""
    if correlation is not None and (not isinstance(correlation, str) or not correlation):
        raise BusError(
            VALIDATION_ERROR, f"correlation id {correlation!r} is not a non-empty string"
        )
    token = FRAME.set((correlation, FRAME.get()[1]))
    try:
        yield
    finally:
        FRAME.reset(token)
