"""UUIDv7 ids: format, version, variant, canonical form, ordering."""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
import types
import uuid

import pytest

from mainspring.core import ids
from mainspring.core.ids import is_uuid, uuid7

CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def ms_of(u: str) -> int:
    return uuid.UUID(u).int >> 80


def test_format_version_variant() -> None:
    for _ in range(2000):
        u = uuid7()
        assert CANONICAL.match(u), u
        parsed = uuid.UUID(u)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == u  # canonical lowercase hyphenated form
        assert u == u.lower()
        assert len(u) == 36


def test_timestamp_is_unix_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    u = uuid7()
    after = time.time_ns() // 1_000_000
    # the counter may borrow a few milliseconds when many ids were made in one
    assert before <= ms_of(u) <= after + 5


def test_monotonic_within_a_process() -> None:
    out = [uuid7() for _ in range(50_000)]
    assert out == sorted(out)
    assert len(set(out)) == len(out)
    assert all(a < b for a, b in itertools.pairwise(out))
    # string order and 128-bit integer order agree
    ints = [uuid.UUID(u).int for u in out]
    assert ints == sorted(ints)


def test_monotonic_across_threads() -> None:
    per_thread: list[list[str]] = [[] for _ in range(8)]

    def work(i: int) -> None:
        per_thread[i].extend(uuid7() for _ in range(5000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [u for chunk in per_thread for u in chunk]
    assert len(set(all_ids)) == len(all_ids)
    for chunk in per_thread:
        assert all(a < b for a, b in itertools.pairwise(chunk))


def test_frozen_clock_still_orders_and_overflows_into_next_ms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen = time.time_ns()
    monkeypatch.setattr(ids, "time", types.SimpleNamespace(time_ns=lambda: frozen))
    out = [uuid7() for _ in range(10_000)]  # more than the 12-bit counter holds
    assert all(a < b for a, b in itertools.pairwise(out))
    assert all(CANONICAL.match(u) for u in out)
    spread = ms_of(out[-1]) - ms_of(out[0])
    assert 1 <= spread <= 10  # borrowed a few milliseconds, not a clock jump


def test_clock_going_backwards_does_not_break_order(monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time_ns()
    ticks = iter([now, now - 5_000_000_000, now - 10_000_000_000] + [now - 1] * 10)
    monkeypatch.setattr(ids, "time", types.SimpleNamespace(time_ns=lambda: next(ticks)))
    out = [uuid7() for _ in range(10)]
    assert all(a < b for a, b in itertools.pairwise(out))


def test_random_bits_are_drawn_again_each_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    # within a millisecond the counter tells one process's ids apart; the random bits,
    # drawn anew each millisecond, tell apart two processes' ids made in the same one
    ticks = iter(range(time.time_ns(), time.time_ns() + 1000 * 1_000_000, 1_000_000))
    monkeypatch.setattr(ids, "time", types.SimpleNamespace(time_ns=lambda: next(ticks)))
    tails = {uuid7()[-17:] for _ in range(1000)}
    assert len(tails) == 1000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_repeat_the_parent() -> None:
    uuid7()  # make sure the parent's state is initialised
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.write(w, "\n".join(uuid7() for _ in range(200)).encode())
        finally:
            os._exit(0)
    os.close(w)
    parent = {uuid7() for _ in range(200)}
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    child = set(b"".join(chunks).decode().split("\n"))
    assert len(child) == 200
    assert not parent & child


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", True),
        ("0190A1B2-C3D4-7E5F-8A6B-7C8D9E0F1A2B", True),  # input may be upper case
        ("0190a1b2c3d47e5f8a6b7c8d9e0f1a2b", False),  # not hyphenated
        ("not-a-uuid", False),
        ("", False),
        (None, False),
    ],
)
def test_is_uuid(value: object, ok: bool) -> None:
    assert is_uuid(value) is ok  # type: ignore[arg-type]
    if ok:
        assert is_uuid(uuid7())
