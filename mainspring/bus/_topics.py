"""Method and topic names on the bus: the shared rules (core/topics.py), refused with the
bus's own error, and the prefix test its subscription index uses."""

from __future__ import annotations

from ..core.topics import is_name, matches, parse_pattern
from ._errors import VALIDATION_ERROR, BusError

__all__ = ["check_name", "matches", "may_match_prefix", "parse_pattern"]


def check_name(name: object, what: str) -> str:
    """``name`` if it is a valid method or topic name, else ``BusError``
    ``VALIDATION_ERROR`` (``what`` names it in the message)."""
    if not is_name(name):
        raise BusError(
            VALIDATION_ERROR,
            f"{what} {name!r} is not a valid name: use dotted segments of letters, digits, "
            "'_', '-' or ':' (no wildcards), e.g. 'orders.created'",
        )
    return name


def may_match_prefix(pattern: tuple[str, ...], first: str) -> bool:
    """Whether the pattern can match some topic whose first segment is ``first``."""
    return pattern[0] in (first, "*", "#")
