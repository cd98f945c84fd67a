"""Per-topic sequences under concurrent publishers in several processes, on both stores.

Four publisher processes open the store, say they are ready, wait for a start gate (so
they all publish at once) and publish their messages one after another. Each topic's
messages must then be numbered from 1, gapless and strictly increasing, each publisher's
own messages in the order it published them, and the log's ``message.published`` events
in sequence order (commit order). Every App is verified when the test ends (conftest).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import mainspring as ms

from .helpers import wait_for

Make = Callable[..., ms.App]

#: A publisher process: opens the store, says it is ready, waits for the start gate, then
#: publishes ``count`` messages, the k-th to ``topics[k % len(topics)]``.
PUBLISHER = textwrap.dedent(
    """
    import os
    import sys
    import time

    import mainspring as ms

    store, publisher, count, topics = sys.argv[1:5]
    topics = topics.split(",")
    app = ms.App(store)
    app.open()
    open(f"ready-{publisher}", "w").close()
    while not os.path.exists("go"):
        time.sleep(0.001)
    for k in range(int(count)):
        app.publish(topics[k % len(topics)], {"p": int(publisher), "n": k})
    app.close()
    """
)


def publish_at_once(
    tmp_path: Path, store_url: str, publishers: int, count: int, topics: list[str]
) -> None:
    """``publishers`` processes each publish ``count`` messages (cycling through
    ``topics``), released together by a go-file; returns when all exited cleanly."""
    (tmp_path / "publisher.py").write_text(PUBLISHER)
    procs = []
    try:
        for i in range(publishers):
            with open(tmp_path / f"publisher{i}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "publisher.py",
                            store_url,
                            str(i),
                            str(count),
                            ",".join(topics),
                        ],
                        cwd=tmp_path,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        wait_for(
            lambda: (
                len(list(tmp_path.glob("ready-*"))) == publishers
                or any(p.poll() is not None for p in procs)
            ),
            60,
            "the publishers to be ready",
        )
        (tmp_path / "go").touch()
        for i, p in enumerate(procs):
            code = p.wait(timeout=240)
            assert code == 0, (tmp_path / f"publisher{i}.log").read_text()[-4000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


def check_topic(app: ms.App, topic: str, publishers: int, expected: dict[int, list[int]]) -> None:
    """``topic`` holds exactly the messages of ``expected`` (publisher -> its ``n`` in
    publish order), numbered 1..N gapless, each publisher's in its publish order."""
    total = sum(len(ns) for ns in expected.values())
    msgs = app.messages(topic, limit=total + 10)
    assert len(msgs) == total, (topic, len(msgs))
    assert [m.sequence for m in msgs] == list(range(1, total + 1)), topic
    assert all(m.topic == topic for m in msgs)
    assert len({m.event_id for m in msgs}) == total
    got = [(m.payload["p"], m.payload["n"]) for m in msgs]
    assert Counter(got) == Counter((p, n) for p, ns in expected.items() for n in ns)
    for p in range(publishers):  # each publisher's messages in the order it published them
        assert [n for q, n in got if q == p] == expected[p], (topic, p)
    stamps = [m.published_at for m in msgs]
    assert all(s is not None for s in stamps)
    # stamped in sequence order (ties possible: a datetime has microseconds only)
    assert all(a <= b for a, b in itertools.pairwise(stamps)), topic  # type: ignore[operator]
    # pages: since=N continues after sequence N
    assert [m.sequence for m in app.messages(topic, since=total - 5, limit=100)] == list(
        range(total - 4, total + 1)
    )
    # the log: one message.published per message, in sequence (= commit) order
    published = [
        e.data
        for e in app.log(limit=1_000_000)
        if e.type == "message.published" and e.data["topic"] == topic
    ]
    assert [d["sequence"] for d in published] == list(range(1, total + 1)), topic
    assert [d["event_id"] for d in published] == [m.event_id for m in msgs]


def test_four_processes_publishing_at_once_get_gapless_sequences_in_publish_order(
    make_app: Make, store_url: str, tmp_path: Path
) -> None:
    publishers, count = 4, 200
    app = make_app()
    app.open()
    publish_at_once(tmp_path, store_url, publishers, count, ["seq.t"])
    check_topic(app, "seq.t", publishers, {p: list(range(count)) for p in range(publishers)})
    assert app.messages("seq.other") == []


def test_two_topics_published_interleaved_are_numbered_independently(
    make_app: Make, store_url: str, tmp_path: Path
) -> None:
    publishers, count = 4, 200  # each publisher alternates: even n to seq.a, odd to seq.b
    app = make_app()
    app.open()
    publish_at_once(tmp_path, store_url, publishers, count, ["seq.a", "seq.b"])
    for topic, parity in (("seq.a", 0), ("seq.b", 1)):
        expected = {p: list(range(parity, count, 2)) for p in range(publishers)}
        check_topic(app, topic, publishers, expected)
