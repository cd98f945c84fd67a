"""The log follower behind the stream and the metrics: every event once, in order, to its
listeners and to each client, a slow client catching up from the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

import mainspring as ms
from mainspring.service import LogFollower
from mainspring.service import follower as follower_module

from .svc_tasks import declare


@pytest.fixture
def app(store_url: str) -> Iterator[ms.App]:
    a = ms.App(store_url)
    declare(a)
    a.open()
    yield a
    a.close()


def all_seqs(app: ms.App) -> list[int]:
    out: list[int] = []
    while found := app.log(since=out[-1] if out else 0, limit=1000):
        out += [e.seq for e in found]
    return out


def test_head_seq_and_listeners_see_every_event_once_in_order(app: ms.App) -> None:
    assert follower_module.head_seq(app) == all_seqs(app)[-1]
    f = LogFollower(app, poll_seconds=0.05)
    heard: list[int] = []
    f.add_listener(lambda events: heard.extend(e.seq for e in events))
    f.start()
    try:
        start = f.last_seq
        for i in range(20):
            app.submit("svc.add", (i, i))
        app.submit_many("svc.add", [((i, 0), {}) for i in range(50)])
        deadline = time.monotonic() + 10
        while heard[-1:] != all_seqs(app)[-1:]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        f.stop()
    assert heard == [s for s in all_seqs(app) if s > start]


def test_a_slow_client_catches_up_from_the_store(
    app: ms.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_module.Subscription, "LIMIT", 2)
    f = LogFollower(app, poll_seconds=0.02, coalesce_seconds=0)
    f.start()

    async def follow() -> list[int]:
        stream = f.frames(since=0)
        assert (await anext(stream)).startswith(b"retry:")
        seqs: list[int] = []
        for i in range(30):  # batches pile up while the client reads nothing
            await asyncio.to_thread(app.submit, "svc.add", (i, 1))
            await asyncio.sleep(0.03)
        want = all_seqs(app)
        async for chunk in stream:
            seqs.append(int(chunk.split(b"\n")[0][4:]))
            if seqs[-1] == want[-1]:
                break
        await stream.aclose()
        return seqs

    try:
        seqs = asyncio.run(asyncio.wait_for(follow(), 30))
    finally:
        f.stop()
    assert seqs == all_seqs(app)  # from the start, no gap, no repeat
