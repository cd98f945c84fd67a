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
_head = ""  # ``tttttttt-tttt-7``: this millisecond's 48 bits of time, then the version
_tail = ""  # ``-vrrr-rrrrrrrrrrrr``: the variant and 62 random bits, drawn each millisecond
_rand = random.Random()  # seeded from os.urandom; ids need uniqueness, not secrecy
_bits = _rand.getrandbits
_COUNTER = [f"{c:03x}" for c in range(0x1000)]  # formatted once: ids are made per event


def uuid7() -> str:
    """Return a new UUIDv7 string (RFC 9562).

    48 bits of Unix milliseconds, then a 12-bit counter that keeps ids from one process
    strictly increasing within a millisecond (RFC 9562 method 1), then 62 random bits,
    drawn once per millisecond: the counter tells apart one process's ids within it, the
    random bits two processes'.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _new_millisecond(ms)
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter overflow: borrow the next millisecond
                _new_millisecond(_last_ms + 1)
                _counter = 0
        return _head + _COUNTER[_counter] + _tail


def _new_millisecond(ms: int) -> None:
    global _last_ms, _counter, _head, _tail
    _last_ms = ms
    _counter = _bits(10)  # leave room to count within the millisecond
    h = f"{ms & 0xFFFFFFFFFFFF:012x}"
    _head = f"{h[:8]}-{h[8:]}-7"
    r = f"{_bits(62) | 0x8000000000000000:016x}"
    _tail = f"-{r[:4]}-{r[4:]}"


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
