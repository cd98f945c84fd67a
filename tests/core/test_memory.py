"""``release_free_memory`` (engine/memory.py): what a passing piece of work (a compaction)
allocated and freed goes back to the OS, where the C allocator can (glibc)."""

from __future__ import annotations

import pytest
from conftest import rss_mb

from mainspring.engine import memory


def test_the_free_pages_of_the_heap_go_back_to_the_os() -> None:
    if memory._trim is None:
        pytest.skip("no glibc malloc_trim here")
    chunks = [bytes(60_000) for _ in range(800)]  # 48 MB from the C heap (each below mmap's)
    pin = bytes(60_000)  # (above them: their pages are left free in the middle of the heap)
    del chunks
    before = rss_mb()
    memory.release_free_memory()
    assert rss_mb() < before - 30
    del pin
