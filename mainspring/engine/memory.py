"""Giving freed memory back to the OS after a large piece of work that passes (compaction).

A compaction reads the whole state and writes a snapshot of it: tens of MB allocated and
freed again. CPython hands large objects to the C allocator, and glibc's keeps what they
freed in its heap for later use rather than return it, so a long-lived process that
compacts now and then holds the high-water mark of its compactions, which creeps up
from one to the next as the heap fragments. ``malloc_trim(0)`` returns the free pages
(glibc, Linux); elsewhere there is nothing to call and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _trim = _libc.malloc_trim  # (absent from musl: AttributeError)
    except (OSError, AttributeError):
        _trim = None


def release_free_memory() -> None:
    """Return the C heap's free pages to the OS, where the allocator can (glibc)."""
    if _trim is not None:
        _trim(0)
