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
_prefix = ""
_rand = random.Random()  # seeded from os.urandom; ids need uniqueness, not secrecy
_bits = _rand.getrandbits


def uuid7() -> str:
    """Return a new UUIDv7 string (RFC 9562).

    48 bits of Unix milliseconds, then a 12-bit counter that keeps ids from one process
    strictly increasing within a millisecond, then 62 random bits.
    """
    global _last_ms, _counter, _prefix
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:  # counter overflow: borrow the next millisecond
                _last_ms += 1
                _counter = 0
                _prefix = _time_prefix(_last_ms)
        else:
            _last_ms = ms
            _counter = _bits(10)  # leave room to count within the millisecond
            _prefix = _time_prefix(ms)
        # counter (12 bits), then variant 0b10 and 62 random bits: 19 hex digits
        h = "%019x" % ((_counter << 64) | _bits(62) | 0x8000000000000000)
        prefix = _prefix
    return f"{prefix}{h[:3]}-{h[3:7]}-{h[7:]}"


def _time_prefix(ms: int) -> str:
    """``tttttttt-tttt-7`` for this millisecond (48 bits of time, then the version)."""
    h = f"{ms & 0xFFFFFFFFFFFF:012x}"
    return f"{h[:8]}-{h[8:]}-7"


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
