"""Method and topic names, subscription patterns, and matching.

A name is dotted segments of letters, digits, ``_``, ``-`` and ``:``. A pattern is a name
whose segments may also be ``*`` (exactly one segment) or, last, ``#`` (the rest: zero or
more segments, so ``audit.#`` matches ``audit`` too, as in AMQP).
"""

from __future__ import annotations

import re
from typing import Final

from ._errors import VALIDATION_ERROR, BusError

_NAME: Final = re.compile(r"[A-Za-z0-9_:\-]+(?:\.[A-Za-z0-9_:\-]+)*")
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_:\-]+")


def check_name(name: object, what: str) -> str:
    """``name`` if it is a valid method or topic name, else ``BusError``
    ``VALIDATION_ERROR`` (``what`` names it in the message)."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise BusError(
            VALIDATION_ERROR,
            f"{what} {name!r} is not a valid name: use dotted segments of letters, digits, "
            "'_', '-' or ':' (no wildcards), e.g. 'orders.created'",
        )
    return name


def parse_pattern(pattern: object) -> tuple[str, ...] | None:
    """The segments of a valid subscription pattern, or None when it is not one."""
    if not isinstance(pattern, str) or not pattern:
        return None
    parts = tuple(pattern.split("."))
    for i, part in enumerate(parts):
        if part == "#":
            if i != len(parts) - 1:
                return None
        elif part != "*" and _SEGMENT.fullmatch(part) is None:
            return None
    return parts


def matches(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    """Whether the topic (its segments) matches the pattern (its segments)."""
    if pattern[-1] == "#":
        head = pattern[:-1]
        if len(topic) < len(head):
            return False
    else:
        head = pattern
        if len(topic) != len(head):
            return False
    return all(p == "*" or p == s for p, s in zip(head, topic, strict=False))


def may_match_prefix(pattern: tuple[str, ...], first: str) -> bool:
    """Whether the pattern can match some topic whose first segment is ``first``."""
    return pattern[0] in (first, "*", "#")
