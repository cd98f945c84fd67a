"""Replay, property-tested: random workflows of steps, sleeps and signal waits, whose
steps fail some tries and whose attempts fail at random points (then replay from the top).
Whatever happens, a completed step never runs again, the workflow ends with the output its
code computes, and the log replays to the stored state."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mainspring as ms
from mainspring.testing import ManualClock

# an operation: ("step", tries that fail before one succeeds), ("sleep", seconds),
# ("wait", signal sent before the wait or not), ("crash", attempt number to crash on)
OPS = st.one_of(
    st.tuples(st.just("step"), st.integers(0, 2)),
    st.tuples(st.just("sleep"), st.integers(1, 100)),
    st.tuples(st.just("wait"), st.booleans()),
    st.tuples(st.just("crash"), st.integers(1, 3)),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(program=st.lists(OPS, min_size=1, max_size=8))
def test_completed_steps_never_run_twice(program: list[tuple[str, Any]]) -> None:
    clock = ManualClock()
    with tempfile.TemporaryDirectory() as d:
        # (leases outlive the clock's jumps: a lease that expired would make the step in
        # flight run twice, which is allowed, and not what this test is about)
        app = ms.App(f"sqlite:///{Path(d) / 's.db'}", clock=clock, lease_seconds=3600)
        calls: Counter[int] = Counter()
        tries: Counter[int] = Counter()

        @app.step(max_attempts=3, backoff=ms.Backoff.fixed(0))
        def work(i: int, fail_first: int) -> int:
            tries[i] += 1
            if tries[i] <= fail_first:
                raise ConnectionError(f"try {tries[i]} of step {i} fails")
            calls[i] += 1
            return i * 10

        @app.workflow(max_attempts=10, backoff=ms.Backoff.fixed(0))
        def flow(ops: list[list[Any]]) -> list[Any]:
            out: list[Any] = []
            for i, (op, arg) in enumerate(ops):
                if op == "step":
                    out.append(work(i, arg))
                elif op == "sleep":
                    ms.sleep(arg)
                elif op == "wait":
                    out.append(ms.wait_for(f"s{i}"))
                elif op == "crash" and ms.context().attempt == arg:
                    raise RuntimeError(f"attempt {arg} fails after {i} operations")
            return out

        h = flow.with_options(execution_id="prop").submit([list(op) for op in program])
        for i, (op, early) in enumerate(program):
            if op == "wait" and early:
                app.signal("prop", f"s{i}", i)  # buffered until the workflow waits
        with app.worker(concurrency=2) as w:
            for _ in range(4 * len(program) + 4):
                w.run_until_idle()
                if h.status().terminal:
                    break
                for i, (op, _early) in enumerate(program):
                    if op == "wait":
                        app.signal("prop", f"s{i}", i, idempotency_key=f"k{i}")
                w.run_until_idle()  # (nothing runs while the clock moves)
                clock.advance(101)
        expected = [
            i * 10 if op == "step" else i
            for i, (op, _) in enumerate(program)
            if op in ("step", "wait")
        ]
        assert h.result() == expected
        steps = [i for i, (op, _) in enumerate(program) if op == "step"]
        assert calls == Counter(dict.fromkeys(steps, 1))  # each completed step ran once
        assert [s.attempts for s in h.steps()] == [program[i][1] + 1 for i in steps]
        report = app.verify()
        assert report.ok, report.problems
        app.close()
