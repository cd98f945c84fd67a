"""Identifiers: UUIDv7, time-ordered, in canonical lowercase hyphenated form."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_rand = random.Random()  # seeded from os.urandom; ids need uniqueness, not secrecy


def uuid7() -> str:
    """Return a new UUIDv7 string (RFC 9562).

    48 bits of Unix milliseconds, then a 12-bit counter that keeps ids from one process
    strictly increasing within a millisecond, then 62 random bits.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:  # counter overflow: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _counter = _rand.getrandbits(10)  # leave room to count within the millisecond
        counter = _counter
    value = ((ms & 0xFFFFFFFFFFFF) << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62)
    h = f"{value | _rand.getrandbits(62):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, AttributeError, TypeError):
        return False


def _reseed() -> None:
    global _last_ms, _counter
    _rand.seed()
    _last_ms = 0
    _counter = 0


# A forked child must not repeat its parent's random stream.
os.register_at_fork(after_in_child=_reseed)
