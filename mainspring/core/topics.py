"""Topic names and subscription patterns, shared by durable topics and the in-process bus.

A name is dotted segments of letters, digits, ``_``, ``-`` and ``:``. A pattern is a name
whose segments may also be ``*`` (exactly one segment) or, last, ``#`` (the rest: zero or
more segments, so ``audit.#`` matches ``audit`` too, as in AMQP).
"""

from __future__ import annotations

import re
from typing import Final, TypeGuard

NAME: Final = re.compile(r"[A-Za-z0-9_:\-]+(?:\.[A-Za-z0-9_:\-]+)*")
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_:\-]+")


def is_name(name: object) -> TypeGuard[str]:
    """Whether ``name`` is a valid topic (or method) name: no wildcards."""
    return isinstance(name, str) and NAME.fullmatch(name) is not None


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
