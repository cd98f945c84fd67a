"""mainspring durable workflows (the workflow group), on SQLite or PostgreSQL.

Same store URLs, durability read-back and worker as ``mainspring_peer`` (this driver
subclasses it); only what is declared differs. ``wf.flow`` is a 3-step workflow
(``wf.s1`` -> ``wf.s2`` -> ``wf.s3``, each an ``@app.step``); ``wf.sleeper`` sleeps
durably with ``ms.sleep_until`` until a wake time given as its argument and then
stamps the time it resumed. Producer: ``flow.submit(x).result()`` (WF1),
``app.submit_many`` 1,000 per call (WF2 preload, WF3). Worker:
``app.run_worker(concurrency=8)``.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from . import timing, wf_timing
from .mainspring_peer import MainspringPeer, ms

MODULE = "peers.mainspring_wf"


class MainspringWorkflows(wf_timing.WorkflowPeer, MainspringPeer):
    name = "mainspring"

    @property
    def notes(self) -> str:  # type: ignore[override]
        store = (
            "store URL `postgresql://…/bench_…` (a fresh database, server settings)"
            if self.backend == "postgres"
            else "store URL `sqlite:////…/store.db` (WAL + synchronous=FULL, the default)"
        )
        return (
            f"{store}; `@app.workflow` + 3 `@app.step`s; `app.run_worker(concurrency=8)` in "
            "one worker process; WF1 waits with `RunHandle.result()`; sleepers use "
            "`ms.sleep_until` (suspended, no slot held); engine-default wake-up"
        )

    def open(self, db: str, sync: str, role: str) -> None:
        assert ms is not None
        self.db, self.sync = db, sync
        if self.backend == "postgres":
            url = db
        else:
            url = f"sqlite:///{Path(db).resolve()}"
            if sync == "normal":
                url += "?synchronous=normal"
        app = ms.App(store=url)

        @app.step(name="wf.s1")
        def s1(x: int) -> float:
            return time.time()  # the workflow's first step starts: its start time

        @app.step(name="wf.s2")
        def s2(t: float) -> float:
            return t

        @app.step(name="wf.s3")
        def s3(t: float) -> float:
            return t

        @app.workflow(name="wf.flow")
        def flow(x: int) -> int:
            t = s3(s2(s1(x)))
            timing.stamp(t)  # (first step's start, end of the last step)
            return x + 3

        @app.workflow(name="wf.sleeper")
        def sleeper(wake: float) -> None:
            ms.sleep_until(dt.datetime.fromtimestamp(wake, dt.UTC))
            timing.stamp(wake)  # (wake time, resumed at)

        self.app = app
        self.flow, self.sleeper = flow, sleeper
        app.open()

    def round_trip(self, x: str, timeout: float) -> None:
        i = int(x.rsplit("-", 1)[-1])
        if self.flow.submit(i).result(timeout=timeout) != i + 3:
            raise RuntimeError("the workflow returned a wrong value")

    def submit_flows(self, xs: list[int]) -> None:
        self.app.submit_many(self.flow, [((x,), {}) for x in xs])

    def submit_sleepers(self, wakes: list[float]) -> None:
        for i in range(0, len(wakes), timing.BATCH_SIZE):
            self.app.submit_many(
                self.sleeper, [((w,), {}) for w in wakes[i : i + timing.BATCH_SIZE]]
            )

    def flows_done(self) -> int:
        return int(self.app.stats().get("completed", 0))

    def asleep(self) -> int:
        return int(self.app.stats().get("suspended", 0))

    def store_counts(self) -> dict[str, Any]:
        return dict(self.app.stats())


if __name__ == "__main__":
    wf_timing.main(MainspringWorkflows, MODULE)
