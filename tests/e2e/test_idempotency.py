"""Idempotent submission: same key + args is the same run and writes nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import mainspring as ms

from .helpers import wait_for


def test_same_key_and_args_returns_the_same_run_and_writes_nothing(app: ms.App) -> None:
    @app.task(name="mail.send")
    def send(to: str, body: str = "") -> str:
        return to

    h1 = send.with_options(idempotency_key="k1").submit("a@b.c", body="hi")
    before = len(app.log())
    h2 = send.with_options(idempotency_key="k1").submit("a@b.c", body="hi")
    assert h2.run_id == h1.run_id and h2.task_id == h1.task_id
    assert len(app.log()) == before
    assert len(app.runs()) == 1

    # still the same run once it has completed (a handle to the run in any state)
    with app.worker() as w:
        w.run_until_idle(timeout=10)
    assert h1.result(timeout=1) == "a@b.c"
    before = len(app.log())
    h3 = send.with_options(idempotency_key="k1").submit("a@b.c", body="hi")
    assert h3.run_id == h1.run_id
    assert h3.status() == ms.RunState.COMPLETED
    assert len(app.log()) == before
    assert h1.info().idempotency_key == "k1"

    # the key is per task name and per key: another key is another run
    h4 = send.with_options(idempotency_key="k2").submit("a@b.c", body="hi")
    assert h4.run_id != h1.run_id
    assert len(app.runs()) == 2


def test_the_same_arguments_written_another_way_are_the_same_call(app: ms.App) -> None:
    """By keyword or by position, a default given or left out: the same arguments once
    bound to the handler's parameters, so the same run (a retry from another call site)."""

    @app.task(name="mail.notify")
    def notify(to: str, body: str = "", *tags: str, **headers: str) -> str:
        return to

    h = notify.with_options(idempotency_key="k").submit("a@b.c", body="hi")
    before = len(app.log())
    for again in (
        lambda o: o.submit(to="a@b.c", body="hi"),
        lambda o: o.submit("a@b.c", "hi"),
        lambda o: o.submit(body="hi", to="a@b.c"),
    ):
        assert again(notify.with_options(idempotency_key="k")).run_id == h.run_id
    assert len(app.log()) == before
    d = notify.with_options(idempotency_key="d").submit("x@y.z")
    assert notify.with_options(idempotency_key="d").submit("x@y.z", body="").run_id == d.run_id
    for other in (
        lambda o: o.submit("a@b.c", "hi", "urgent"),
        lambda o: o.submit("a@b.c", body="hi", cc="c@d.e"),
        lambda o: o.submit("a@b.c", body="bye"),
    ):
        with pytest.raises(ms.IdempotencyConflict):
            other(notify.with_options(idempotency_key="k"))
    # by name too, where the declaring App is this one
    assert (
        app.submit("mail.notify", kwargs={"to": "a@b.c", "body": "hi"}, idempotency_key="k").run_id
        == h.run_id
    )


def test_same_key_different_args_is_a_conflict_and_writes_nothing(app: ms.App) -> None:
    @app.task
    def send(to: str, body: str = "") -> None:
        return None

    send.with_options(idempotency_key="k").submit("a@b.c", body="hi")
    before = len(app.log())
    with pytest.raises(ms.IdempotencyConflict) as exc:
        send.with_options(idempotency_key="k").submit("a@b.c", body="other")
    assert isinstance(exc.value, ms.MainspringError)
    assert "k" in str(exc.value)
    with pytest.raises(ms.IdempotencyConflict):
        send.with_options(idempotency_key="k").submit("x@y.z", body="hi")
    assert len(app.log()) == before
    assert len(app.runs()) == 1


def test_same_key_on_another_task_is_independent(app: ms.App) -> None:
    @app.task
    def one(x: int) -> None:
        return None

    @app.task
    def two(x: int) -> None:
        return None

    a = one.with_options(idempotency_key="same").submit(1)
    b = two.with_options(idempotency_key="same").submit(2)
    assert a.run_id != b.run_id


def test_four_threads_submitting_the_same_key_make_one_run(app: ms.App) -> None:
    @app.task(name="pay")
    def pay(amount: int) -> None:
        return None

    barrier = threading.Barrier(4)
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def submitter() -> None:
        try:
            barrier.wait(5)
            for _ in range(5):
                h = pay.with_options(idempotency_key="invoice-9").submit(100)
                with lock:
                    results.append(h.run_id)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=submitter) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(results) == 20 and len(set(results)) == 1
    assert len(app.runs()) == 1
    assert sum(1 for e in app.log(limit=100_000) if e.type == "task.created") == 1
    assert sum(1 for e in app.log(limit=100_000) if e.type == "run.created") == 1


SUBMITTER = textwrap.dedent(
    """
    import os, sys, time
    import mainspring as ms

    store, go, ready = sys.argv[1], sys.argv[2], sys.argv[3]
    app = ms.App(store)

    @app.task(name="pay")
    def pay(amount):
        return None

    open(ready, "w").close()
    deadline = time.monotonic() + 20
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.001)
    ids = {pay.with_options(idempotency_key="invoice-9").submit(100).run_id for _ in range(10)}
    print(" ".join(sorted(ids)))
    """
)


def test_two_processes_submitting_the_same_key_make_one_run(
    make_app: Callable[..., ms.App], store_url: str, tmp_path: Path
) -> None:
    app = make_app()
    script = tmp_path / "submitter.py"
    script.write_text(SUBMITTER)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), store_url, str(go), str(tmp_path / f"ready{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        # both processes have opened the store and declared the task: release them together
        wait_for(
            lambda: all((tmp_path / f"ready{i}").exists() for i in range(2)),
            20,
            "both submitters to be ready",
        )
        go.write_text("go")
        outs = [p.communicate(timeout=30) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    ids = {i for out, _ in outs for i in out.split()}
    assert len(ids) == 1
    runs = app.runs()
    assert [r.run_id for r in runs] == list(ids)
    assert sum(1 for e in app.log(limit=100_000) if e.type == "task.created") == 1


def test_threads_submitting_at_once_share_commits_and_each_gets_its_own_answer(
    app: ms.App,
) -> None:
    """Submits from many threads are committed together (engine ``submit``'s group): one
    key used by several of them in one commit is still one run, and a conflicting caller
    gets its error while the others' submissions stand."""

    @app.task
    def job(i: int) -> int:
        return i

    out: dict[tuple[int, int], object] = {}
    start = threading.Barrier(8)

    def submitter(t: int) -> None:
        start.wait()
        for n in range(40):
            try:
                if n % 4 == 0:  # keyed: ten keys, every thread uses each with the same args
                    h = job.with_options(idempotency_key=f"k{n % 40}").submit(n)
                elif t == 7 and n == 1:  # a key another call uses with other arguments
                    job.with_options(idempotency_key="k0").submit(999)
                    h = None
                else:
                    h = job.submit(1000 * t + n)
                out[(t, n)] = h.run_id if h is not None else None
            except ms.IdempotencyConflict as exc:
                out[(t, n)] = exc

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert isinstance(out.pop((7, 1)), ms.IdempotencyConflict)
    keyed = {(t, n): r for (t, n), r in out.items() if n % 4 == 0}
    plain = [r for (t, n), r in out.items() if n % 4 != 0]
    assert all(isinstance(r, str) for r in out.values())
    by_key: dict[int, set[object]] = {}
    for (_, n), r in keyed.items():
        by_key.setdefault(n, set()).add(r)
    assert len(by_key) == 10 and all(len(ids) == 1 for ids in by_key.values())
    assert len(set(plain)) == len(plain) == 8 * 30 - 1
    assert app.stats()["ready"] == 10 + len(plain)
